"""The guarded write session on prod (guarded_prod_write, Guard) and the backup it takes."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.errors
import psycopg2.extensions

from dbtools import (
    db,
    faults,
    history,
    interrupt,
    migrations,
    permit,
    safety,
)
from dbtools import side as side_mod
from dbtools.config import Settings
from dbtools.db import Conn, Progress, execute, say
from dbtools.errors import (
    DbtoolsError,
    LockBusy,
    SafetyError,
    SnapshotError,
    VerificationFailed,
)
from dbtools.side import Side
from dbtools.snapshot import format as fmt
from dbtools.snapshot import restore
from dbtools.snapshot.create import create_snapshot
from dbtools.sync.refusals import refuse_unloadable
from dbtools.sync.results import BackupResult

# --- the one way to write prod ---------------------------------------------------------------


@dataclass
class Guard:
    settings: Settings
    conn: Conn  # direct prod connection holding the sync lock; also carries the load
    dev_conn: Conn | None  # read-only
    what: str
    progress: Progress
    prod_id: db.Identity
    transactional: bool = False  # the guard's transaction holds the tables (see below)
    _backup: BackupResult | None = None
    history_id: int | None = None
    locked_at: float | None = None  # monotonic time the synced tables were locked
    lock_seconds: float | None = None  # from the lock to the end of the COMMIT

    @property
    def locked(self) -> bool:
        return self.locked_at is not None

    def lock_writes(self) -> None:
        """Lock every synced table IN EXCLUSIVE MODE in the guard's transaction (application
        writes wait until the commit, reads go on); LockBusy after lock_timeout_seconds."""
        if self.locked_at is not None:
            return
        restore.lock_tables(
            self.conn,
            list(self.settings.schemas),
            self.settings.excluded_tables,
            "EXCLUSIVE",
            self.settings.lock_timeout_seconds,
        )
        self.locked_at = time.monotonic()

    def _lock_record(self, lock: dict[str, Any] | None) -> dict[str, Any]:
        """What prod's history keeps of how the tables were held (until its own row)."""
        out = dict(lock or {"mode": "full"})
        if self.locked_at is not None:
            out["seconds"] = round(time.monotonic() - self.locked_at, 3)
        return out

    def renew_backup(self) -> BackupResult:
        """A second backup, under the write lock: the first one no longer holds everything
        the run will replace (the application wrote since)."""
        assert self.locked
        self._backup = None
        return self.ensure_backup()

    def ensure_backup(self) -> BackupResult:
        """The fresh verified backup of this run, taken the first time anything will write."""
        if self._backup is None:
            say(self.progress, f"{self.what}: backing up prod")
            self._backup = backup(
                self.settings,
                progress=self.progress,
                reason=f"before {self.what}",
                checked=self.prod_id,
            )
            say(self.progress, f"{self.what}: backup verified: {self._backup.path}")
            faults.pause("backup.done")
        return self._backup

    @property
    def backup(self) -> BackupResult | None:
        return self._backup

    def commit(
        self,
        operation: str,
        *,
        snapshot_loaded: Path | None = None,
        undoes: int | None = None,
        migrations_done: list[str] | None = None,
        tables: dict[str, Any] | None = None,
        plan_id: str | None = None,
        lock: dict[str, Any] | None = None,
    ) -> int:
        """Record the write in prod's history and COMMIT, both in the guard's one transaction:
        the history row exists exactly when the write committed (history module doc)."""
        assert self.transactional and self.history_id is None
        made = self.ensure_backup()
        try:
            row = history.record(
                self.conn,
                operation,
                backup_path=made.path,
                backup_sha256=made.manifest_sha256,
                snapshot_loaded=snapshot_loaded,
                undoes=undoes,
                migrations=migrations_done or [],
                tables=tables,
                plan_id=plan_id,
                lock=self._lock_record(lock),
            )
        except psycopg2.Error as exc:
            raise SafetyError(
                f"could not record the {operation} in prod's history ({history.TABLE}: "
                f"{db.describe_error(exc)}); it was rolled back, nothing was changed",
                hint=f"the prod role needs CREATE on the database for schema {history.SCHEMA}",
            ) from None
        faults.pause("load.before_commit")
        with interrupt.deferred():  # a COMMIT and what we then say about it go together
            execute(self.conn, "COMMIT")
            if self.locked_at is not None:
                self.lock_seconds = time.monotonic() - self.locked_at
            self.history_id = row
            interrupt.set_outcome(
                f"the {operation} was committed to prod (history #{row}); "
                "`dbtools rollback --yes` undoes it"
            )
        return row


def open_dev(settings: Settings, *, required: bool) -> tuple[Conn | None, db.Identity | None]:
    """dev's read-only connection and identity; (None, None) only when dev is not configured.

    A configured dev that cannot be reached is an error even where the run does not read it:
    the rule "dev and prod are two databases" could then not be checked (safety.other_side).
    """
    if not required and not settings.urls.get("dev"):
        return None, None
    try:
        dev = side_mod.open_side(settings, "dev", read_only=True)
    except DbtoolsError as exc:
        if required:
            raise
        raise safety.unidentified("prod", exc) from None
    return dev.conn, dev.identity


@contextlib.contextmanager
def guarded_prod_write(
    settings: Settings,
    *,
    what: str,
    progress: Progress,
    precheck: Callable[[Conn, Conn | None], None] | None = None,
    need_dev: bool = True,
    transactional: bool = False,
    lock_at_start: bool = True,
    sides: dict[str, Side] | None = None,
) -> Iterator[Guard]:
    """Every prod write runs inside this: safety rules, the sync lock, a fresh verified backup.

    Writers call guard.ensure_backup() (the library's writers find it in the permit) before their
    first write; the backup is taken once per run, under the lock, and verified.
    precheck(prod_conn, dev_conn) runs under the locks before anything else, so a refusal
    costs nothing (not even a backup) and cannot race another run.

    transactional=True (sync-data, full-sync, restore, rollback): each of these empties the
    synced tables, so a foreign key or column default tying them to something no snapshot
    loads is refused first, before any lock (refuse_unloadable). The guard then opens ONE
    transaction on its connection and first locks every synced table IN EXCLUSIVE MODE
    (writes wait, reads go on; LockBusy within lock_timeout_seconds, before any backup). The
    backup then runs on its own connections, which only need ACCESS SHARE, so it sees every
    write the application committed; the writer's load runs in that same transaction and the
    caller ends it with guard.commit(), which records the write in prod's history. An
    application write issued meanwhile waits for the commit instead of landing between the
    backup and the load, where the load would erase it. Leaving the block without
    guard.commit() rolls everything back.
    """
    prod_t = db.target(settings, "prod")
    dev_conn: Conn | None
    dev_id: db.Identity | None
    if sides is not None:  # the run's own connections: used here, closed by the run
        dev_conn, dev_id = sides["dev"].idle(autocommit=False), sides["dev"].identity
    else:
        dev_conn, dev_id = open_dev(settings, required=need_dev)
    try:
        if sides is not None:
            conn = sides["prod"].idle(autocommit=transactional)
        else:
            conn = db.connect(prod_t, purpose="lock", settings=settings, autocommit=transactional)
        try:
            prod_id = sides["prod"].identity if sides is not None else db.identity(conn)
            if dev_conn is not None and dev_id is not None:
                safety.assert_writable(prod_t, prod_id, db.target(settings, "dev"), dev_id)
            else:
                safety.assert_name(prod_t, prod_id)
            if transactional:
                refuse_unloadable(conn, settings)
            with db.advisory_lock(conn, "sync", "sync"):
                guard = Guard(settings, conn, dev_conn, what, progress, prod_id, transactional)
                # The library's prod writers ask for this permit (dbtools.permit): only here,
                # under the lock and after the rules, can any of them write prod.
                grant = permit.Permit("prod", what, prod_id, guard.ensure_backup)
                with permit.granted(grant):
                    if not transactional:
                        if precheck is not None:
                            precheck(conn, dev_conn)
                        faults.pause("guard.locked")
                        yield guard
                        return
                    # The run's migrations execute on this connection: keep `dbtools migrate` out.
                    with (
                        db.advisory_lock(conn, migrations.LOCK_NAME, "migration"),
                        interrupt.outcome(
                            f"prod was not changed: the {what} was rolled back as a whole"
                        ),
                    ):
                        execute(conn, "BEGIN")
                        try:
                            migrations.clear_stale_lock(
                                conn, f"prod database {prod_id.database}", "prod"
                            )
                            if lock_at_start:
                                guard.lock_writes()
                            else:
                                # A busy table refuses the run now, before any backup: the
                                # write lock is taken once and let go at once (a savepoint).
                                execute(conn, "SAVEPOINT dbtools_probe")
                                guard.lock_writes()
                                execute(conn, "ROLLBACK TO SAVEPOINT dbtools_probe")
                                guard.locked_at = None
                                # (the rollback undid SET LOCAL too) catalog reads must not
                                # queue behind another session's lock for ever
                                timeout = max(1, int(settings.lock_timeout_seconds * 1000))
                                execute(conn, f"SET LOCAL lock_timeout = '{timeout}ms'")
                            if precheck is not None:
                                precheck(conn, dev_conn)
                            faults.pause("guard.locked")
                            yield guard
                        except psycopg2.errors.LockNotAvailable as exc:
                            raise LockBusy(
                                f"{what}: a lock was not granted within "
                                f"{settings.lock_timeout_seconds:g}s ({db.describe_error(exc)}); "
                                "rolled back, nothing was changed"
                            ) from None
                        except psycopg2.Error as exc:
                            raise VerificationFailed(
                                f"{what} failed and was rolled back, nothing was changed: "
                                f"{db.describe_error(exc)}"
                            ) from None
                        finally:
                            if guard.history_id is None:
                                with contextlib.suppress(psycopg2.Error):
                                    execute(conn, "ROLLBACK")
        finally:
            if sides is None:
                conn.close()
    finally:
        if dev_conn is not None and sides is None:
            dev_conn.close()


def backup(
    settings: Settings,
    progress: Progress = None,
    reason: str = "manual",
    *,
    checked: db.Identity | None = None,
    workers: int = 2,
) -> BackupResult:
    """A snapshot of prod into the archive, verified (checksums and data) before it counts.

    Prod must pass the same identity rules as a write (expected name; not dev, compared by
    server identity when dev answers): a "prod" backup of the wrong database would later be
    restored into prod. `checked` is the identity the caller (the guard) already checked.
    """
    ident = checked if checked is not None else _checked_prod_identity(settings)
    snap = create_snapshot(settings, "prod", progress=progress, reason=reason, workers=workers)
    _, problems = fmt.verify_dir(snap.path)
    if problems or not snap.verified:
        raise SnapshotError(
            f"backup {snap.path} does not verify ({problems[0] if problems else 'unverified'}); "
            "prod was not changed"
        )
    src = snap.manifest.source
    if src is not None and not fmt.same_source(src, ident):
        fmt.remove_tree(snap.path)
        raise SafetyError(
            f"the backup was taken from {src.get('database')!r}, not from the prod database "
            f"that passed the checks ({ident.database!r}); it was deleted, prod was not changed"
        )
    return BackupResult.of(snap, source=fmt.source_of(ident))


def _checked_prod_identity(settings: Settings) -> db.Identity:
    prod_t = db.target(settings, "prod")
    dev_conn, dev_id = open_dev(settings, required=False)
    try:
        conn = db.connect(prod_t, settings=settings)
        try:
            prod_id = db.identity(conn)
        finally:
            conn.close()
        if dev_conn is not None and dev_id is not None:
            safety.assert_writable(prod_t, prod_id, db.target(settings, "dev"), dev_id)
        else:
            safety.assert_name(prod_t, prod_id)
        return prod_id
    finally:
        if dev_conn is not None:
            dev_conn.close()
