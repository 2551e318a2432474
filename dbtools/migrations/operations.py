"""The operations that write a database's migrations: apply, rollback, mark and unlock, each
on a session that passed the safety rules and holds the migration lock; and `apply_all`,
the plain helper for test and demo databases.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psycopg2

from dbtools import db, permit, safety
from dbtools.config import Settings
from dbtools.errors import LockBusy, MigrationError
from dbtools.migrations.data_loss import refuse_losses
from dbtools.migrations.files import load_migrations
from dbtools.migrations.lock import LOCK_NAME, lock_row, locked
from dbtools.migrations.plan import (
    ApplyResult,
    dry_run_result,
    plan_apply,
    plan_rollback,
    select_upto,
    step,
)
from dbtools.migrations.run import execute, record_checksum
from dbtools.migrations.session import Session, open_session
from dbtools.migrations.state import MigrationStatus, guard_history


def _check_writable(settings: Settings, s: Session) -> None:
    """The safety rules for writing a target; the other side, when configured, must be
    identified (an unreachable one is a refusal, never a skipped rule)."""
    safety.approve_write(settings, s.target, s.guard)


@contextlib.contextmanager
def _session(settings: Settings, env: str, expect: db.Identity | None = None) -> Iterator[Session]:
    t = db.target(settings, env)
    with open_session(t, settings.migrations_dir, settings, expect) as s:
        yield s


@contextlib.contextmanager
def _writing(settings: Settings, env: str, expect: db.Identity | None = None) -> Iterator[Session]:
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
        with locked(s, settings.lock_timeout_seconds):
            yield s


def _current(s: Session) -> tuple[MigrationStatus, str]:
    """The status of the session's database, refusing on drift; and how to name it."""
    label = f"{s.target.env} database {s.database}"
    st = s.status()
    guard_history(st, label)
    return st, label


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
        files = load_migrations(settings.migrations_dir)
        return dry_run_result(
            settings, env, "apply", lambda st, _label: plan_apply(st, files, upto, ids)
        )
    with _writing(settings, env, expect) as s:
        return _apply_locked(s, upto=upto, ids=ids, before_write=before_write or s.ensure_backup)


def _apply_locked(
    s: Session,
    *,
    upto: str | None,
    ids: Sequence[str] | None,
    before_write: Callable[[], object] | None,
) -> ApplyResult:
    st, label = _current(s)
    plan = plan_apply(st, load_migrations(s.migrations_dir), upto, ids)
    warnings = []
    if st.unknown:
        warnings.append(f"{label} has applied migrations without a file: {', '.join(st.unknown)}")
    steps = [step(m, "apply") for m in plan]
    if s.target.env == "prod":  # prod's data is what a migration must not destroy unasked
        refuse_losses(s.guard, plan, label)
    done = execute(s, plan, "apply", before_write)
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
    files = load_migrations(settings.migrations_dir)
    if dry_run:
        return dry_run_result(
            settings,
            env,
            "rollback",
            lambda st, label: plan_rollback(st, files, ids, count, label),
        )
    with _writing(settings, env, expect) as s:
        st, label = _current(s)
        plan = plan_rollback(st, load_migrations(s.migrations_dir), ids, count, label)
        steps = [step(m, "rollback") for m in plan]
        done = execute(s, plan, "rollback", before_write or s.ensure_backup)
        return ApplyResult(env, s.database, "rollback", False, done, steps, s.status())


def mark(
    settings: Settings, env: str, *, upto: str | None = None, expect: db.Identity | None = None
) -> ApplyResult:
    """Baseline an existing database: record migrations (all, or up to `upto`) as applied
    without running them, with the checksums of the files as they are now."""
    with _writing(settings, env, expect) as s:
        st, label = _current(s)
        chosen = select_upto(load_migrations(s.migrations_dir), upto)
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
                    record_checksum(s, m, "mark")
                for m in to_checksum:
                    record_checksum(s, m, "baseline")
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
        holder = lock_row(s)
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


# --- the plain helper for tests and the demo ------------------------------------------------


def apply_all(url: str, migrations_dir: Path, *, upto: str | None = None) -> list[str]:
    """Migrate the database at url to head (or up to and including `upto`); the ids applied.

    No name or distinctness checks: this is for preparing test and demo databases.
    """
    t = db.Target(env="target", url=url, expected_name="")
    with open_session(t, Path(migrations_dir)) as s, locked(s, 10.0):
        result = _apply_locked(s, upto=upto, ids=None, before_write=None)
    return result.done
