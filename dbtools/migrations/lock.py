"""The migration locks: dbtools' run lock (an advisory lock) and yoyo's lock row, taken
together before a write and told apart when someone else holds them.

Concurrency: yoyo's lock is a row in `yoyo_lock`, which a killed run leaves behind. dbtools
first takes a session-level advisory lock (it dies with its connection), then writes yoyo's
row itself, marked as its own: pid = minus the server pid of its migration connection (a
plain `yoyo` writes its positive OS pid). So a dbtools row found while this run holds the
advisory lock, and whose server process is gone, was left by a killed run (SIGKILL or
SIGTERM at any point: the row is only ever written under the advisory lock) and is cleared
at once. A positive row may be a live `yoyo` command: dbtools waits for it up to the lock
timeout, then says so and names `dbtools migrate unlock`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import psycopg2
import psycopg2.extensions

from dbtools import db
from dbtools.db import Conn
from dbtools.errors import LockBusy, SafetyError
from dbtools.migrations.session import Session

LOCK_TABLE = "yoyo_lock"
LOCK_NAME = "migrate"


class ForeignLock(SafetyError):
    """yoyo's lock is held by something that is not a dbtools run (a plain `yoyo`, or a run
    of a dbtools that did not mark its rows): maybe alive, so never cleared on a guess."""


def lock_row(s: Session) -> tuple[int, str] | None:
    """(pid, ctime) of yoyo's lock row, if the table and a row exist; reads only."""
    with s.guard.cursor() as cur:
        cur.execute(f"SELECT to_regclass('{LOCK_TABLE}') IS NOT NULL")
        row = cur.fetchone()
        if not (row and row[0]):
            s.guard.rollback()
            return None
        cur.execute(f"SELECT pid, ctime FROM {LOCK_TABLE} LIMIT 1")
        got = cur.fetchone()
    s.guard.rollback()
    return (int(got[0]), str(got[1])) if got else None


def _try_yoyo_lock(s: Session) -> bool:
    """Write yoyo's lock row marked as dbtools' (under the advisory lock); False if taken.

    A dbtools row left behind is cleared in the same transaction: while this run holds the
    advisory lock no other dbtools run is alive, and a row whose server process is gone
    cannot belong to a run that is still migrating.
    """
    backend = s.backend
    try:
        with backend.transaction():
            cur = backend.execute(
                f"SELECT pid FROM {LOCK_TABLE} WHERE pid < 0 AND NOT EXISTS "
                "(SELECT 1 FROM pg_stat_activity a WHERE a.pid = -yoyo_lock.pid)"
            )
            for (pid,) in cur.fetchall():
                backend.execute(f"DELETE FROM {LOCK_TABLE} WHERE pid = :pid", {"pid": pid})
            backend.execute(
                f"INSERT INTO {LOCK_TABLE} (locked, ctime, pid) "
                "VALUES (1, now() AT TIME ZONE 'UTC', -pg_backend_pid())"
            )
    except psycopg2.Error:
        return False
    return True


def _release_yoyo_lock(s: Session) -> None:
    with contextlib.suppress(psycopg2.Error):
        if s.conn.get_transaction_status() != psycopg2.extensions.TRANSACTION_STATUS_IDLE:
            s.backend.rollback()
        with s.backend.transaction():
            s.backend.execute(f"DELETE FROM {LOCK_TABLE} WHERE pid = -pg_backend_pid()")


def _held_error(
    holder: tuple[int, str] | None, label: str, env: str, timeout: float
) -> SafetyError:
    """The refusal for a yoyo lock row that is not a dead dbtools run's: say whose it is."""
    waited = f" (waited {timeout:g}s)" if timeout else ""
    if holder is not None and holder[0] < 0:
        return LockBusy(
            f"{label}: a dbtools migration connection (server process {-holder[0]}) still "
            f"holds the migration lock taken at {holder[1]} UTC{waited}; "
            "try again when it has finished"
        )
    who = f"process {holder[0]}, taken at {holder[1]} UTC" if holder else "an unknown process"
    return ForeignLock(
        f"{label} has a migration lock held by {who}, which is not a dbtools run{waited}: "
        "a plain `yoyo` command running now, or one (or an older dbtools) "
        "killed before it released its lock; nothing was changed",
        hint=f"if no `yoyo` is running against it, clear the lock with: "
        f"dbtools migrate unlock --target {env} --yes",
    )


def _lock_held_error(s: Session, label: str, timeout: float) -> SafetyError:
    return _held_error(lock_row(s), label, s.target.env, timeout)


def clear_stale_lock(conn: Conn, label: str, env: str) -> None:
    """In the caller's transaction, which holds dbtools' migration advisory lock: delete yoyo
    lock rows left by killed dbtools runs; refuse when another row remains.

    The sync pipelines run their migrations on their own connection (`migrate_txn`) instead
    of taking yoyo's lock row; a row that is there means either a dead dbtools run (cleared
    here, as `_try_yoyo_lock` does) or a `yoyo` command that may be migrating right now.
    """
    with conn.cursor() as cur:
        cur.execute(f"SELECT to_regclass('{LOCK_TABLE}') IS NOT NULL")
        row = cur.fetchone()
        if not (row and row[0]):
            return
        cur.execute(
            f"DELETE FROM {LOCK_TABLE} WHERE pid < 0 AND NOT EXISTS "
            "(SELECT 1 FROM pg_stat_activity a WHERE a.pid = -yoyo_lock.pid)"
        )
        cur.execute(f"SELECT pid, ctime FROM {LOCK_TABLE} LIMIT 1")
        got = cur.fetchone()
    if got is not None:
        raise _held_error((int(got[0]), str(got[1])), label, env, 0)


@contextlib.contextmanager
def locked(s: Session, timeout: float) -> Iterator[None]:
    """Hold dbtools' run lock, then yoyo's lock; wait up to timeout seconds for either."""
    label = f"{s.target.env} database {s.database}"
    deadline = time.monotonic() + timeout
    with contextlib.ExitStack() as stack:
        while True:
            try:
                stack.enter_context(db.advisory_lock(s.guard, LOCK_NAME, "migration"))
                break
            except LockBusy:
                if time.monotonic() >= deadline:
                    raise LockBusy(
                        f"another dbtools migration run holds the lock on {label} "
                        f"(waited {timeout:g}s); try again when it has finished"
                    ) from None
                time.sleep(min(0.25, timeout))
        # yoyo's tables (its lock table first) are created only now: after the safety rules,
        # under the run lock.
        s.backend.init_database()
        while not _try_yoyo_lock(s):
            if time.monotonic() >= deadline:
                raise _lock_held_error(s, label, timeout)
            time.sleep(min(0.25, timeout))
        s.backend._is_locked = True  # yoyo's own lock() would otherwise take it again
        stack.callback(_release_yoyo_lock, s)
        # yoyo creates or upgrades its own tables lazily and insists on doing it outside a
        # transaction; do it now, so that each migration's transaction holds only that one.
        s.backend.ensure_internal_schema_updated()
        yield
