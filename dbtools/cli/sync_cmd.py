"""`dbtools check`, `sync-data`, `full-sync`, `rollback`: parse, confirm, call, render."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from dbtools import checks as checks_mod
from dbtools import db, sync
from dbtools.cli.output import Options, common_options, table, target_option
from dbtools.config import Settings
from dbtools.errors import DbtoolsError
from dbtools.snapshot.store import shown
from dbtools.sync.undo_plan import RestoreTable, RollbackPlan, rollback_plan


def render_checks(report: checks_mod.CheckReport) -> str:
    rows = []
    for r in report.results:
        value = r.value
        if isinstance(value, dict):  # schema_matches_dev: fingerprint and migrations
            migrations = value.get("migrations") or []
            value = f"{str(value.get('fingerprint'))[:19]}, {len(migrations)} migrations"
        rows.append([r.status, r.name, _short(value), ", ".join(r.expected), r.message])
    out = [f"checks on {report.env} ({report.database})"]
    out.append(table(rows, ["", "check", "value", "expected", "problem"]))
    out.append(report.summary())
    return "\n".join(out)


def _short(value: Any, width: int = 40) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return _short(value)


def render_listing(listing: checks_mod.Listing, env: str) -> str:
    rows = [[_cell(r[c]) for c in listing.columns] for r in listing.rows]
    count = f"{len(rows)} row{'' if len(rows) == 1 else 's'}"
    return f"{listing.name} on {env}: {count}\n" + table(rows, listing.columns)


@click.command()
@target_option("prod")
@click.option(
    "--list",
    "lists",
    multiple=True,
    metavar="NAME",
    help="Also print the rows of the '-- list: NAME' query of checks/*.sql (repeatable).",
)
@common_options()
def check(opts: Options, target: str, lists: tuple[str, ...]) -> None:
    """Run the checks of checks/*.sql against a database; exit 1 if any fails.

    \b
    Examples:
      dbtools check --target prod
      dbtools check --target prod --list customers --json
    """
    listings = [checks_mod.run_list(opts.settings, name, target) for name in lists]
    report = checks_mod.run_checks_on(opts.settings, target)
    data: dict[str, Any] = report.as_dict()
    text = render_checks(report)
    if listings:
        data["lists"] = {x.name: x.rows for x in listings}
        text = "\n\n".join([*(render_listing(x, target) for x in listings), text])
    opts.emit(data, text, exit_code=0 if report.ok else 1)


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


def _rows_note(c: sync.TableChange) -> str:
    if c.preserved:
        return "kept prod's rows"
    if c.inserted is not None:  # row by row, from an applied plan
        return f"+{c.inserted} ~{c.updated} -{c.deleted}" if c.changed else "unchanged"
    return "" if c.changed else "same count"


def render_changes(changes: list[sync.TableChange]) -> str:
    rows = [
        [c.table, _count(c.rows_before), "->", _count(c.rows_after), _rows_note(c)] for c in changes
    ]
    return table(rows, ["table", "before", "", "after", ""])


def render_preview(plan: sync.Preview, *, dry_run: bool = True) -> str:
    written = "dry run: nothing written" if dry_run else "nothing written yet"
    out = [f"plan: dev {plan.dev_database} -> prod {plan.prod_database} ({written})"]
    for env in ("dev", "prod"):
        pending = plan.pending.get(env, [])
        out.append(f"  pending migrations on {env}: {', '.join(pending) if pending else 'none'}")
    out.append(
        "  sync-schema would apply on prod: "
        + (", ".join(plan.to_apply_on_prod) if plan.to_apply_on_prod else "nothing")
    )
    out.append(f"  schemas match now: {'yes' if plan.schema_matches else 'no'}")
    out.append(f"  backup that would be written: {shown(plan.backup_path)}/")
    rows = [
        [t["table"], _count(t["prod_rows"]), "->", _count(t["dev_rows"]), t["action"]]
        for t in plan.tables
    ]
    out.append(table(rows, ["table", "prod now", "", "dev", "action"]))
    out += [f"problem: {p}" for p in plan.problems]
    return "\n".join(out)


def _emit_preview(opts: Options, data: dict[str, Any], plan: sync.Preview) -> None:
    """A dry run exits as the real run would: with the refusal's code, the plan printed."""
    if plan.exit_code and not opts.json:
        opts.fail(render_preview(plan), str(plan.refusal), plan.exit_code)
    opts.emit(data, lambda: render_preview(plan), exit_code=plan.exit_code)


def _refuse(message: str, exit_code: int) -> DbtoolsError:
    """The refusal a preview found, raised as the real run would raise it (same code)."""
    err = DbtoolsError(message)
    err.exit_code = exit_code
    return err


def _confirm_preview(opts: Options, plan: sync.Preview, question: str) -> None:
    """The plan first, then the question; a plan the real run would refuse is refused here,
    with its exit code, before anything is asked."""
    opts.show(render_preview(plan, dry_run=False))
    if plan.exit_code:
        raise _refuse(plan.refusal, plan.exit_code)
    opts.confirm(question)


def _archive_name(settings: Settings, path: Path) -> str:
    """A snapshot as the archive names it (prod/<stamp>), or its path if it lies elsewhere."""
    try:
        return str(Path(path).resolve().relative_to(settings.snapshot_dir.resolve()))
    except ValueError:
        return str(path)


def _backup_first(settings: Settings, plan: sync.Preview) -> str:
    return f"after a verified backup into {_archive_name(settings, plan.backup_path.parent)}/"


def _rollback_hint(backup: sync.BackupResult) -> str:
    return f"to undo: dbtools rollback --yes   (restores {shown(backup.path)})"


def render_lock(lock: dict[str, Any]) -> str:
    """How long prod's writes waited on this run, and why (SyncResult.lock)."""
    seconds = lock.get("seconds")
    if lock.get("mode") == "short":
        if seconds is None:
            return "prod's writes waited only while the changes were written (short lock)"
        return (
            f"prod's writes waited {seconds:.2f} s "
            "(short lock: only the changes were written under it)"
        )
    if lock.get("mode") == "full":
        held = f" ({seconds:.1f} s)" if seconds is not None else ""
        reason = lock.get("reason")
        return f"loaded in full under the write lock{held}" + (f": {reason}" if reason else "")
    return ""


def render_sync(
    result: sync.SyncResult,
    headline: str = "sync-data: prod now holds dev's data (one transaction, committed)",
) -> str:
    out = [headline]
    out.append(render_changes(result.tables))
    if result.checks is not None:
        out.append(result.checks.summary())
    lock = render_lock(result.lock)
    if lock:
        out.append(lock)
    out.append(f"backup of prod before the sync: {shown(result.backup.path)} (verified)")
    out.append(f"dev snapshot loaded: {shown(result.dev_snapshot)}")
    out.append(_rollback_hint(result.backup))
    return "\n".join(out)


def render_full(result: sync.FullSyncResult) -> str:
    if result.dry_run and result.plan is not None:
        return render_preview(result.plan)
    marks = {"ok": "ok", "failed": "FAILED", "skipped": "skipped", "pending": ""}
    rows = [[marks[s.status], s.name, s.detail] for s in result.steps]
    out = [table(rows, ["", "step", "detail"])]
    if result.data is not None:
        out += ["", render_changes(result.data.tables)]
        lock = render_lock(result.data.lock)
        if lock:
            out.append(lock)
    if result.checks is not None:
        out += ["", render_checks(result.checks)]
    out.append("")
    failed = result.failed
    if failed is not None:
        out.append(f"full-sync stopped at {failed.name}: {failed.detail}")
        out.append(f"next: {failed.next_action}")
    else:
        out.append("full-sync: done, prod matches dev and every check passes")
    if result.backup is not None:
        out.append(f"backup of prod before this run: {shown(result.backup.path)} (verified)")
        # Only a committed run changed prod (schema and data commit together or not at all).
        if failed is None or failed.name == "check":
            out.append(_rollback_hint(result.backup))
    return "\n".join(out)


def render_rollback(result: sync.ProdRestoreResult) -> str:
    out = [f"rollback: prod restored from {shown(result.restored)} ({result.restored_created_at})"]
    out += [f"warning: {w}" for w in result.warnings]
    if result.migrations_rolled_back:
        out.append(f"migrations rolled back first: {', '.join(result.migrations_rolled_back)}")
    out.append(render_changes(result.tables))
    out.append(f"prod as it was just before the rollback: {shown(result.backup.path)} (verified)")
    out.append(
        f"to undo the rollback: dbtools restore {shown(result.backup.path)} --target prod --yes"
    )
    return "\n".join(out)


def _plan_row(t: RestoreTable, *, rows: bool, notes: bool) -> list[str]:
    counts = [_count(t.inserted), _count(t.updated), _count(t.deleted)] if rows else []
    note = [t.note] if notes else []
    return [t.table, _count(t.prod_rows), "->", _count(t.backup_rows), *counts, *note]


def render_rollback_plan(plan: RollbackPlan, *, dry_run: bool = False) -> str:
    """Which backup a rollback restores, what it undoes, and per table prod now vs the backup."""
    written = "dry run: nothing written" if dry_run else "nothing written yet"
    out = [f"rollback of prod {plan.prod_database} ({written})"]
    out.append(f"  backup to restore: {shown(plan.backup)}")
    out.append(f"    created {plan.backup_created_at} ({plan.backup_reason})")
    out.append(
        f"  it undoes: history #{plan.history_id}, {plan.operation} "
        f"committed at {plan.committed_at}"
    )
    undo = ", ".join(plan.migrations_to_undo) if plan.migrations_to_undo else "none"
    out.append(f"  migrations to undo first: {undo}")
    by_row = ["insert", "update", "delete"] if plan.rows_compared else []
    notes = any(t.note for t in plan.tables)
    rows = [_plan_row(t, rows=plan.rows_compared, notes=notes) for t in plan.tables]
    out.append(table(rows, ["table", "prod now", "", "backup", *by_row, *([""] if notes else [])]))
    if not dry_run:
        out.append("prod as it is now is backed up first (restoring it undoes the rollback)")
    out += [f"problem: {p}" for p in plan.problems]
    return "\n".join(out)


def _rollback_question(settings: Settings, plan: RollbackPlan) -> str:
    undo = (
        f"undo migrations {', '.join(plan.migrations_to_undo)} and "
        if plan.migrations_to_undo
        else ""
    )
    return (
        f"{undo}restore prod {plan.prod_database} from backup "
        f"{_archive_name(settings, plan.backup)} "
        f"(before {plan.operation}, history #{plan.history_id})?"
    )


def _prod(opts: Options) -> str:
    return db.target(opts.settings, "prod").masked


@click.command("sync-data")
@click.option("--dry-run", is_flag=True, help="Show what would change; write nothing.")
@common_options(destructive=True)
def sync_data(opts: Options, dry_run: bool) -> None:
    """Copy dev's data into prod: backup prod, snapshot dev, load in one transaction.

    Refuses unless dev and prod have the same schema. The checks run inside the load
    transaction; if one fails, everything is rolled back and prod is unchanged. Preserved
    tables (setup.cfg preserved_tables) keep prod's rows.

    \b
    Example:
      dbtools sync-data --dry-run
      dbtools sync-data --yes --json | jq -r .path
    """
    if dry_run:
        plan = sync.preview(opts.settings, "sync-data")
        _emit_preview(opts, {"dry_run": True, "plan": plan.as_dict()}, plan)
    if opts.will_ask(f"replace the data of prod {_prod(opts)} with dev's?"):
        plan = sync.preview(opts.settings, "sync-data")
        question = (
            f"replace the data of prod {plan.prod_database} with dev's "
            f"({_backup_first(opts.settings, plan)})?"
        )
        _confirm_preview(opts, plan, question)
    result = sync.sync_data(opts.settings, progress=opts.progress)
    assert isinstance(result, sync.SyncResult)
    opts.emit(result.as_dict(), lambda: render_sync(result))


@click.command("full-sync")
@click.option("--dry-run", is_flag=True, help="Print the plan; write nothing, not even a snapshot.")
@common_options(destructive=True)
def full_sync(opts: Options, dry_run: bool) -> None:
    """verify -> backup -> sync-schema -> sync-data -> check, stopping at the first failure.

    \b
    Example:
      dbtools full-sync --dry-run
      dbtools full-sync --yes
    """
    if not dry_run and opts.will_ask(
        f"migrate prod {_prod(opts)} and replace its data with dev's?"
    ):
        plan = sync.preview(opts.settings, "full-sync")
        migrate = (
            f"apply {', '.join(plan.to_apply_on_prod)} to prod {plan.prod_database} and "
            "replace its data"
            if plan.to_apply_on_prod
            else f"replace the data of prod {plan.prod_database}"
        )
        question = f"{migrate} with dev's ({_backup_first(opts.settings, plan)})?"
        _confirm_preview(opts, plan, question)
    result = sync.full_sync(opts.settings, dry_run=dry_run, progress=opts.progress)
    data = result.as_dict()
    if result.dry_run and result.plan is not None:
        _emit_preview(opts, data, result.plan)
    if result.failed is not None and not opts.json:
        opts.fail(render_full(result), result.failed.detail, result.exit_code)
    opts.emit(data, lambda: render_full(result), exit_code=result.exit_code)


@click.command()
@click.option(
    "--dry-run",
    is_flag=True,
    help="Show which backup would be restored and what it would change; write nothing to prod.",
)
@common_options(destructive=True)
def rollback(opts: Options, dry_run: bool) -> None:
    """Put prod back as it was before the last committed sync (the Emergency Rollback).

    The backup comes from prod's own history of committed syncs and restores: a refused,
    failed or killed run never changes it. Migrations applied since that backup are undone
    and the backup loaded in one transaction. Refuses, changing nothing, if that backup is
    missing or does not verify (naming the next one that does), or on migration drift.

    --dry-run names that backup and the sync it undoes, the migrations it would undo, and
    per table the rows prod has now against the backup's, row by row (from a read-only
    snapshot of prod, compared with the backup and deleted): prod is only read.

    \b
    Example:
      dbtools rollback --dry-run
      dbtools rollback --yes
    """
    settings = opts.settings
    if dry_run:
        plan = rollback_plan(settings, rows=True, progress=opts.progress)
        if plan.exit_code and not opts.json:
            opts.echo(render_rollback_plan(plan, dry_run=True))
            raise _refuse(plan.refusal, plan.exit_code)
        opts.emit(
            {"dry_run": True, "plan": plan.as_dict()},
            lambda: render_rollback_plan(plan, dry_run=True),
            exit_code=plan.exit_code,
        )
    expect: int | None = None
    if opts.will_ask(f"restore the backup taken before the last sync into prod {_prod(opts)}?"):
        plan = rollback_plan(settings, progress=opts.progress)
        opts.show(render_rollback_plan(plan))
        if plan.exit_code:
            raise _refuse(plan.refusal, plan.exit_code)
        opts.confirm(_rollback_question(settings, plan))
        expect = plan.history_id  # what was confirmed: refused if prod's history moved since
    result = sync.rollback(settings, progress=opts.progress, expect=expect)
    opts.emit(result.as_dict(), lambda: render_rollback(result))


COMMANDS: list[click.Command] = [check, sync_data, full_sync, rollback]
