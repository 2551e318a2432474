"""full-sync: verify -> backup -> sync-schema -> sync-data -> check, stopping at the first
failure with the step's own next action."""

from __future__ import annotations

import contextlib
from pathlib import Path

from yoyo.migrations import Migration

from dbtools import (
    checks,
    migrate_txn,
)
from dbtools import side as side_mod
from dbtools.config import Settings, redact
from dbtools.db import Conn, Progress, say
from dbtools.errors import (
    ConfigError,
    DbtoolsError,
    LockBusy,
    SafetyError,
    VerificationFailed,
)
from dbtools.side import Side
from dbtools.sync.data import load_dev_into_prod
from dbtools.sync.dryrun import preview
from dbtools.sync.refusals import full_sync_refusals, verify_step
from dbtools.sync.results import FullSyncResult, Step
from dbtools.sync.session import guarded_prod_write

STEPS = ("verify", "backup", "sync-schema", "sync-data", "check")


def _next_action(step: str, exc: DbtoolsError, backup_path: Path | None) -> str:
    if isinstance(exc, LockBusy):
        return (
            "prod was not changed. Another sync is running, or the application holds a table "
            "past lock_timeout_seconds: wait for it to finish, then rerun `dbtools full-sync`"
        )
    if step == "verify":
        return (
            "nothing was changed. Fix the problem (URLs in .env / .env.production.local or "
            "the environment, names in setup.cfg [dbtools]), then `dbtools verify`"
        )
    if step == "backup" and isinstance(exc, (SafetyError, ConfigError)):
        return "prod was not changed and no backup was taken"  # a refusal: its hint follows
    if step == "backup":
        return (
            "prod was not changed. Check the snapshot directory (space, permissions) and "
            "`dbtools backup`, then rerun `dbtools full-sync`"
        )
    if step == "sync-schema":
        return (
            "prod was not changed: its migrations and data commit together or not at all. "
            "See `dbtools migrate status --target both`, fix the migration in dev, then rerun"
        )
    if step == "sync-data":
        if isinstance(exc, SafetyError):
            return (
                "prod was not changed (its migrations were rolled back with the load). Run "
                "`dbtools diff`, fix with migrations, rerun"
            )
        return (
            "prod was not changed (migrations and load were rolled back together). Fix the "
            "data in dev (see the failed checks), then `dbtools full-sync`"
        )
    undo = (
        f"to return prod to its state before this run: `dbtools rollback --yes` (restores "
        f"{backup_path})"
        if backup_path
        else ""
    )
    return f"inspect with `dbtools check --target prod`. {undo}".strip()


def full_sync(
    settings: Settings, *, dry_run: bool = False, progress: Progress = None
) -> FullSyncResult:
    """verify → backup → sync-schema → sync-data → check, stopping at the first failure.

    Refusals (drift, prod-only or untested migrations, a non-transactional migration, a
    schema mismatch, a busy lock, a foreign key or default tying the synced tables to what no
    snapshot loads) come before the backup. The migrations run on the guard's
    connection inside its transaction (migrate_txn), followed by the load: schema and data
    commit together, with the history row, or not at all.
    """
    if dry_run:
        return FullSyncResult(steps=[], dry_run=True, plan=preview(settings, "full-sync"))
    result = FullSyncResult(steps=[Step(name) for name in STEPS])
    steps = {s.name: s for s in result.steps}
    current = "verify"
    to_apply: list[Migration] = []

    def ok(name: str, detail: str) -> None:
        steps[name].status, steps[name].detail = "ok", detail
        say(progress, f"full-sync: {name}: {detail}")

    def precheck(prod: Conn, dev: Conn | None) -> None:
        nonlocal current
        current = "sync-schema"
        to_apply[:] = full_sync_refusals(prod, dev, settings)
        current = "backup"

    with contextlib.ExitStack() as run:
        try:
            checks_to_run = checks.load_checks(settings)
            # Each side is opened once, here, and every step uses it (verify, the guard, the
            # checks); a side that cannot be opened is left to verify, which reports it.
            sides: dict[str, Side] | None = None
            with contextlib.suppress(DbtoolsError):
                sides = run.enter_context(side_mod.both(settings))
            verify_step(settings, sides)
            ok("verify", "dev and prod reachable, named as expected, distinct")
            current = "backup"
            with guarded_prod_write(
                settings,
                what="full-sync",
                progress=progress,
                precheck=precheck,
                transactional=True,
                sides=sides,
            ) as guard:
                made = result.backup = guard.ensure_backup()
                ok("backup", f"{made.path} ({made.rows} rows, verified)")
                current = "sync-schema"
                where = f"prod database {guard.prod_id.database}"
                applied = migrate_txn.run(guard.conn, to_apply, "apply", where)
                result.schema = {"applied": applied, "in_transaction": True}
                ok(
                    "sync-schema",
                    f"applied {', '.join(applied)} (commits with the data)"
                    if applied
                    else "up to date",
                )
                current = "sync-data"
                result.data, load = load_dev_into_prod(guard, checks_to_run)
                guard.commit(
                    "full-sync",
                    snapshot_loaded=result.data.dev_snapshot,
                    migrations_done=applied,
                    tables=load.tables,
                )
                changed = sum(1 for t in result.data.tables if t.changed)
                ok("sync-data", f"{len(result.data.tables)} tables loaded, {changed} changed")
            current = "check"
            result.checks = checks.run_checks_on(settings, "prod", sides=sides)
            if not result.checks.ok:
                raise VerificationFailed(result.checks.summary())
            ok("check", result.checks.summary())
        except DbtoolsError as exc:
            step = steps[current]
            step.status, step.detail = "failed", redact(exc.message)
            step.exit_code = exc.exit_code
            backup_path = result.backup.path if result.backup else None
            step.next_action = _next_action(current, exc, backup_path)
            if exc.hint:  # the error's own hint knows its cause best (a lock to clear, a flag)
                step.next_action += f"; {exc.hint}"
            for s in result.steps:
                if s.status == "pending":
                    s.status = "skipped"
    return result
