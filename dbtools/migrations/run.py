"""Running migrations through yoyo's backend: one migration, its bookkeeping and its
checksum row at a time, and the message when one fails.

Each migration runs in one transaction together with yoyo's bookkeeping and the checksum
row, so a migration is either applied and recorded or not there at all. A migration whose
file starts with `-- transactional: false` (e.g. for CREATE INDEX CONCURRENTLY) runs outside
a transaction, as yoyo does it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from pathlib import Path

import psycopg2
import psycopg2.errors
import yoyo.exceptions
from yoyo.migrations import Migration

from dbtools import db, faults
from dbtools.errors import DbtoolsError, LockBusy, MigrationError
from dbtools.migrations.files import error_place, file_checksum, rollback_path
from dbtools.migrations.session import Session
from dbtools.migrations.state import CHECKSUM_TABLE, CREATE_CHECKSUM_TABLE


def record_checksum(s: Session, m: Migration, operation: str) -> None:
    """Record the checksum of m's file as it is now, in the backend's current transaction."""
    s.backend.execute(CREATE_CHECKSUM_TABLE)
    s.backend.execute(
        f"INSERT INTO {CHECKSUM_TABLE} (migration_id, sha256, operation) "
        "VALUES (:id, :sum, :op) ON CONFLICT (migration_id) DO UPDATE "
        "SET sha256 = excluded.sha256, operation = excluded.operation, recorded_at = now()",
        {"id": m.id, "sum": file_checksum(Path(m.path)), "op": operation},
    )


def _run_one(s: Session, m: Migration, direction: str) -> None:
    """Run one migration and its bookkeeping; all in one transaction when it is transactional."""
    backend = s.backend

    def bookkeeping() -> None:
        backend.log_migration(m, direction)
        if direction == "apply":
            backend.mark_one(m, log=False)
            record_checksum(s, m, "apply")
        else:
            backend.unmark_one(m, log=False)
            backend.execute(CREATE_CHECKSUM_TABLE)
            backend.execute(f"DELETE FROM {CHECKSUM_TABLE} WHERE migration_id = :id", {"id": m.id})

    faults.pause("migrate.before")
    if m.use_transactions:
        with backend.transaction():
            m.process_steps(backend, direction)
            bookkeeping()
            faults.pause("migrate.before_commit")
    else:
        m.process_steps(backend, direction)
        with backend.transaction():
            bookkeeping()
            faults.pause("migrate.before_commit")


def _failure(
    s: Session, m: Migration, direction: str, exc: BaseException, done: list[str]
) -> DbtoolsError:
    verb = "apply" if direction == "apply" else "roll back"
    where = f"{s.target.env} database {s.database}"
    if m.use_transactions:
        fate = "its transaction was rolled back, nothing of it remains"
    else:
        fate = (
            "it is non-transactional: statements that ran before the error were undone "
            "by its rollback steps where possible; check with `dbtools diff`"
        )
    before = f"; completed before it: {', '.join(done)}" if done else ""
    if isinstance(exc, psycopg2.errors.LockNotAvailable):
        return LockBusy(
            f"could not {verb} {m.id} on {where}: a table it changes is locked by another "
            f"session past the lock timeout ({fate}){before}",
            hint="retry when the application's long transactions are done",
        )
    path = Path(m.path) if direction == "apply" else rollback_path(m)
    place = error_place(path, exc)
    at = f" at {place}" if place else ""
    return MigrationError(
        f"could not {verb} {m.id} on {where}: {db.describe_error(exc)}{at} ({fate}){before}"
    )


def execute(
    s: Session,
    plan: Sequence[Migration],
    direction: str,
    before_write: Callable[[], object] | None,
) -> list[str]:
    """Run the plan in order, `before_write` first when there is anything to run; the ids
    done. A failure rolls back what is open and names the migration and what came before."""
    done: list[str] = []
    if plan and before_write is not None:
        before_write()
    for m in plan:
        try:
            _run_one(s, m, direction)
        except (psycopg2.Error, yoyo.exceptions.BadMigration) as exc:
            with contextlib.suppress(psycopg2.Error):
                s.backend.rollback()
            raise _failure(s, m, direction, exc, done) from None
        done.append(m.id)
    return done
