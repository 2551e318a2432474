"""apply: load exactly the dev snapshot a reviewed plan was computed from, if prod has not moved.

The plan names its dev snapshot (pinned by its manifest checksum) and, per table, the content
hash prod had when the plan was computed. Before anything is locked, the plan is checked
against that snapshot (every table the load replaces is in the plan, with the snapshot's
hash), against the setting of preserved tables, and against prod's history (a plan applied
once is not applied again, e.g. after its rollback). Under the guard's locks (application
writes wait from before the backup to the commit), the backup of prod is compared with the
plan: any table that changed, appeared or vanished, or a sequence that moved, makes the plan
stale, and the run is refused with nothing changed. Otherwise the load, the checks and the
history row (which records the plan's id and its row counts) commit in one transaction, as
sync-data does.
"""

from __future__ import annotations

from pathlib import Path

from dbtools import changes, checks, history
from dbtools.config import Settings
from dbtools.config.archive import is_remote
from dbtools.db import Conn, Progress
from dbtools.errors import SafetyError
from dbtools.snapshot import format as fmt
from dbtools.snapshot import store
from dbtools.sync.data import load_dev_into_prod
from dbtools.sync.refusals import sync_data_refusals
from dbtools.sync.results import SyncResult
from dbtools.sync.session import guarded_prod_write

_AGAIN = "compute and review a new plan: dbtools plan --save"


def _refuse(plan: changes.SavedPlan, why: str) -> SafetyError:
    return SafetyError(f"refusing to apply {plan.path}: {why}; nothing was changed", hint=_AGAIN)


def _pinned_dev_snapshot(plan: changes.SavedPlan, settings: Settings) -> tuple[Path, fmt.Manifest]:
    """The plan's dev snapshot (its real path: a symlink swapped later cannot redirect the
    load) and manifest, refused unless it is exactly the one the plan compared and the plan
    describes it."""
    if is_remote(plan.dev_ref):  # in the archive in object storage: its local stand-in
        found = store.from_url(settings.snapshot_dir, plan.dev_ref)
        if found is None:
            raise _refuse(plan, f"its dev snapshot {plan.dev_ref} is not in the archive")
        path = found
    else:
        path = plan.dev_snapshot.resolve()
    manifest, problems = fmt.verify_dir(path)
    if manifest is None or problems:
        first = problems[0] if problems else "unreadable"
        raise _refuse(plan, f"its dev snapshot {path} does not verify ({first})")
    if manifest.env != "dev" or fmt.manifest_sha256(path) != plan.dev_manifest_sha256:
        raise _refuse(plan, f"the dev snapshot {path} is not the one the plan was computed from")
    wrong = changes.mismatches(plan, manifest)
    if wrong:
        raise _refuse(plan, f"it does not describe its dev snapshot ({'; '.join(wrong[:3])})")
    return path, manifest


def _same_preserved(plan: changes.SavedPlan, settings: Settings) -> None:
    """The plan was computed with some tables keeping prod's rows; applied with another
    preserved_tables setting, it would load dev's rows into a table the reviewer saw kept."""
    tables = {t.table for t in plan.tables}
    now = changes.preserved_keys(settings) & tables
    if plan.preserved != now:
        moved = [f"now preserved: {k}" for k in sorted(now - plan.preserved)]
        moved += [f"no longer preserved: {k}" for k in sorted(plan.preserved - now)]
        raise _refuse(
            plan,
            f"setup.cfg preserved_tables changed since the plan was computed ({'; '.join(moved)})",
        )


def apply_plan(
    settings: Settings, plan: changes.SavedPlan | Path, *, progress: Progress = None
) -> SyncResult:
    """Apply the saved plan (read once: what was confirmed is what is applied) to prod, all
    or nothing; refuse a plan that is stale or does not hold together (exit 3)."""
    if not isinstance(plan, changes.SavedPlan):
        plan = changes.read(plan)
    saved = plan
    if saved.migrations_to_apply:
        raise _refuse(
            saved,
            "it was computed while dev had migrations prod had not "
            f"({', '.join(saved.migrations_to_apply)}): apply needs the same schema on both",
        )
    _same_preserved(saved, settings)
    dev_path, dev_manifest = _pinned_dev_snapshot(saved, settings)

    def precheck(prod: Conn, dev: Conn | None) -> None:
        sync_data_refusals(prod, dev, settings)
        done = [e for e in history.entries(prod) if e.plan_id == saved.plan_id]
        if done:
            raise _refuse(
                saved,
                f"prod's history shows it applied already (history id {done[0].id}); a plan "
                "is applied once, also after a rollback",
            )

    def still_current(backup: Path) -> None:
        reasons = changes.stale_reasons(saved, fmt.read_manifest(backup), dev_manifest)
        if reasons:
            more = f" (and {len(reasons) - 5} more)" if len(reasons) > 5 else ""
            raise _refuse(
                saved, f"prod changed since the plan was computed ({'; '.join(reasons[:5])}{more})"
            )
        # the snapshot about to be loaded is still the pinned one
        if fmt.manifest_sha256(dev_path) != saved.dev_manifest_sha256:
            raise _refuse(saved, f"the dev snapshot {dev_path} changed after it was checked")

    checks_to_run = checks.load_checks(settings)
    with guarded_prod_write(
        settings,
        what="apply",
        progress=progress,
        precheck=precheck,
        transactional=True,
        lock_at_start=False,
    ) as guard:
        result, load = load_dev_into_prod(
            guard,
            checks_to_run,
            dev_snapshot=dev_path,
            after_backup=still_current,
            rows=saved.counts(),
        )
        guard.commit(
            "apply",
            snapshot_loaded=dev_path,
            tables=load.tables,
            plan_id=saved.plan_id,
            lock=result.lock,
        )
        result.lock["seconds"] = guard.lock_seconds
        return result
