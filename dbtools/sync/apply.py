"""apply: load exactly the dev snapshot a reviewed plan was computed from, if prod has not moved.

The plan names its dev snapshot (pinned by its manifest checksum) and, per table, the content
hash prod had when the plan was computed. Under the guard's locks (application writes wait
from before the backup to the commit), the backup of prod is compared with those hashes:
any table that changed, appeared or vanished makes the plan stale, and the run is refused
with nothing changed. Otherwise the load, the checks and the history row (which records the
plan's id and its row counts) commit in one transaction, as sync-data does.
"""

from __future__ import annotations

from pathlib import Path

from dbtools import changes, checks
from dbtools.config import Settings
from dbtools.db import Conn, Progress
from dbtools.errors import SafetyError
from dbtools.snapshot import format as fmt
from dbtools.sync.data import load_dev_into_prod
from dbtools.sync.refusals import sync_data_refusals
from dbtools.sync.results import SyncResult
from dbtools.sync.session import guarded_prod_write


def _pinned_dev_snapshot(plan: changes.SavedPlan) -> Path:
    """The plan's dev snapshot, refused unless it is exactly the one the plan compared."""
    path = plan.dev_snapshot
    manifest, problems = fmt.verify_dir(path)
    if manifest is None or problems:
        first = problems[0] if problems else "unreadable"
        raise SafetyError(
            f"refusing to apply {plan.path}: its dev snapshot {path} does not verify ({first}); "
            "nothing was changed",
            hint="compute a new plan: dbtools plan --save",
        )
    if manifest.env != "dev" or fmt.manifest_sha256(path) != plan.dev_manifest_sha256:
        raise SafetyError(
            f"refusing to apply {plan.path}: the dev snapshot {path} is not the one the plan "
            "was computed from; nothing was changed",
            hint="compute a new plan: dbtools plan --save",
        )
    return path


def _same_preserved(plan: changes.SavedPlan, settings: Settings) -> None:
    """The plan was computed with some tables keeping prod's rows; applied with another
    preserved_tables setting, it would load dev's rows into a table the reviewer saw kept."""
    planned = {str(t["table"]) for t in plan.tables if t.get("mode") == changes.PRESERVED}
    tables = {str(t["table"]) for t in plan.tables}
    now = changes.preserved_keys(settings) & tables
    if planned != now:
        moved = [f"now preserved: {k}" for k in sorted(now - planned)]
        moved += [f"no longer preserved: {k}" for k in sorted(planned - now)]
        raise SafetyError(
            f"refusing to apply {plan.path}: setup.cfg preserved_tables changed since the plan "
            f"was computed ({'; '.join(moved)}); nothing was changed",
            hint="compute and review a new plan: dbtools plan --save",
        )


def apply_plan(settings: Settings, path: Path, *, progress: Progress = None) -> SyncResult:
    """Apply the saved plan at `path` to prod, all or nothing; refuse a stale plan (exit 3)."""
    plan = changes.read(path)
    _same_preserved(plan, settings)
    dev_path = _pinned_dev_snapshot(plan)

    def precheck(prod: Conn, dev: Conn | None) -> None:
        sync_data_refusals(prod, dev, settings)

    def still_current(backup: Path) -> None:
        reasons = changes.stale_reasons(plan, fmt.read_manifest(backup))
        if reasons:
            shown = "; ".join(reasons[:5]) + (
                f" (and {len(reasons) - 5} more)" if len(reasons) > 5 else ""
            )
            raise SafetyError(
                f"refusing to apply {plan.path}: prod changed since the plan was computed "
                f"({shown}); nothing was changed",
                hint="compute and review a new plan: dbtools plan --save",
            )

    checks_to_run = checks.load_checks(settings)
    with guarded_prod_write(
        settings, what="apply", progress=progress, precheck=precheck, transactional=True
    ) as guard:
        result, load = load_dev_into_prod(
            guard,
            checks_to_run,
            dev_snapshot=dev_path,
            after_backup=still_current,
            rows=plan.counts(),
        )
        guard.commit("apply", snapshot_loaded=dev_path, tables=load.tables, plan_id=plan.plan_id)
        return result
