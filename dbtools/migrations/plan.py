"""The plan: which migrations apply or rollback would run, in which order, and the SQL of
each step; and the dry run that reports it without writing.

Planning needs only the files and a database's status (`plan_apply`, `plan_rollback` run
without a server); a dry run reads that status on a plain read-only connection.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from yoyo.migrations import Migration

from dbtools import db
from dbtools.config import Settings
from dbtools.errors import ConfigError, MigrationError
from dbtools.migrations.files import file_statements, rollback_statements
from dbtools.migrations.state import MigrationStatus, guard_history, status_of


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


def step(m: Migration, direction: str) -> MigrationStep:
    """What running m in `direction` executes, as shown in a plan."""
    # A rollback refuses an empty rollback file, naming it.
    statements = file_statements(Path(m.path)) if direction == "apply" else rollback_statements(m)
    return MigrationStep(m.id, bool(m.use_transactions), "\n\n".join(statements))


def select_upto(files: list[Migration], upto: str | None) -> list[Migration]:
    """The files up to and including `upto` (all of them without one)."""
    if upto is None:
        return files
    ids = [m.id for m in files]
    if upto not in ids:
        raise ConfigError(f"no migration {upto!r} in the migrations directory")
    return files[: ids.index(upto) + 1]


def plan_apply(
    st: MigrationStatus, files: list[Migration], upto: str | None, ids: Sequence[str] | None
) -> list[Migration]:
    pending = set(st.pending)
    plan = [m for m in select_upto(files, upto) if m.id in pending]
    if ids is not None:
        unknown = [i for i in ids if i not in {m.id for m in files}]
        if unknown:
            raise ConfigError(f"no such migration: {', '.join(unknown)}")
        plan = [m for m in plan if m.id in set(ids)]
    return plan


def plan_rollback(
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


def dry_run_result(
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
    guard_history(st, label)
    plan = choose(st, label)
    steps = [step(m, direction) for m in plan]
    return ApplyResult(env, st.database, direction, True, [m.id for m in plan], steps, st)
