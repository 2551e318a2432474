"""The pipelines: backup, sync-data, full-sync, rollback, and the dry-run plan.

One rule holds for every path that writes prod, and it lives in ONE function,
`_guarded_prod_write`: open a direct (non-pooler) connection to prod, check the safety rules
(expected name, prod distinct from dev), hold the "sync" advisory lock on that connection
for the whole run (a second sync is refused; the lock dies with the session, so a killed run
leaves none behind), and take a backup snapshot of prod and verify it before anything is
written. A failure anywhere in there means prod was not touched.

Dev is only ever read: the connections opened here to dev are read-only sessions, and the
dev snapshot is read in a READ ONLY transaction by the snapshot module.

Preserved tables (settings.preserved_tables: the auth tables Account, Session,
VerificationToken) keep prod's rows through sync-data. Their foreign keys stay valid because
the loader re-inserts the preserved rows after dev's parents (User) are loaded, inside the
same transaction, with the constraints in force: a preserved row whose parent does not
exist in dev's data fails the load, which rolls back completely and names the orphans. The
cure is then to keep that user in dev, or to delete the stale login in prod on purpose.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2.extensions

from dbtools import catalog, checks, db, migrations, safety, schema_sync
from dbtools import verify as verify_mod
from dbtools.config import Settings, redact
from dbtools.db import Conn, Progress
from dbtools.errors import (
    ConfigError,
    DbtoolsError,
    LockBusy,
    MigrationError,
    SafetyError,
    SnapshotError,
    VerificationFailed,
)
from dbtools.snapshot import archive, restore
from dbtools.snapshot import format as fmt
from dbtools.snapshot.create import SnapshotResult, create_snapshot

# Test-only: seconds to sleep inside the load transaction, after the checks passed and
# before COMMIT, so a test can kill the process at the worst moment. Read in this one place.
PAUSE_ENV = "DBTOOLS_TEST_PAUSE_BEFORE_COMMIT"


def _say(progress: Progress, text: str) -> None:
    if progress is not None:
        progress(text)


# --- results -------------------------------------------------------------------------------


@dataclass
class BackupResult:
    path: Path
    created_at: str
    database: str
    tables: int
    rows: int
    bytes: int
    migrations: list[str]
    verified: bool

    @classmethod
    def of(cls, snap: SnapshotResult) -> BackupResult:
        return cls(
            path=snap.path,
            created_at=snap.manifest.created_at,
            database=snap.manifest.database,
            tables=snap.tables,
            rows=snap.rows,
            bytes=snap.bytes,
            migrations=list(snap.manifest.migrations),
            verified=snap.verified,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "created_at": self.created_at,
            "database": self.database,
            "tables": self.tables,
            "rows": self.rows,
            "bytes": self.bytes,
            "migrations": self.migrations,
            "verified": self.verified,
        }


@dataclass
class TableChange:
    table: str
    rows_before: int | None
    rows_after: int | None
    preserved: bool = False

    @property
    def changed(self) -> bool:
        return self.rows_before != self.rows_after

    def as_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "rows_before": self.rows_before,
            "rows_after": self.rows_after,
            "preserved": self.preserved,
        }


def _changes(load: Any) -> list[TableChange]:
    out = []
    for key, info in dict(load.tables).items():
        out.append(
            TableChange(
                table=key,
                rows_before=info.get("rows_before"),
                rows_after=info.get("rows_after"),
                preserved=bool(info.get("preserved")),
            )
        )
    return out


@dataclass
class SyncResult:
    backup: BackupResult
    dev_snapshot: Path
    tables: list[TableChange]
    checks: checks.CheckReport | None

    def as_dict(self) -> dict[str, Any]:
        return {
            # "path" is the backup: the snapshot this run wrote into prod's archive and the
            # one `dbtools rollback` restores.
            "path": str(self.backup.path),
            "backup": self.backup.as_dict(),
            "dev_snapshot": str(self.dev_snapshot),
            "tables": [t.as_dict() for t in self.tables],
            "checks": self.checks.as_dict() if self.checks else None,
        }


@dataclass
class Plan:
    """What a sync would do, computed without writing anything (not even a snapshot)."""

    dev_database: str
    prod_database: str
    pending: dict[str, list[str]]  # per database: migration files not applied there
    to_apply_on_prod: list[str]  # applied on dev, not on prod: what sync-schema would run
    prod_only_migrations: list[str]  # applied on prod, unknown to dev: sync-schema refuses
    schema_matches: bool  # fingerprint and applied migrations equal now
    tables: list[dict[str, Any]]  # table, dev_rows, prod_rows, action
    backup_path: Path
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "dev_database": self.dev_database,
            "prod_database": self.prod_database,
            "pending": self.pending,
            "to_apply_on_prod": self.to_apply_on_prod,
            "prod_only_migrations": self.prod_only_migrations,
            "schema_matches": self.schema_matches,
            "tables": self.tables,
            "backup_path": str(self.backup_path),
            "problems": self.problems,
        }


@dataclass
class Step:
    name: str
    status: str = "pending"  # pending | ok | failed | skipped
    detail: str = ""
    next_action: str = ""
    exit_code: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class FullSyncResult:
    steps: list[Step]
    dry_run: bool = False
    plan: Plan | None = None
    backup: BackupResult | None = None
    schema: dict[str, Any] | None = None
    data: SyncResult | None = None
    checks: checks.CheckReport | None = None

    @property
    def ok(self) -> bool:
        return all(s.status in ("ok", "skipped") for s in self.steps)

    @property
    def exit_code(self) -> int:
        return next((s.exit_code for s in self.steps if s.status == "failed"), 0)

    @property
    def failed(self) -> Step | None:
        return next((s for s in self.steps if s.status == "failed"), None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "steps": [s.as_dict() for s in self.steps],
            "plan": self.plan.as_dict() if self.plan else None,
            "path": str(self.backup.path) if self.backup else None,
            "backup": self.backup.as_dict() if self.backup else None,
            "schema": self.schema,
            "data": self.data.as_dict() if self.data else None,
            "checks": self.checks.as_dict() if self.checks else None,
        }


@dataclass
class RollbackResult:
    restored: Path
    restored_created_at: str
    backup: BackupResult  # prod as it was just before the rollback
    migrations_rolled_back: list[str]
    tables: list[TableChange]
    skipped_bad: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.restored),
            "restored": str(self.restored),
            "restored_created_at": self.restored_created_at,
            "backup": self.backup.as_dict(),
            "migrations_rolled_back": self.migrations_rolled_back,
            "tables": [t.as_dict() for t in self.tables],
        }


# --- the one way to write prod ---------------------------------------------------------------


@dataclass
class _Guard:
    settings: Settings
    conn: Conn  # direct prod connection holding the sync lock; also carries the load
    dev_conn: Conn | None  # read-only
    what: str
    progress: Progress
    _backup: BackupResult | None = None

    def ensure_backup(self) -> BackupResult:
        """The fresh verified backup of this run, taken the first time anything will write."""
        if self._backup is None:
            _say(self.progress, f"{self.what}: backing up prod")
            self._backup = backup(
                self.settings, progress=self.progress, reason=f"before {self.what}"
            )
            _say(self.progress, f"{self.what}: backup verified: {self._backup.path}")
        return self._backup

    def before_write(self) -> None:
        """Hook for writers run elsewhere (sync_schema): back up once, before their first write."""
        self.ensure_backup()

    @property
    def backup(self) -> BackupResult | None:
        return self._backup


def _open_dev(settings: Settings, *, required: bool) -> tuple[Conn | None, db.Identity | None]:
    try:
        conn = db.connect(db.target(settings, "dev"), settings=settings)
    except DbtoolsError:
        if required:
            raise
        return None, None
    try:
        checks.set_read_only(conn)
        return conn, db.identity(conn)
    except BaseException:
        conn.close()
        raise


@contextlib.contextmanager
def _guarded_prod_write(
    settings: Settings,
    *,
    what: str,
    progress: Progress,
    precheck: Callable[[Conn, Conn | None], None] | None = None,
    need_dev: bool = True,
) -> Iterator[_Guard]:
    """Every prod write runs inside this: safety rules, the sync lock, a fresh verified backup.

    Writers call guard.ensure_backup() (or pass guard.before_write as a hook) before their
    first write; the backup is taken once per run, under the lock, and verified.
    precheck(prod_conn, dev_conn) runs under the lock before anything else, so a refusal
    costs nothing and cannot race another run.
    """
    prod_t = db.target(settings, "prod")
    dev_conn, dev_id = _open_dev(settings, required=need_dev)
    try:
        conn = db.connect(prod_t, purpose="lock", settings=settings)
        try:
            prod_id = db.identity(conn)
            if dev_conn is not None and dev_id is not None:
                safety.assert_writable(prod_t, prod_id, db.target(settings, "dev"), dev_id)
            else:
                safety.assert_name(prod_t, prod_id)
            with db.advisory_lock(conn, "sync", "sync"):
                if precheck is not None:
                    precheck(conn, dev_conn)
                yield _Guard(settings, conn, dev_conn, what, progress)
        finally:
            conn.close()
    finally:
        if dev_conn is not None:
            dev_conn.close()


ROLLBACK_REASON = "before rollback"


def backup(settings: Settings, progress: Progress = None, reason: str = "manual") -> BackupResult:
    """A snapshot of prod into the archive, verified (checksums and data) before it counts."""
    snap = create_snapshot(settings, "prod", progress=progress, reason=reason)
    _, problems = fmt.verify_dir(snap.path)
    if problems or not snap.verified:
        raise SnapshotError(
            f"backup {snap.path} does not verify ({problems[0] if problems else 'unverified'}); "
            "prod was not changed"
        )
    return BackupResult.of(snap)


# --- schema comparison -----------------------------------------------------------------------


def _assert_schemas_match(prod: Conn, dev: Conn | None, settings: Settings) -> None:
    if dev is None:
        raise SafetyError("sync-data needs dev to compare schemas with")
    dev_objects, dev_applied = migrations.schema_state(dev, settings.schemas)
    prod_objects, prod_applied = migrations.schema_state(prod, settings.schemas)
    problems: list[str] = []
    if dev_applied != prod_applied:
        missing = [m for m in dev_applied if m not in prod_applied]
        extra = [m for m in prod_applied if m not in dev_applied]
        if missing:
            problems.append(f"migrations applied on dev but not prod: {', '.join(missing)}")
        if extra:
            problems.append(f"migrations applied on prod but not dev: {', '.join(extra)}")
    diff = catalog.diff_objects(dev_objects, prod_objects)
    if not diff.empty:
        lines = diff.lines()
        more = f" (and {len(lines) - 3} more)" if len(lines) > 3 else ""
        problems.append("schema differs: " + "; ".join(lines[:3]) + more)
    if problems:
        raise SafetyError(
            "refusing to copy data: dev and prod schemas do not match; " + "; ".join(problems),
            hint="run `dbtools sync-schema` (or `dbtools full-sync`), then `dbtools diff`",
        )


# --- sync-data ---------------------------------------------------------------------------


def _pause_for_tests() -> None:
    raw = os.environ.get(PAUSE_ENV)
    if raw:
        time.sleep(float(raw))


def _load_dev_into_prod(guard: _Guard) -> SyncResult:
    settings, progress = guard.settings, guard.progress
    _assert_schemas_match(guard.conn, guard.dev_conn, settings)
    made = guard.ensure_backup()
    _say(progress, "sync-data: snapshot of dev")
    dev_snap = create_snapshot(settings, "dev", progress=progress)
    reports: list[checks.CheckReport] = []

    def before_commit(conn: Conn) -> None:
        _say(progress, "sync-data: running the checks before commit")
        report = checks.run_checks(conn, settings, dev_conn=guard.dev_conn, env="prod")
        reports.append(report)
        if not report.ok:
            raise VerificationFailed(
                f"{report.summary()}; the load was rolled back, prod is unchanged",
                hint=f"fix the data in dev, then rerun; backup taken: {made.path}",
            )
        _pause_for_tests()

    load = restore.load_snapshot(
        guard.conn,
        dev_snap.path,
        settings=settings,
        preserved=settings.preserved_tables,
        before_commit=before_commit,
        progress=progress,
    )
    return SyncResult(
        backup=made,
        dev_snapshot=dev_snap.path,
        tables=_changes(load),
        checks=reports[-1] if reports else None,
    )


def sync_data(
    settings: Settings, *, dry_run: bool = False, progress: Progress = None
) -> SyncResult | Plan:
    """The seed's copy-dev-to-prod: backup prod, snapshot dev, load it into prod atomically.

    Refuses unless the schemas match. The load and the checks run in one transaction on the
    locked prod connection; a failed check rolls everything back. With dry_run, returns the
    Plan and writes nothing.
    """
    if dry_run:
        return plan(settings)

    def precheck(prod: Conn, dev: Conn | None) -> None:
        _assert_schemas_match(prod, dev, settings)

    with _guarded_prod_write(
        settings, what="sync-data", progress=progress, precheck=precheck
    ) as guard:
        return _load_dev_into_prod(guard)


# --- full-sync ----------------------------------------------------------------------------

STEPS = ("verify", "backup", "sync-schema", "sync-data", "check")


def _next_action(step: str, exc: DbtoolsError, backup_path: Path | None) -> str:
    undo = (
        f"to return prod to its state before this run: `dbtools rollback --yes` (restores "
        f"{backup_path})"
        if backup_path
        else ""
    )
    if isinstance(exc, LockBusy):
        return "another sync is running: wait for it to finish, then rerun `dbtools full-sync`"
    if step == "verify":
        return (
            "nothing was changed. Fix the problem (URLs in .env / .env.production.local or "
            "the environment, names in setup.cfg [dbtools]), then `dbtools verify`"
        )
    if step == "backup":
        return (
            "prod was not changed. Check the snapshot directory (space, permissions) and "
            "`dbtools backup`, then rerun `dbtools full-sync`"
        )
    if step == "sync-schema":
        return (
            "prod's data was not copied. Migrations applied before the failure stay applied; "
            "see `dbtools migrate status --target both`, fix the migration in dev, then rerun. "
            + undo
        ).strip()
    if step == "sync-data":
        if isinstance(exc, SafetyError):
            return "prod's data was not changed. Run `dbtools diff`, fix with migrations, rerun"
        return (
            "prod's data is unchanged (the load was rolled back). Fix the data in dev (see the "
            "failed checks), then `dbtools sync-data`. " + undo
        ).strip()
    return f"inspect with `dbtools check --target prod`. {undo}".strip()


def full_sync(
    settings: Settings, *, dry_run: bool = False, progress: Progress = None
) -> FullSyncResult:
    """verify → backup → sync-schema → sync-data → check, stopping at the first failure."""
    if dry_run:
        return FullSyncResult(steps=[], dry_run=True, plan=plan(settings))
    result = FullSyncResult(steps=[Step(name) for name in STEPS])
    steps = {s.name: s for s in result.steps}
    current = "verify"

    def ok(name: str, detail: str) -> None:
        steps[name].status, steps[name].detail = "ok", detail
        _say(progress, f"full-sync: {name}: {detail}")

    try:
        report = verify_mod.verify(settings)
        if not report.ok:
            code = verify_mod.exit_code(report)
            err_cls = {3: SafetyError, 2: ConfigError}.get(code, VerificationFailed)
            raise err_cls(f"verify failed: {report.problems[0]}")
        ok("verify", "dev and prod reachable, named as expected, distinct")
        current = "backup"
        with _guarded_prod_write(settings, what="full-sync", progress=progress) as guard:
            made = result.backup = guard.ensure_backup()
            ok("backup", f"{made.path} ({made.rows} rows, verified)")
            current = "sync-schema"
            schema = schema_sync.sync_schema(settings, before_write=guard.before_write)
            result.schema = schema.as_dict()
            applied = list(getattr(schema, "applied", []) or [])
            ok("sync-schema", f"applied {', '.join(applied)}" if applied else "up to date")
            current = "sync-data"
            result.data = _load_dev_into_prod(guard)
            changed = sum(1 for t in result.data.tables if t.changed)
            ok("sync-data", f"{len(result.data.tables)} tables loaded, {changed} changed")
        current = "check"
        result.checks = checks.run_checks_on(settings, "prod")
        if not result.checks.ok:
            raise VerificationFailed(result.checks.summary())
        ok("check", result.checks.summary())
    except DbtoolsError as exc:
        step = steps[current]
        step.status, step.detail = "failed", redact(exc.message)
        step.exit_code = exc.exit_code
        step.next_action = _next_action(current, exc, result.backup.path if result.backup else None)
        for s in result.steps:
            if s.status == "pending":
                s.status = "skipped"
    return result


# --- rollback -----------------------------------------------------------------------------


def _rollback_file(settings: Settings, migration_id: str) -> Path:
    return settings.migrations_dir / f"{migration_id}.rollback.sql"


def rollback(settings: Settings, *, progress: Progress = None) -> RollbackResult:
    """The seed's Emergency Rollback: restore the newest verified prod backup into prod.

    Refuses, changing nothing, when the newest backup does not verify (naming the newest that
    does), when the backup lists migrations prod no longer has, or when a migration applied
    since the backup has no rollback file. Migrations applied since the backup are rolled
    back first, newest first. Prod itself is backed up before anything is written, so a
    rollback can be undone by restoring that backup.
    """
    # A backup taken by a rollback holds the state that rollback replaced (or, if it failed,
    # the state it was meant to replace): never a state to roll back to.
    good, bad = archive.newest_verified(settings, "prod", skip_reasons=(ROLLBACK_REASON,))
    if bad:
        newest_bad, problems = bad[0]
        why = problems[0] if problems else "does not verify"
        named = (
            f"the newest backup that verifies is {good}: restore it explicitly with "
            f"`dbtools restore {good} --target prod`"
            if good
            else "no older backup verifies either"
        )
        raise SafetyError(
            f"refusing to roll back: the newest prod backup {newest_bad} fails verification "
            f"({why}); {named}"
        )
    if good is None:
        raise SnapshotError(
            f"no verified prod backup in {settings.snapshot_dir / 'prod'}; nothing to roll back to"
        )
    manifest = fmt.read_manifest(good)
    to_undo: list[str] = []

    def precheck(prod: Conn, _dev: Conn | None) -> None:
        _, applied = migrations.schema_state(prod, settings.schemas)
        gone = [m for m in manifest.migrations if m not in applied]
        if gone:
            raise SafetyError(
                f"refusing to roll back to {good.name}: it was taken with migrations prod no "
                f"longer has: {', '.join(gone)}",
                hint="apply them on prod first (`dbtools migrate apply --target prod`)",
            )
        newer = [m for m in applied if m not in manifest.migrations]
        blocked = [m for m in newer if not _rollback_file(settings, m).is_file()]
        if blocked:
            raise SafetyError(
                f"refusing to roll back to {good.name}: prod applied migrations since, and "
                f"these have no rollback file: {', '.join(blocked)}",
                hint="write <id>.rollback.sql for them in the migrations directory",
            )
        to_undo[:] = list(reversed(newer))

    with _guarded_prod_write(
        settings, what="rollback", progress=progress, precheck=precheck, need_dev=False
    ) as guard:
        made = guard.ensure_backup()
        if to_undo:
            # Migration rollbacks commit on their own; make sure the load after them will not
            # stop at a busy table, or prod would be left with its schema undone and data not.
            _tables_free(guard.conn, settings)
            _say(progress, f"rollback: rolling back migrations {', '.join(to_undo)}")
            try:
                migrations.rollback(settings, "prod", ids=to_undo)
            except DbtoolsError as exc:
                raise MigrationError(
                    f"rolling back {', '.join(to_undo)} failed: {exc.message}; prod's data is "
                    f"unchanged, backup of its current state: {made.path}"
                ) from None
        _say(progress, f"rollback: restoring {good}")
        try:
            load = restore.load_snapshot(
                guard.conn, good, settings=settings, preserved=(), progress=progress
            )
        except DbtoolsError as exc:
            if not to_undo:
                raise
            half = DbtoolsError(
                f"migrations {', '.join(to_undo)} were rolled back on prod, but restoring "
                f"{good.name} failed: {exc.message}. Prod has the older schema with its current "
                f"data; run `dbtools rollback --yes` again to finish (backup of the state "
                f"before this rollback: {made.path})",
                hint=exc.hint,
            )
            half.exit_code = exc.exit_code
            raise half from None
        return RollbackResult(
            restored=good,
            restored_created_at=manifest.created_at,
            backup=made,
            migrations_rolled_back=to_undo,
            tables=_changes(load),
        )


def _tables_free(conn: Conn, settings: Settings) -> None:
    """LockBusy, with nothing changed, if a table cannot be locked within the lock timeout."""
    was_autocommit = conn.autocommit
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("BEGIN")
        try:
            restore.lock_tables(
                conn,
                list(settings.schemas),
                settings.excluded_tables,
                "ACCESS EXCLUSIVE",
                settings.lock_timeout_seconds,
            )
        finally:
            with conn.cursor() as cur:
                cur.execute("ROLLBACK")
    finally:
        conn.autocommit = was_autocommit


# --- the other prod writers, routed through the guard ----------------------------------------


@dataclass
class SchemaSyncRun:
    """sync-schema as the pipeline runs it: what schema_sync did and the backup taken first."""

    result: schema_sync.SchemaSyncResult
    backup: BackupResult | None

    def as_dict(self) -> dict[str, Any]:
        return {**self.result.as_dict(), "backup": self.backup.as_dict() if self.backup else None}


def sync_schema(
    settings: Settings, *, dry_run: bool = False, progress: Progress = None
) -> SchemaSyncRun:
    """`dbtools sync-schema` under the sync lock, with a verified backup before any migration.

    The backup is taken only when a migration will actually run (schema_sync's before_write).
    """
    if dry_run:
        return SchemaSyncRun(schema_sync.sync_schema(settings, dry_run=True), None)
    with _guarded_prod_write(settings, what="sync-schema", progress=progress) as guard:
        result = schema_sync.sync_schema(settings, before_write=guard.before_write)
        return SchemaSyncRun(result, guard.backup)


def migrate_prod(
    settings: Settings,
    action: str,
    *,
    upto: str | None = None,
    ids: list[str] | None = None,
    count: int | None = None,
    progress: Progress = None,
) -> migrations.ApplyResult:
    """`dbtools migrate apply|rollback|mark --target prod`: under the sync lock, and only
    after a verified backup of prod, like every other prod write. The backup is taken only
    when a migration will actually run (mark only writes bookkeeping, but it is a prod write
    all the same, so it is backed up too).
    """
    with _guarded_prod_write(
        settings, what=f"migrate {action}", progress=progress, need_dev=False
    ) as guard:
        if action == "apply":
            return migrations.apply(settings, "prod", upto=upto, before_write=guard.before_write)
        if action == "rollback":
            return migrations.rollback(
                settings, "prod", ids=ids, count=count, before_write=guard.before_write
            )
        if action == "mark":
            guard.ensure_backup()
            return migrations.mark(settings, "prod", upto=upto)
        raise ConfigError(f"unknown migrate action {action!r}")


def restore_prod(settings: Settings, path: Path, *, progress: Progress = None) -> RollbackResult:
    """`dbtools restore PATH --target prod` with the sync lock and a backup of prod first.

    The snapshot is verified before anything else; its schema must match prod's (the loader
    refuses otherwise, changing nothing).
    """
    snapshot = archive.resolve_path(settings, str(path), "prod")
    manifest = restore.verified_manifest(snapshot)
    with _guarded_prod_write(settings, what="restore", progress=progress, need_dev=False) as guard:
        made = guard.ensure_backup()
        load = restore.load_snapshot(
            guard.conn, snapshot, settings=settings, preserved=(), progress=progress
        )
        return RollbackResult(
            restored=snapshot,
            restored_created_at=manifest.created_at,
            backup=made,
            migrations_rolled_back=[],
            tables=_changes(load),
        )


# --- plan (dry run) -------------------------------------------------------------------------


def plan(settings: Settings) -> Plan:
    """What full-sync would do; reads dev and prod in read-only sessions and writes nothing."""
    dev_conn, _ = _open_dev(settings, required=True)
    assert dev_conn is not None
    try:
        prod_conn = db.connect(db.target(settings, "prod"), settings=settings)
        try:
            checks.set_read_only(prod_conn)
            return _plan(settings, dev_conn, prod_conn)
        finally:
            prod_conn.rollback()
            prod_conn.close()
    finally:
        dev_conn.rollback()
        dev_conn.close()


def _pending(conn: Conn, settings: Settings) -> list[str]:
    try:
        summary = migrations.status_summary(conn, settings)
    except psycopg2.Error:
        conn.rollback()
        return []
    finally:
        if not conn.autocommit:
            conn.rollback()
    return [str(m) for m in summary.get("pending", [])]


def _plan(settings: Settings, dev: Conn, prod: Conn) -> Plan:
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
    return Plan(
        dev_database=dev_name,
        prod_database=prod_name,
        pending={"dev": _pending(dev, settings), "prod": _pending(prod, settings)},
        to_apply_on_prod=to_apply,
        prod_only_migrations=prod_only,
        schema_matches=not to_apply and not prod_only and dev_objects == prod_objects,
        tables=rows,
        backup_path=settings.snapshot_dir / "prod" / fmt.stamp_of(fmt.utc_now()),
        problems=problems,
    )
