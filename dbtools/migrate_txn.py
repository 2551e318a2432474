"""Migrations run inside a caller's open transaction, on the caller's connection.

The sync pipelines hold EXCLUSIVE locks on prod's tables for the whole run (so no committed
application write can slip between the backup and the load). yoyo's own connection would
queue behind those locks, so full-sync and rollback run their migrations HERE, on the guard's
connection, inside the guard's transaction: schema and data then commit together or not at
all.

Each migration is executed exactly as `migrations.run` runs one for a normal apply: its
statements, then yoyo's bookkeeping (`_yoyo_migration` row, `_yoyo_log` row) and dbtools'
checksum row (`_dbtools_migration_checksum`), all in the one transaction. A migration that
cannot run inside a transaction (`-- transactional: false`), or a rollback step that is
missing or empty, is refused up front, naming it, before anything is written.
"""

from __future__ import annotations

import getpass
import socket
import uuid
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import psycopg2
import yoyo
from yoyo.migrations import Migration

from dbtools import db, migrations
from dbtools.db import Conn
from dbtools.errors import LockBusy, MigrationError, SafetyError
from dbtools.migrations.files import (
    error_place,
    file_statements,
    load_migrations,
    rollback_path,
)
from dbtools.migrations.state import CREATE_CHECKSUM_TABLE


def _by_id(migrations_dir: Path) -> dict[str, Migration]:
    return {m.id: m for m in load_migrations(Path(migrations_dir))}


def plan(migrations_dir: Path, ids: Sequence[str], direction: str) -> list[Migration]:
    """The migrations to run in one transaction, or SafetyError naming the one that cannot.

    direction "apply": every id must have a transactional file. "rollback": every id must have
    a file, be transactional, and have a non-empty rollback file.
    """
    files = _by_id(migrations_dir)
    out: list[Migration] = []
    for mid in ids:
        m = files.get(mid)
        if m is None:
            raise SafetyError(
                f"refusing to {direction}: migration {mid} has no file in {migrations_dir}; "
                "nothing was changed",
                hint="bring the migration file back into the migrations directory",
            )
        if not m.use_transactions:
            raise SafetyError(
                f"refusing to {direction} {mid} inside the sync's transaction: its file is "
                "marked `-- transactional: false`; nothing was changed",
                hint=f"run it on its own first: dbtools migrate {direction} --target prod",
            )
        if direction == "rollback":
            migrations.rollback_statements(m)  # the one refusal of a missing/empty undo
        out.append(m)
    return out


def ensure_bookkeeping(conn: Conn) -> None:
    """yoyo's tables, if this database never ran yoyo (same definitions as yoyo's v2 schema).

    Inside the caller's transaction: on a brand new prod they commit with the sync.
    """
    for sql in (
        f"CREATE TABLE IF NOT EXISTS {migrations.MIGRATION_TABLE} (migration_hash VARCHAR(64), "
        "migration_id VARCHAR(255), applied_at_utc TIMESTAMP, PRIMARY KEY (migration_hash))",
        "CREATE TABLE IF NOT EXISTS _yoyo_log (id VARCHAR(36), migration_hash VARCHAR(64), "
        "migration_id VARCHAR(255), operation VARCHAR(10), username VARCHAR(255), "
        "hostname VARCHAR(255), comment VARCHAR(255), created_at_utc TIMESTAMP, "
        "PRIMARY KEY (id))",
        "CREATE TABLE IF NOT EXISTS _yoyo_version (version INT NOT NULL PRIMARY KEY, "
        "installed_at_utc TIMESTAMP)",
        "INSERT INTO _yoyo_version (version, installed_at_utc) "
        "SELECT 2, now() AT TIME ZONE 'UTC' WHERE NOT EXISTS (SELECT 1 FROM _yoyo_version)",
        CREATE_CHECKSUM_TABLE,
    ):
        db.execute(conn, sql)


def _log(conn: Conn, m: Migration, operation: str, now: datetime) -> None:
    db.execute(
        conn,
        "INSERT INTO _yoyo_log (id, migration_hash, migration_id, operation, username, "
        "hostname, created_at_utc) VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (str(uuid.uuid1()), m.hash, m.id, operation, getpass.getuser(), socket.getfqdn(), now),
    )


def _run_one(conn: Conn, m: Migration, direction: str) -> None:
    path = Path(m.path) if direction == "apply" else rollback_path(m)
    for statement in file_statements(path):
        db.execute(conn, statement)
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    _log(conn, m, direction, now)
    if direction == "apply":
        db.execute(
            conn,
            f"INSERT INTO {migrations.MIGRATION_TABLE} (migration_hash, migration_id, "
            "applied_at_utc) VALUES (%s, %s, %s)",
            (m.hash, m.id, now),
        )
        db.execute(
            conn,
            f"INSERT INTO {migrations.CHECKSUM_TABLE} (migration_id, sha256, operation) "
            "VALUES (%s, %s, 'apply') ON CONFLICT (migration_id) DO UPDATE "
            "SET sha256 = excluded.sha256, operation = excluded.operation, recorded_at = now()",
            (m.id, migrations.file_checksum(Path(m.path))),
        )
    else:
        db.execute(
            conn,
            f"DELETE FROM {migrations.MIGRATION_TABLE} WHERE migration_hash = %s",
            (m.hash,),
        )
        db.execute(
            conn, f"DELETE FROM {migrations.CHECKSUM_TABLE} WHERE migration_id = %s", (m.id,)
        )


def run(conn: Conn, plan_: Sequence[Migration], direction: str, where: str) -> list[str]:
    """Run the planned migrations in the caller's open transaction; the ids done, in order.

    A failure raises (MigrationError, or LockBusy for a lock timeout) and leaves the caller's
    transaction to be rolled back: nothing of any migration remains.
    """
    if not plan_:
        return []
    ensure_bookkeeping(conn)
    done: list[str] = []
    verb = "apply" if direction == "apply" else "roll back"
    for m in plan_:
        try:
            _run_one(conn, m, direction)
        except psycopg2.errors.LockNotAvailable:
            raise LockBusy(
                f"could not {verb} {m.id} on {where}: a table it changes is locked by another "
                "session past the lock timeout; the whole run was rolled back, nothing changed"
            ) from None
        except (psycopg2.Error, yoyo.exceptions.BadMigration) as exc:
            path = Path(m.path) if direction == "apply" else rollback_path(m)
            place = error_place(path, exc)
            at = f" at {place}" if place else ""
            raise MigrationError(
                f"could not {verb} {m.id} on {where}: {db.describe_error(exc)}{at}; the whole run "
                "was rolled back, nothing changed"
                + (f" (done before it, undone too: {', '.join(done)})" if done else "")
            ) from None
        done.append(m.id)
    return done
