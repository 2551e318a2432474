"""Prod's own history of the writes dbtools committed to it: what `rollback` undoes.

Every sync-data, full-sync, restore --target prod and rollback inserts one row here in the
SAME transaction that commits its change, so a row exists exactly when the change committed:
a refused, failed or killed run leaves no row, and can never become the rollback target.

The table lives in its own schema (`_dbtools`), outside the synced schemas: no snapshot
holds it, no load or restore overwrites it, and the schema fingerprint never sees it (the
catalog reads only the configured schemas), so dev and prod still compare equal.

    CREATE TABLE _dbtools.history (
        id              bigserial PRIMARY KEY,
        operation       text NOT NULL,   -- sync-data | full-sync | apply | restore | rollback
        committed_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
        backup_path     text,            -- the verified backup taken before this write
        backup_stamp    text,            -- its directory name (the archive stamp)
        backup_sha256   text,            -- its manifest checksum (manifest_sha256)
        snapshot_loaded text,            -- the snapshot this write loaded into prod
        undoes          bigint,          -- rollback: the id of the row it undid
        migrations      jsonb,           -- ids applied (full-sync) / rolled back (rollback)
        tables          jsonb,           -- table -> {rows_before, rows_after, preserved}
                                         --   (+ inserted/updated/deleted from an applied plan)
        tool_version    text NOT NULL,
        plan_id         text,            -- apply: the id of the plan it applied
        lock            jsonb,           -- {"mode": short | full, "seconds": writes held
                                         --   until this row, "reason": why full}
        run_by          text             -- who ran it: GITHUB_ACTOR in Actions, else the OS user
    )
"""

from __future__ import annotations

import getpass
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dbtools import __version__, db
from dbtools.config import Settings
from dbtools.db import Conn
from dbtools.snapshot import store

SCHEMA = "_dbtools"
TABLE = f"{SCHEMA}.history"
# Operations whose backup a rollback may return to (a rollback's own backup never is).
UNDOABLE = ("sync-data", "full-sync", "restore", "apply")

_CREATE = (
    f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}",
    f"CREATE TABLE IF NOT EXISTS {TABLE} ("
    "id bigserial PRIMARY KEY, operation text NOT NULL, "
    "committed_at timestamptz NOT NULL DEFAULT clock_timestamp(), "
    "backup_path text, backup_stamp text, backup_sha256 text, snapshot_loaded text, "
    "undoes bigint, migrations jsonb, tables jsonb, tool_version text NOT NULL, plan_id text, "
    "lock jsonb, run_by text)",
)
# Columns added after the table's first release: a table made by an older dbtools gains them,
# once. Added only when missing: ALTER TABLE checks ownership and takes ACCESS EXCLUSIVE even
# with IF NOT EXISTS, so on every commit it would fail for a role that does not own the table
# and wait behind any open reader of it.
_ADDED = {"plan_id": "text", "lock": "jsonb", "run_by": "text"}
_PRESENT = (
    f"SELECT coalesce(array_agg(attname::text), '{{}}') FROM pg_attribute "
    f"WHERE attrelid = '{TABLE}'::regclass AND attname = ANY(%s) AND NOT attisdropped"
)


def _run_by() -> str:
    """Who ran this write: the GitHub actor in Actions, else the OS user."""
    actor = os.environ.get("GITHUB_ACTOR")
    if actor:
        return f"{actor} (GitHub Actions)"
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        return f"uid {os.getuid()}"


@dataclass
class Entry:
    id: int
    operation: str
    committed_at: str
    backup_path: str | None
    backup_stamp: str | None
    backup_sha256: str | None
    snapshot_loaded: str | None
    undoes: int | None
    migrations: list[str] = field(default_factory=list)
    tables: dict[str, Any] = field(default_factory=dict)
    plan_id: str | None = None
    lock: dict[str, Any] = field(default_factory=dict)
    run_by: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _exists(conn: Conn) -> bool:
    with db.read_only_use(conn), conn.cursor() as cur:
        cur.execute("SELECT to_regclass(%s) IS NOT NULL", (TABLE,))
        row = cur.fetchone()
    return bool(row and row[0])


def entries(conn: Conn) -> list[Entry]:
    """Every committed row, newest first; [] when dbtools never committed a write here."""
    if not _exists(conn):
        return []
    with db.read_only_use(conn), conn.cursor() as cur:
        cur.execute(
            f"SELECT id, operation, committed_at::text, backup_path, backup_stamp, "
            f"backup_sha256, snapshot_loaded, undoes, coalesce(migrations, '[]'::jsonb), "
            # (to_jsonb: a table made by an older dbtools lacks the added columns, and this
            # read-only path does not add them)
            f"coalesce(tables, '{{}}'::jsonb), to_jsonb(h) ->> 'plan_id', "
            f"to_jsonb(h) -> 'lock', to_jsonb(h) ->> 'run_by' "
            f"FROM {TABLE} h ORDER BY id DESC"
        )
        rows = cur.fetchall()
    return [
        Entry(
            id=int(r[0]),
            operation=str(r[1]),
            committed_at=str(r[2]),
            backup_path=r[3],
            backup_stamp=r[4],
            backup_sha256=r[5],
            snapshot_loaded=r[6],
            undoes=r[7],
            # rows are read defensively: one odd row must never block a rollback
            migrations=[str(m) for m in r[8]] if isinstance(r[8], list) else [],
            tables=r[9] if isinstance(r[9], dict) else {},
            plan_id=r[10],
            lock=r[11] if isinstance(r[11], dict) else {},
            run_by=r[12],
        )
        for r in rows
    ]


def recent(settings: Settings, limit: int) -> list[Entry]:
    """The newest `limit` rows of prod's history, on a connection of its own."""
    conn = db.connect(db.target(settings, "prod"), settings=settings)
    try:
        with conn.cursor() as cur:  # never queue behind a write's lock for long
            timeout_ms = max(1, int(settings.lock_timeout_seconds * 1000))
            cur.execute(f"SET lock_timeout = '{timeout_ms}ms'")
        conn.commit()
        return entries(conn)[:limit]
    finally:
        conn.close()


def undo_candidates(conn: Conn) -> list[Entry]:
    """Committed writes a rollback may undo, newest first: not rollbacks, not undone yet."""
    rows = entries(conn)
    undone = {e.undoes for e in rows if e.operation == "rollback" and e.undoes is not None}
    return [e for e in rows if e.operation in UNDOABLE and e.id not in undone]


def backup_checksums(conn: Conn) -> set[str]:
    """Manifest checksums of every backup this prod recorded as its own."""
    return {e.backup_sha256 for e in entries(conn) if e.backup_sha256}


def record(
    conn: Conn,
    operation: str,
    *,
    backup_path: Path | None,
    backup_sha256: str | None,
    snapshot_loaded: Path | None = None,
    undoes: int | None = None,
    migrations: Iterable[str] = (),
    tables: dict[str, Any] | None = None,
    plan_id: str | None = None,
    lock: dict[str, Any] | None = None,
) -> int:
    """Insert the row of a write, inside the caller's open transaction (it commits with it)."""
    with conn.cursor() as cur:
        for sql in _CREATE:
            cur.execute(sql)
        cur.execute(_PRESENT, (list(_ADDED),))
        row = cur.fetchone()
        present = set(row[0]) if row else set()
        for column, kind in _ADDED.items():
            if column not in present:
                cur.execute(f"ALTER TABLE {TABLE} ADD COLUMN {column} {kind}")
        cur.execute(
            f"INSERT INTO {TABLE} (operation, backup_path, backup_stamp, backup_sha256, "
            "snapshot_loaded, undoes, migrations, tables, tool_version, plan_id, lock, run_by) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb, %s::jsonb, %s, %s, %s::jsonb, %s) "
            "RETURNING id",
            (
                operation,
                # An archive in object storage: the s3:// URL, not this process's stand-in.
                store.shown(backup_path) if backup_path else None,
                backup_path.name if backup_path else None,
                backup_sha256,
                store.shown(snapshot_loaded) if snapshot_loaded else None,
                undoes,
                json.dumps(list(migrations)),
                json.dumps(tables or {}),
                __version__,
                plan_id,
                json.dumps(lock) if lock else None,
                _run_by(),
            ),
        )
        row = cur.fetchone()
    assert row is not None
    return int(row[0])
