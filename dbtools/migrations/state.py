"""What a database records about its migrations, read on plain psycopg2 connections: the
applied ids (yoyo's table), the checksums (dbtools' table), a database's status against the
files, and the drift refusal.

yoyo identifies a migration by a hash of its *id* only, so an applied file that was edited
afterwards goes unnoticed. dbtools records a sha256 of each file's content when it applies
or marks it (table `_dbtools_migration_checksum`) and refuses to go on when an applied file
no longer matches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dbtools import catalog, db
from dbtools.config import Settings
from dbtools.db import Conn
from dbtools.errors import MigrationError
from dbtools.migrations.files import file_checksum, load_migrations

MIGRATION_TABLE = "_yoyo_migration"
CHECKSUM_TABLE = "_dbtools_migration_checksum"

CREATE_CHECKSUM_TABLE = (
    f"CREATE TABLE IF NOT EXISTS {CHECKSUM_TABLE} ("
    "migration_id text PRIMARY KEY, sha256 text NOT NULL, "
    "recorded_at timestamptz NOT NULL DEFAULT now(), operation text NOT NULL)"
)


def _table_exists(conn: Conn, name: str) -> bool:
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass(%s) IS NOT NULL", (db.quote_ident(name),))
        row = cur.fetchone()
    return bool(row and row[0])


def applied_ids(conn: Conn) -> list[str]:
    """Ids of the applied migrations in the order they were applied; [] if yoyo never ran.

    Reads only: the caller's transaction (often a snapshot's) is left open and untouched.
    """
    if not _table_exists(conn, MIGRATION_TABLE):
        return []
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT migration_id FROM {MIGRATION_TABLE} ORDER BY applied_at_utc, migration_id"
        )
        return [r[0] for r in cur.fetchall()]


def schema_state(conn: Conn, schemas: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """What "the same schema" compares: the live schema objects and the applied migration ids.

    Reads only, and never ends a transaction it did not open (checks call it inside a load).
    """
    with db.read_only_use(conn):
        return catalog.schema_objects(conn, schemas), [str(i) for i in applied_ids(conn)]


def recorded_checksums(conn: Conn) -> dict[str, str]:
    if not _table_exists(conn, CHECKSUM_TABLE):
        return {}
    with conn.cursor() as cur:
        cur.execute(f"SELECT migration_id, sha256 FROM {CHECKSUM_TABLE}")
        return {r[0]: r[1] for r in cur.fetchall()}


@dataclass
class MigrationStatus:
    """Where one database stands against the migration files."""

    env: str
    database: str
    applied: list[str]
    pending: list[str]
    drift: list[str]  # applied, but the file changed since
    unknown: list[str]  # applied, but no such file
    unchecked: list[str]  # applied without a recorded checksum (yoyo CLI, or before dbtools)
    drift_details: dict[str, dict[str, str]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def status_of(
    conn: Conn, migrations_dir: Path, env: str = "", database: str = ""
) -> MigrationStatus:
    files = load_migrations(migrations_dir)
    by_id = {m.id: m for m in files}
    applied = applied_ids(conn)
    sums = recorded_checksums(conn)
    applied_set = set(applied)
    drift: list[str] = []
    details: dict[str, dict[str, str]] = {}
    unchecked: list[str] = []
    for mid in applied:
        if mid not in by_id:
            continue
        if mid not in sums:
            unchecked.append(mid)
            continue
        now = file_checksum(Path(by_id[mid].path))
        if now != sums[mid]:
            drift.append(mid)
            details[mid] = {"recorded": sums[mid], "file": now}
    return MigrationStatus(
        env=env,
        database=database,
        applied=applied,
        pending=[m.id for m in files if m.id not in applied_set],
        drift=drift,
        unknown=[mid for mid in applied if mid not in by_id],
        unchecked=unchecked,
        drift_details=details,
    )


def status_summary(conn: Conn, settings: Settings) -> dict[str, Any]:
    """applied / pending / drift / unknown (and unchecked) of the database behind conn."""
    return status_of(conn, settings.migrations_dir).as_dict()


def assert_no_drift(conn: Conn, migrations_dir: Path, label: str) -> MigrationStatus:
    """The status of the database behind conn; MigrationError (exit 1) when an applied file
    changed since it was applied. Every path that applies or rolls back migrations calls
    this (or goes through a function that does) before its first write: one refusal, one
    message. Reads only."""
    st = status_of(conn, Path(migrations_dir))
    guard_history(st, label)
    return st


def drift_error(st: MigrationStatus, label: str) -> MigrationError:
    names = ", ".join(st.drift)
    return MigrationError(
        f"{label}: applied migration files changed since they were applied: {names}; "
        "refusing to go on",
        hint="an applied migration is immutable: restore the file as it was (e.g. "
        "git checkout -- migrations/<file>) and put the change in a new migration "
        "(dbtools migrate new NAME)",
    )


def guard_history(st: MigrationStatus, label: str) -> None:
    """The drift refusal on a status already read: `drift_error` when an applied file changed."""
    if st.drift:
        raise drift_error(st, label)


def status(settings: Settings, env: str) -> MigrationStatus:
    t = db.target(settings, env)
    conn = db.connect(t, settings=settings)
    try:
        ident = db.identity(conn)
        return status_of(conn, settings.migrations_dir, env, ident.database)
    finally:
        conn.close()
