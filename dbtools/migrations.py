"""The yoyo wrapper: status, apply, rollback, new, mark, unlock; file checksums and drift.

yoyo identifies a migration by a hash of its *id* only, so an applied file that was edited
afterwards goes unnoticed. dbtools records a sha256 of each file's content when it applies
or marks it (table `_dbtools_migration_checksum`) and refuses to go on when an applied file
no longer matches.

Each migration runs in one transaction together with yoyo's bookkeeping and the checksum
row, so a migration is either applied and recorded or not there at all. A migration whose
file starts with `-- transactional: false` (e.g. for CREATE INDEX CONCURRENTLY) runs outside
a transaction, as yoyo does it.

Concurrency: yoyo's lock is a row in `yoyo_lock`, which a killed run leaves behind. dbtools
first takes a session-level advisory lock (it dies with its connection), then writes yoyo's
row itself, marked as its own: pid = minus the server pid of its migration connection (a
plain `yoyo` writes its positive OS pid). So a dbtools row found while this run holds the
advisory lock, and whose server process is gone, was left by a killed run (SIGKILL or
SIGTERM at any point: the row is only ever written under the advisory lock) and is cleared
at once. A positive row may be a live `yoyo` command: dbtools waits for it up to the lock
timeout, then says so and names `dbtools migrate unlock`.

Every connection goes to the database of the target's parsed URL parts (`db.libpq_params`):
yoyo is handed a connection built from them, never a URL string to re-parse, and is checked
to reach the same database (system identifier + oid) as the connection the safety rules
approved before anything is written.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.errors
import psycopg2.extensions
import sqlparse
import yoyo
import yoyo.exceptions
from yoyo.backends.base import DatabaseBackend
from yoyo.backends.core.postgresql import PostgresqlBackend
from yoyo.connections import DatabaseURI
from yoyo.migrations import Migration, read_sql_migration, topological_sort

from dbtools import catalog, db, faults, permit, safety
from dbtools.config import Settings
from dbtools.db import Conn
from dbtools.errors import (
    ConfigError,
    ConnectionFailed,
    DbtoolsError,
    LockBusy,
    MigrationError,
    SafetyError,
)

MIGRATION_TABLE = "_yoyo_migration"
LOCK_TABLE = "yoyo_lock"
CHECKSUM_TABLE = "_dbtools_migration_checksum"
LOCK_NAME = "migrate"
ID_PATTERN = re.compile(r"^(\d{4,})_([a-z0-9_]+)$")

_CREATE_CHECKSUM_TABLE = (
    f"CREATE TABLE IF NOT EXISTS {CHECKSUM_TABLE} ("
    "migration_id text PRIMARY KEY, sha256 text NOT NULL, "
    "recorded_at timestamptz NOT NULL DEFAULT now(), operation text NOT NULL)"
)


# --- files ------------------------------------------------------------------------------------


def file_checksum(path: Path) -> str:
    """sha256 of a migration file; line endings are normalised so a git checkout on Windows
    (CRLF) is not mistaken for an edit."""
    data = path.read_bytes().replace(b"\r\n", b"\n")
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _read(migrations_dir: Path) -> list[Migration]:
    """The migrations of a directory in dependency order, fully loaded.

    yoyo resolves `depends` through a process-wide registry keyed by id; loading right after
    reading binds each migration to its siblings from this directory, not to a same-named
    migration read earlier from another one.
    """
    if not migrations_dir.is_dir():
        raise ConfigError(f"migrations directory {migrations_dir} does not exist")
    try:
        found = yoyo.read_migrations(str(migrations_dir))
        for m in found:
            m.load()
        return list(topological_sort(found))
    except yoyo.exceptions.MigrationConflict as exc:
        raise MigrationError(f"two migrations share the id {exc}") from None
    except yoyo.exceptions.BadMigration as exc:
        raise MigrationError(f"unusable migration: {exc.args[0] if exc.args else exc}") from None
    except ValueError as exc:  # sqlparse/yoyo on malformed directives
        raise MigrationError(f"unusable migration in {migrations_dir}: {exc}") from None


def migration_ids(migrations_dir: Path) -> list[str]:
    """Ids of the migrations in a directory, in the order they apply."""
    return [m.id for m in _read(Path(migrations_dir))]


def _statements(path: Path) -> list[str]:
    _, _, statements = read_sql_migration(str(path))
    return [s.strip() for s in statements]


def _rollback_path(m: Migration) -> Path:
    return Path(m.path).with_suffix("").with_suffix(".rollback.sql")


def _is_empty_sql(statement: str) -> bool:
    return not sqlparse.format(statement, strip_comments=True).strip().strip(";").strip()


def rollback_statements(m: Migration) -> list[str]:
    """The statements that undo m, or a SafetyError (exit 3) naming the file when there are none.

    An empty rollback file (or one of comments only) would "roll back" by forgetting the
    migration while its changes stay: re-applying it then fails. Every rollback (`migrate
    rollback`, the sync's rollback) refuses it the same way, before any change.
    """
    path = _rollback_path(m)
    hint = f"write the statements that undo {m.id} in {path.name}"
    if not path.is_file():
        raise SafetyError(
            f"refusing to roll back: {m.id} has no rollback file ({path}); nothing changed",
            hint=hint,
        )
    statements = [s for s in _statements(path) if not _is_empty_sql(s)]
    if not statements:
        raise SafetyError(
            f"refusing to roll back: the rollback file of {m.id} ({path}) has no statements "
            "(only comments or whitespace); nothing changed",
            hint=hint,
        )
    return statements


# --- reading state (plain psycopg2 connections) -------------------------------------------


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
    files = _read(migrations_dir)
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
    if st.drift:
        raise drift_error(st, label)
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


# --- the yoyo session -----------------------------------------------------------------------


class _Backend(PostgresqlBackend):
    """yoyo's PostgreSQL backend on a connection built from dbtools' parsed URL parts.

    yoyo re-parses URL strings with urlsplit and hands the raw path to libpq: a database
    named `a#b` (or `a?b`, `a%2Fb`) then became another database. Here yoyo never sees a
    URL: its URI carries only the (decoded) name it uses in its own queries.
    """

    def __init__(self, params: dict[str, str], migration_table: str) -> None:
        self._params = params
        uri = DatabaseURI("postgresql", None, None, None, None, params["dbname"], {})
        super().__init__(uri, migration_table)

    def connect(self, dburi: DatabaseURI) -> Conn:
        conn = psycopg2.connect(psycopg2.extensions.make_dsn(**self._params))
        conn.autocommit = True  # as yoyo's own backend: it sends BEGIN/COMMIT itself
        self.schema = None
        return conn


def _backend(t: db.Target, settings: Settings | None) -> DatabaseBackend:
    """A yoyo backend connected to t; nothing written (yoyo's tables come later)."""
    params = db.libpq_params(t)
    params["connect_timeout"] = str(settings.connect_timeout_seconds if settings else 10)
    params["application_name"] = f"dbtools-migrate-{t.env}"
    try:
        return _Backend(params, MIGRATION_TABLE)
    except psycopg2.Error as exc:
        raise ConnectionFailed(
            f"cannot open {t.env} database {t.masked} for migrations: {db.describe_error(exc)}"
        ) from None


@dataclass
class _Session:
    """An open yoyo backend on one database plus the guard connection holding the run lock."""

    target: db.Target
    backend: DatabaseBackend
    guard: Conn
    migrations_dir: Path
    database: str
    # Called before the first change: the guard's backup on prod, nothing elsewhere.
    ensure_backup: Callable[[], object] = lambda: None

    @property
    def conn(self) -> Conn:
        return self.backend.connection

    def status(self) -> MigrationStatus:
        return status_of(self.conn, self.migrations_dir, self.target.env, self.database)


@contextlib.contextmanager
def _open(
    t: db.Target,
    migrations_dir: Path,
    settings: Settings | None = None,
    expect: db.Identity | None = None,
) -> Iterator[_Session]:
    """A guard connection and a yoyo backend on t, both checked to be one database (and the
    database `expect` names, when the caller approved one already). Nothing is written."""
    allow_insecure = bool(settings and settings.allow_insecure)
    db.check_endpoint(t, "migrate", allow_insecure=allow_insecure)
    guard = db.connect(t, purpose="lock", settings=settings)
    try:
        ident = db.identity(guard)
        if expect is not None and not db.same_database(expect, ident):
            db.assert_same_database(t, expect, guard, "the migration lock connection")
        backend = _backend(t, settings)
        try:
            db.assert_same_database(t, ident, backend.connection, "yoyo's migration connection")
            timeout = settings.lock_timeout_seconds if settings else 10.0
            with backend.cursor() as cur:
                cur.execute(db.SESSION_SQL)
                # An ALTER queued behind an app's long transaction would make every query on
                # that table queue behind it: give up after the lock timeout instead.
                cur.execute(f"SET lock_timeout = '{int(timeout * 1000)}ms'")
            yield _Session(t, backend, guard, Path(migrations_dir), ident.database)
        finally:
            with contextlib.suppress(psycopg2.Error):
                backend.connection.close()
    finally:
        guard.close()


class ForeignLock(SafetyError):
    """yoyo's lock is held by something that is not a dbtools run (a plain `yoyo`, or a run
    of a dbtools that did not mark its rows): maybe alive, so never cleared on a guess."""


def _lock_row(s: _Session) -> tuple[int, str] | None:
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


# The old name, kept for callers.
_stale_lock = _lock_row


def _server_process_alive(s: _Session, pid: int) -> bool:
    with s.guard.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,))
        alive = cur.fetchone() is not None
    s.guard.rollback()
    return alive


def _try_yoyo_lock(s: _Session) -> bool:
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


def _release_yoyo_lock(s: _Session) -> None:
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


def _lock_held_error(s: _Session, label: str, timeout: float) -> SafetyError:
    return _held_error(_lock_row(s), label, s.target.env, timeout)


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
def _locked(s: _Session, timeout: float) -> Iterator[None]:
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


# --- results --------------------------------------------------------------------------------


@dataclass
class MigrationStep:
    id: str
    transactional: bool
    sql: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ApplyResult:
    """What apply/rollback/mark did (or, with dry_run, would do) on one database."""

    env: str
    database: str
    operation: str  # apply | rollback | mark
    dry_run: bool
    done: list[str]  # ids applied / rolled back / marked, in order (planned ones in a dry run)
    steps: list[MigrationStep]
    status: MigrationStatus
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "database": self.database,
            "operation": self.operation,
            "dry_run": self.dry_run,
            "done": self.done,
            "steps": [s.as_dict() for s in self.steps],
            "status": self.status.as_dict(),
            "warnings": self.warnings,
        }


def _step(m: Migration, direction: str) -> MigrationStep:
    # A rollback refuses an empty rollback file, naming it.
    statements = _statements(Path(m.path)) if direction == "apply" else rollback_statements(m)
    return MigrationStep(m.id, bool(m.use_transactions), "\n\n".join(statements))


def _record(s: _Session, m: Migration, operation: str) -> None:
    s.backend.execute(_CREATE_CHECKSUM_TABLE)
    s.backend.execute(
        f"INSERT INTO {CHECKSUM_TABLE} (migration_id, sha256, operation) "
        "VALUES (:id, :sum, :op) ON CONFLICT (migration_id) DO UPDATE "
        "SET sha256 = excluded.sha256, operation = excluded.operation, recorded_at = now()",
        {"id": m.id, "sum": file_checksum(Path(m.path)), "op": operation},
    )


def _run_one(s: _Session, m: Migration, direction: str) -> None:
    """Run one migration and its bookkeeping; all in one transaction when it is transactional."""
    backend = s.backend

    def bookkeeping() -> None:
        backend.log_migration(m, direction)
        if direction == "apply":
            backend.mark_one(m, log=False)
            _record(s, m, "apply")
        else:
            backend.unmark_one(m, log=False)
            backend.execute(_CREATE_CHECKSUM_TABLE)
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
    s: _Session, m: Migration, direction: str, exc: BaseException, done: list[str]
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
    return MigrationError(
        f"could not {verb} {m.id} on {where}: {db.describe_error(exc)} ({fate}){before}"
    )


def _execute(
    s: _Session,
    plan: Sequence[Migration],
    direction: str,
    before_write: Callable[[], object] | None,
) -> list[str]:
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


# --- operations -----------------------------------------------------------------------------


def _check_writable(settings: Settings, s: _Session) -> None:
    """The safety rules for writing a target; the other side, when configured, must be
    identified (an unreachable one is a refusal, never a skipped rule)."""
    safety.approve_write(settings, s.target, s.guard)


def _guard_history(st: MigrationStatus, label: str) -> None:
    if st.drift:
        raise drift_error(st, label)


def _select_upto(files: list[Migration], upto: str | None) -> list[Migration]:
    if upto is None:
        return files
    ids = [m.id for m in files]
    if upto not in ids:
        raise ConfigError(f"no migration {upto!r} in the migrations directory")
    return files[: ids.index(upto) + 1]


@contextlib.contextmanager
def _session(settings: Settings, env: str, expect: db.Identity | None = None) -> Iterator[_Session]:
    t = db.target(settings, env)
    with _open(t, settings.migrations_dir, settings, expect) as s:
        yield s


@contextlib.contextmanager
def _writing(settings: Settings, env: str, expect: db.Identity | None = None) -> Iterator[_Session]:
    """A session on env that passed the safety rules and holds the migration lock.

    expect: the identity a caller already approved (its own connection to env); a session
    reaching any other database is a SafetyError before anything is written. Prod is written
    only under the guard's permit (dbtools.permit): its database is the one expected, and the
    session's `ensure_backup` is the guard's.
    """
    prod_permit = permit.require("write migrations") if env == "prod" else None
    if prod_permit is not None and expect is None:
        expect = prod_permit.identity
    with _session(settings, env, expect) as s:
        if prod_permit is not None:
            permit.require("write migrations", db.identity(s.guard))
            s.ensure_backup = prod_permit.ensure_backup
        _check_writable(settings, s)
        with _locked(s, settings.lock_timeout_seconds):
            yield s


def _current(s: _Session) -> tuple[MigrationStatus, str]:
    """The status of the session's database, refusing on drift; and how to name it."""
    label = f"{s.target.env} database {s.database}"
    st = s.status()
    _guard_history(st, label)
    return st, label


def status(settings: Settings, env: str) -> MigrationStatus:
    t = db.target(settings, env)
    conn = db.connect(t, settings=settings)
    try:
        ident = db.identity(conn)
        return status_of(conn, settings.migrations_dir, env, ident.database)
    finally:
        conn.close()


def _plan_apply(
    st: MigrationStatus, files: list[Migration], upto: str | None, ids: Sequence[str] | None
) -> list[Migration]:
    pending = set(st.pending)
    plan = [m for m in _select_upto(files, upto) if m.id in pending]
    if ids is not None:
        unknown = [i for i in ids if i not in {m.id for m in files}]
        if unknown:
            raise ConfigError(f"no such migration: {', '.join(unknown)}")
        plan = [m for m in plan if m.id in set(ids)]
    return plan


def _plan_rollback(
    st: MigrationStatus,
    files: list[Migration],
    ids: Sequence[str] | None,
    count: int | None,
    label: str,
) -> list[Migration]:
    applied = set(st.applied)
    # newest first: the reverse of the dependency order of what is applied
    newest_first = [m for m in reversed(files) if m.id in applied]
    if ids is not None:
        missing = [i for i in ids if i not in applied]
        if missing:
            raise MigrationError(f"not applied on {label}, cannot roll back: {', '.join(missing)}")
        plan = [m for m in newest_first if m.id in set(ids)]
    else:
        plan = newest_first[: 1 if count is None else max(count, 0)]
    chosen = {m.id for m in plan}
    for m in newest_first:
        if m.id in chosen:
            continue
        needs = sorted(d.id for d in m.depends if d.id in chosen)
        if needs:
            raise MigrationError(
                f"cannot roll back {', '.join(needs)} on {label}: {m.id} depends on it and "
                "stays applied; roll that back too"
            )
    return plan


def _dry_run(
    settings: Settings,
    env: str,
    direction: str,
    choose: Callable[[MigrationStatus, str], list[Migration]],
) -> ApplyResult:
    """Plan on a plain read-only connection: opening yoyo would create its tables."""
    t = db.target(settings, env)
    db.check_endpoint(t, "migrate", allow_insecure=settings.allow_insecure)
    conn = db.connect(t, settings=settings)
    try:
        ident = db.identity(conn)
        st = status_of(conn, settings.migrations_dir, env, ident.database)
    finally:
        conn.close()
    label = f"{env} database {st.database}"
    _guard_history(st, label)
    plan = choose(st, label)
    steps = [_step(m, direction) for m in plan]
    return ApplyResult(env, st.database, direction, True, [m.id for m in plan], steps, st)


def apply(
    settings: Settings,
    env: str,
    *,
    upto: str | None = None,
    dry_run: bool = False,
    ids: Sequence[str] | None = None,
    before_write: Callable[[], object] | None = None,
    expect: db.Identity | None = None,
) -> ApplyResult:
    """Apply pending migrations (all, up to `upto`, or only `ids`) to dev or prod.

    `before_write` runs once, under the migration lock, just before the first migration is
    applied, and only when something will be applied (never in a dry run). `expect`: the
    identity of env the caller approved; reaching another database is a SafetyError before
    anything is written.
    """
    if dry_run:
        files = _read(settings.migrations_dir)
        return _dry_run(
            settings, env, "apply", lambda st, _label: _plan_apply(st, files, upto, ids)
        )
    with _writing(settings, env, expect) as s:
        return _apply_locked(s, upto=upto, ids=ids, before_write=before_write or s.ensure_backup)


def _apply_locked(
    s: _Session,
    *,
    upto: str | None,
    ids: Sequence[str] | None,
    before_write: Callable[[], object] | None,
) -> ApplyResult:
    st, label = _current(s)
    plan = _plan_apply(st, _read(s.migrations_dir), upto, ids)
    warnings = []
    if st.unknown:
        warnings.append(f"{label} has applied migrations without a file: {', '.join(st.unknown)}")
    steps = [_step(m, "apply") for m in plan]
    done = _execute(s, plan, "apply", before_write)
    return ApplyResult(s.target.env, s.database, "apply", False, done, steps, s.status(), warnings)


def rollback(
    settings: Settings,
    env: str,
    *,
    ids: list[str] | None = None,
    count: int | None = None,
    dry_run: bool = False,
    before_write: Callable[[], object] | None = None,
    expect: db.Identity | None = None,
) -> ApplyResult:
    """Roll back applied migrations: the given ids, the last `count`, or (neither) the last one.

    Refuses when a migration that stays applied depends on one being rolled back.
    `before_write` runs once, under the migration lock, before the first rollback step.
    """
    files = _read(settings.migrations_dir)
    if dry_run:
        return _dry_run(
            settings,
            env,
            "rollback",
            lambda st, label: _plan_rollback(st, files, ids, count, label),
        )
    with _writing(settings, env, expect) as s:
        st, label = _current(s)
        plan = _plan_rollback(st, _read(s.migrations_dir), ids, count, label)
        steps = [_step(m, "rollback") for m in plan]
        done = _execute(s, plan, "rollback", before_write or s.ensure_backup)
        return ApplyResult(env, s.database, "rollback", False, done, steps, s.status())


def mark(
    settings: Settings, env: str, *, upto: str | None = None, expect: db.Identity | None = None
) -> ApplyResult:
    """Baseline an existing database: record migrations (all, or up to `upto`) as applied
    without running them, with the checksums of the files as they are now."""
    with _writing(settings, env, expect) as s:
        st, label = _current(s)
        chosen = _select_upto(_read(s.migrations_dir), upto)
        pending = set(st.pending)
        unchecked = set(st.unchecked)
        to_mark = [m for m in chosen if m.id in pending]
        to_checksum = [m for m in chosen if m.id in unchecked]
        if to_mark or to_checksum:
            s.ensure_backup()  # bookkeeping only, but a prod write all the same
        try:
            with s.backend.transaction():
                for m in to_mark:
                    s.backend.mark_one(m)
                    _record(s, m, "mark")
                for m in to_checksum:
                    _record(s, m, "baseline")
        except psycopg2.Error as exc:
            raise MigrationError(
                f"could not mark migrations on {label}: {db.describe_error(exc)}"
            ) from None
        return ApplyResult(env, s.database, "mark", False, [m.id for m in to_mark], [], s.status())


@dataclass
class UnlockResult:
    env: str
    database: str
    cleared: bool
    held_by_pid: int | None
    since: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def unlock(settings: Settings, env: str) -> UnlockResult:
    """Clear a stale yoyo lock (yoyo break-lock); refuses while a dbtools run is active."""
    with _session(settings, env) as s:
        holder = _lock_row(s)
        try:
            with db.advisory_lock(s.guard, LOCK_NAME, "migration"):
                if holder is not None:
                    s.backend.break_lock()
        except LockBusy:
            raise LockBusy(
                f"a dbtools migration run is active on {env} database {s.database}: "
                "its lock is not stale, not clearing it"
            ) from None
        return UnlockResult(
            env,
            s.database,
            holder is not None,
            holder[0] if holder else None,
            holder[1] if holder else None,
        )


@dataclass
class NewResult:
    id: str
    path: str
    rollback_path: str
    depends: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def new(migrations_dir: Path, name: str) -> NewResult:
    """Create NNNN_name.sql and NNNN_name.rollback.sql, depending on the newest migration."""
    slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    if not slug:
        raise ConfigError(f"migration name {name!r} has no letters or digits")
    migrations_dir = Path(migrations_dir)
    migrations_dir.mkdir(parents=True, exist_ok=True)
    existing = _read(migrations_dir)
    numbers = [int(m.group(1)) for m in (ID_PATTERN.match(x.id) for x in existing) if m]
    previous = existing[-1].id if existing else None
    mid = f"{(max(numbers) + 1) if numbers else 1:04d}_{slug}"
    path = migrations_dir / f"{mid}.sql"
    rpath = migrations_dir / f"{mid}.rollback.sql"
    if path.exists() or rpath.exists():
        raise ConfigError(f"{path} already exists")
    header = f"-- {name}\n"
    if previous:
        header += f"-- depends: {previous}\n"
    path.write_text(
        header + "--\n-- One migration, one transaction. For statements that cannot run in a\n"
        "-- transaction (CREATE INDEX CONCURRENTLY), add the directive line\n"
        "-- `transactional: false` as a comment at the top, and keep the file to one statement.\n"
        "-- Rename columns with RENAME COLUMN: never DROP + ADD, which loses the data.\n\n"
    )
    rpath.write_text(f"-- Undo {mid}: the exact reverse of {path.name}, keeping data.\n\n")
    return NewResult(mid, str(path), str(rpath), previous)


# --- the plain helper for tests and the demo ------------------------------------------------


def apply_all(url: str, migrations_dir: Path, *, upto: str | None = None) -> list[str]:
    """Migrate the database at url to head (or up to and including `upto`); the ids applied.

    No name or distinctness checks: this is for preparing test and demo databases.
    """
    t = db.Target(env="target", url=url, expected_name="")
    with _open(t, Path(migrations_dir)) as s, _locked(s, 10.0):
        result = _apply_locked(s, upto=upto, ids=None, before_write=None)
    return result.done
