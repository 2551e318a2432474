"""The snapshot tests' material: a small schema with the hard cases, and helpers.

The schema has quoted camelCase names, an enum and an enum array, jsonb and jsonb[], numeric,
float8 with NaN/Infinity, bytea, timestamp(3), a self-reference, a foreign-key cycle (no
order satisfies it), a serial sequence, an identity column, a generated column, and an
auth-like table (Account) for the preserved-rows rule. No tests live here.
"""

from __future__ import annotations

from pathlib import Path

from dbtools.config import Settings, load_settings

from support.db import execute

SCHEMA = """
CREATE TYPE "UserRole" AS ENUM ('CLIENT', 'BUILDER', 'ADMIN');
CREATE TABLE "User" (
    id text PRIMARY KEY,
    email text NOT NULL UNIQUE,
    name text,
    roles "UserRole"[] NOT NULL DEFAULT '{CLIENT}',
    "isDemo" boolean NOT NULL DEFAULT false,
    "createdAt" timestamp(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "invitedById" text REFERENCES "User"(id) ON DELETE SET NULL ON UPDATE CASCADE
);
CREATE TABLE "BuilderProfile" (
    id text PRIMARY KEY,
    "userId" text NOT NULL UNIQUE REFERENCES "User"(id) ON DELETE CASCADE ON UPDATE CASCADE,
    "hourlyRate" numeric(10,2),
    rating float8,
    badges text[],
    "portfolioItems" jsonb[],
    "socialLinks" jsonb,
    "featuredAppId" text,
    adhd_focus boolean NOT NULL DEFAULT false
);
CREATE TABLE "App" (
    id text PRIMARY KEY,
    "builderId" text NOT NULL REFERENCES "BuilderProfile"(id) ON DELETE CASCADE,
    title text NOT NULL,
    logo bytea
);
ALTER TABLE "BuilderProfile" ADD CONSTRAINT "BuilderProfile_featuredAppId_fkey"
    FOREIGN KEY ("featuredAppId") REFERENCES "App"(id);
CREATE TABLE "Counter" (
    n serial PRIMARY KEY,
    label text,
    doubled integer GENERATED ALWAYS AS (n * 2) STORED
);
CREATE TABLE "Ticket" (
    id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    note text
);
CREATE TABLE "Account" (
    id text PRIMARY KEY,
    "userId" text NOT NULL REFERENCES "User"(id) ON DELETE CASCADE ON UPDATE CASCADE,
    provider text NOT NULL
);
"""

DATA = r"""
INSERT INTO "User" (id, email, name, roles, "isDemo", "createdAt", "invitedById") VALUES
 ('u1', 'liam@buildappswith.com', 'Liam', '{CLIENT,BUILDER,ADMIN}', false,
  '2025-05-14 10:21:12.123', NULL),
 ('u2', 'demo@example.com', E'Zoë "Tab"\tNew\nLine \\ back', '{BUILDER}', true,
  '2024-02-29 00:00:00', 'u1'),
 ('u3', 'client@example.com', '', '{}', false, '1999-12-31 23:59:59.999', 'u2'),
 ('u4', 'null@example.com', NULL, '{CLIENT}', false, '2025-01-01', 'u4');
INSERT INTO "BuilderProfile" VALUES
 ('b1', 'u1', 125.50, 4.9, '{founder,"with space"}',
  ARRAY['{"a": 1}'::jsonb, '{"b": [1, 2]}'::jsonb], '{"x": "🚀"}', NULL, true),
 ('b2', 'u2', NULL, 'NaN', '{}', NULL, NULL, NULL, false),
 ('b3', 'u3', 0.01, '-Infinity', NULL, '{}', 'null', NULL, false);
INSERT INTO "App" VALUES ('a1', 'b1', 'First app', '\xdeadbeef00'), ('a2', 'b2', 'Second', NULL);
UPDATE "BuilderProfile" SET "featuredAppId" = 'a1' WHERE id = 'b1';
UPDATE "BuilderProfile" SET "featuredAppId" = 'a2' WHERE id = 'b2';
INSERT INTO "Counter" (label) SELECT 'row ' || g FROM generate_series(1, 25) g;
INSERT INTO "Ticket" (note) VALUES ('one'), ('two'), (NULL);
INSERT INTO "Account" VALUES ('acc1', 'u1', 'google');
"""

TABLES = ["Account", "App", "BuilderProfile", "Counter", "Ticket", "User"]


def setup_schema(url: str, *, data: bool = True) -> None:
    execute(url, SCHEMA)
    if data:
        execute(url, DATA)


def table_digests(url: str, tables: list[str] = TABLES) -> dict[str, tuple[int, str]]:
    """Per table: row count and md5 of the ordered row text (the issue's definition of equal)."""
    out = {}
    for name in tables:
        rows = execute(
            url,
            f"SELECT count(*), md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) "
            f'FROM "{name}" t',
        )
        out[name] = (int(rows[0][0]), str(rows[0][1]))
    return out


def settings_for(root: Path) -> Settings:
    return load_settings(root)


def only_snapshot(snapshot_dir: Path, env: str) -> Path:
    dirs = [p for p in (snapshot_dir / env).iterdir() if not p.name.startswith(".")]
    assert len(dirs) == 1, dirs
    return dirs[0]
