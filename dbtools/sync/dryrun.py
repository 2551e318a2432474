"""The dry-run preview of sync-data / full-sync (not the row-level plan of `dbtools plan`):
the real run's refusals, in its order, reading dev and prod in read-only sessions."""

from __future__ import annotations

from typing import Any

import psycopg2
import psycopg2.errors
import psycopg2.extensions

from dbtools import (
    catalog,
    checks,
    db,
    migrations,
)
from dbtools.config import Settings, redact
from dbtools.db import Conn, execute
from dbtools.errors import (
    DbtoolsError,
    LockBusy,
    VerificationFailed,
)
from dbtools.snapshot import format as fmt
from dbtools.snapshot import restore
from dbtools.sync.refusals import (
    full_sync_refusals,
    refuse_unloadable,
    sync_data_refusals,
    verify_step,
)
from dbtools.sync.results import Preview
from dbtools.sync.session import open_dev


def preview(settings: Settings, command: str = "full-sync") -> Preview:
    """What `command` (sync-data or full-sync) would do, and the refusal that would stop it
    with its exit code: the same checks the real run makes, in its order (full-sync's verify
    step, a foreign key or default tying the synced tables to what no snapshot loads, drift,
    schema mismatch, prod-only or untested migrations, a non-transactional migration, a busy
    lock). Reads dev and prod in read-only sessions and writes nothing."""
    dev_conn, _ = open_dev(settings, required=True)
    assert dev_conn is not None
    try:
        prod_conn = db.connect(db.target(settings, "prod"), settings=settings)
        try:
            checks.set_read_only(prod_conn)
            out = _preview(settings, dev_conn, prod_conn)
            try:  # in the real run's order: its verify step, the guard, the prechecks
                if command == "full-sync":
                    verify_step(settings)
                refuse_unloadable(prod_conn, settings)
                if command == "sync-data":
                    sync_data_refusals(prod_conn, dev_conn, settings)
                else:
                    full_sync_refusals(prod_conn, dev_conn, settings)
            except DbtoolsError as exc:
                out.refusal, out.exit_code = redact(exc.message), exc.exit_code
        finally:
            prod_conn.rollback()
            prod_conn.close()
    finally:
        dev_conn.rollback()
        dev_conn.close()
    if not out.exit_code:
        try:
            _probe_locks(settings)
        except DbtoolsError as exc:
            out.refusal, out.exit_code = redact(exc.message), exc.exit_code
    if out.refusal:
        out.problems.append(f"the real run would stop here: {out.refusal}")
    return out


SYNC_RUNNING = "another dbtools sync is running against this database; wait for it to finish"


def sync_lock_held(conn: Conn) -> bool:
    """Whether another session holds the sync lock of conn's database: a read of pg_locks,
    never an attempt to take it. (The caller ends conn's transaction.)"""
    key = db._lock_key("sync")
    held = execute(
        conn,
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
        "AND classid = %s AND objid = %s AND objsubid = 1",
        ((key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF),
    )
    return bool(held and held[0][0])


def _probe_locks(settings: Settings) -> None:
    """LockBusy if the real run would find the sync lock held or a table locked past
    lock_timeout_seconds. Takes the table locks in a transaction it rolls back at once (it
    writes nothing) and only looks at the sync lock, never takes it."""
    conn = db.connect(db.target(settings, "prod"), purpose="lock", settings=settings)
    try:
        if sync_lock_held(conn):
            raise LockBusy(SYNC_RUNNING)
        try:
            restore.lock_tables(
                conn,
                list(settings.schemas),
                settings.excluded_tables,
                "EXCLUSIVE",
                settings.lock_timeout_seconds,
            )
        finally:
            conn.rollback()
    finally:
        conn.close()


def _pending(conn: Conn, settings: Settings, side: str) -> list[str]:
    # A status that cannot be read is an error, never "nothing pending" (a dry run would
    # otherwise promise a sync that the real run then does differently).
    try:
        summary = migrations.status_summary(conn, settings)
    except psycopg2.Error as exc:
        raise VerificationFailed(
            f"cannot read the migration status of {side}: {db.describe_error(exc)}"
        ) from exc
    finally:
        if not conn.autocommit:
            conn.rollback()
    return [str(m) for m in summary.get("pending", [])]


def _preview(settings: Settings, dev: Conn, prod: Conn) -> Preview:
    dev_objects, dev_applied = migrations.schema_state(dev, settings.schemas)
    prod_objects, prod_applied = migrations.schema_state(prod, settings.schemas)
    to_apply = [m for m in dev_applied if m not in prod_applied]
    prod_only = [m for m in prod_applied if m not in dev_applied]
    problems: list[str] = []
    if prod_only:
        problems.append(f"prod has migrations dev does not: {', '.join(prod_only)}")
    dev_tables, _ = catalog.read_tables(dev, settings.schemas, settings.excluded_tables)
    prod_tables, _ = catalog.read_tables(prod, settings.schemas, settings.excluded_tables)
    dev_counts = catalog.row_counts(dev, dev_tables)
    prod_counts = catalog.row_counts(prod, prod_tables)
    preserved = catalog.normalize_table_names(settings.preserved_tables, settings.schemas[0])
    rows: list[dict[str, Any]] = []
    for key in sorted(set(dev_counts) | set(prod_counts)):
        d, p = dev_counts.get(key), prod_counts.get(key)
        if key in preserved:
            action = "keep prod's rows"
        elif p is None:
            action = "created by sync-schema, then loaded"
        elif d is None:
            action = "not in dev"
        elif d == p:
            action = "replaced (same count)"
        else:
            action = f"replaced ({d - p:+d} rows)"
        rows.append({"table": key, "dev_rows": d, "prod_rows": p, "action": action})
    dev_name = db.identity(dev).database
    prod_name = db.identity(prod).database
    return Preview(
        dev_database=dev_name,
        prod_database=prod_name,
        pending={"dev": _pending(dev, settings, "dev"), "prod": _pending(prod, settings, "prod")},
        to_apply_on_prod=to_apply,
        prod_only_migrations=prod_only,
        schema_matches=not to_apply and not prod_only and dev_objects == prod_objects,
        tables=rows,
        backup_path=settings.snapshot_dir / "prod" / fmt.stamp_of(fmt.utc_now()),
        problems=problems,
    )
