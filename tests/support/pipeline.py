"""The sync pipelines' starting points: migrate, seed dev and a stale prod, and fingerprint a
database's whole state (every table's rows, the schema, the applied migrations)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg2

from dbtools import catalog, migrations
from dbtools.snapshot import format as fmt

from support.project import REPO, Project

MIGRATIONS = REPO / "migrations"
HEAD = migrations.migration_ids(MIGRATIONS)[-1]
OLD = "0002_marketplace_fields"
# Tables whose prod rows survive sync-data (the project fixture's preserved_tables).
PRESERVED = ("Account", "Session", "VerificationToken")

INSERT_USER = (
    'INSERT INTO "User" (id, name, email, "isDemo", roles, "updatedAt") '
    'VALUES (%s, %s, %s, %s, %s::"UserRole"[], now())'
)
INSERT_BUILDER = (
    'INSERT INTO "BuilderProfile" (id, "userId", "displayName", featured, "validationTier", '
    'rating, "updatedAt") VALUES (%s, %s, %s, %s, %s, %s, now())'
)
INSERT_ACCOUNT = (
    'INSERT INTO "Account" (id, "userId", type, provider, "providerAccountId", access_token) '
    "VALUES (%s, %s, 'oauth', %s, %s, %s)"
)


def migrate(url: str, upto: str | None = None) -> list[str]:
    return migrations.apply_all(url, MIGRATIONS, upto=upto)


def seed_dev(url: str, *, builders: int = 6, demo: int = 2) -> None:
    """A small marketplace: Liam (featured), builders (some demo), a client, auth rows."""
    conn = psycopg2.connect(url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                INSERT_USER,
                ("liam", "Liam", "liam@buildappswith.com", False, "{CLIENT,BUILDER,ADMIN}"),
            )
            cur.execute(INSERT_BUILDER, ("b-liam", "liam", "Liam", True, 3, 5.0))
            for i in range(1, builders):
                uid = f"u{i}"
                cur.execute(
                    INSERT_USER, (uid, f"Builder {i}", f"b{i}@example.com", i <= demo, "{BUILDER}")
                )
                cur.execute(
                    INSERT_BUILDER, (f"b{i}", uid, f"Builder {i}", False, 1 + i % 3, 4.0 + i / 10)
                )
            cur.execute(INSERT_USER, ("client", "Client", "client@example.com", False, "{CLIENT}"))
            cur.execute(INSERT_ACCOUNT, ("acc-dev", "liam", "github", "dev-1", "dev-token"))
            cur.execute(
                'INSERT INTO "Session" (id, "sessionToken", "userId", expires) '
                "VALUES ('s-dev', 'dev-session', 'liam', now() + interval '1 day')"
            )
    finally:
        conn.close()


def seed_stale_prod(url: str) -> None:
    """The prod of the seed before its first sync: Liam as .ai, one builder, a real login."""
    conn = psycopg2.connect(url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                INSERT_USER, ("liam", "Liam", "liam@buildappswith.ai", False, "{CLIENT,BUILDER}")
            )
            cur.execute(INSERT_BUILDER, ("b-liam", "liam", "Liam", False, 1, None))
            cur.execute(
                INSERT_ACCOUNT, ("acc-prod", "liam", "google", "prod-1", "prod-secret-token")
            )
    finally:
        conn.close()


def state(url: str) -> dict[str, Any]:
    """Everything that must not change: md5 of every table's rows, fingerprint, migrations."""
    conn = psycopg2.connect(url)
    try:
        tables, _ = catalog.read_tables(conn, ["public"])
        md5 = {}
        with conn.cursor() as cur:
            for t in tables:
                cur.execute(
                    "SELECT count(*), "
                    "md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) "
                    f"FROM {t.qualified} x"
                )
                md5[t.name] = cur.fetchone()
        conn.rollback()
        return {
            "tables": md5,
            "fingerprint": catalog.fingerprint(conn, ["public"]),
            "migrations": migrations.applied_ids(conn),
        }
    finally:
        conn.close()


def data_of(url: str, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    return {k: v for k, v in state(url)["tables"].items() if k not in skip}


def prod_backups(project: Project) -> list[Path]:
    return sorted(fmt.snapshot_dirs(project.snapshot_dir / "prod"))


def synced_state(dev_url: str, prod_before: dict[str, Any]) -> dict[str, Any]:
    """The state prod has after a completed sync-data or full-sync from dev: dev's schema,
    migrations and rows, except the preserved tables, which keep prod's rows (prod_before)."""
    dev = state(dev_url)
    tables = {
        name: prod_before["tables"][name] if name in PRESERVED else rows
        for name, rows in dev["tables"].items()
    }
    return {**dev, "tables": tables}
