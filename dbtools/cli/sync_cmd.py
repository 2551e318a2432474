"""`dbtools check`, `sync-data`, `full-sync`, `rollback`: parse, confirm, call, render."""

from __future__ import annotations

from typing import Any

import click

from dbtools import checks as checks_mod
from dbtools import db, sync
from dbtools.cli.output import Options, common_options, table, target_option


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


def render_preview(plan: sync.Preview) -> str:
    out = [f"plan: dev {plan.dev_database} -> prod {plan.prod_database} (dry run: nothing written)"]
    for env in ("dev", "prod"):
        pending = plan.pending.get(env, [])
        out.append(f"  pending migrations on {env}: {', '.join(pending) if pending else 'none'}")
    out.append(
        "  sync-schema would apply on prod: "
        + (", ".join(plan.to_apply_on_prod) if plan.to_apply_on_prod else "nothing")
    )
    out.append(f"  schemas match now: {'yes' if plan.schema_matches else 'no'}")
    out.append(f"  backup that would be written: {plan.backup_path}/")
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
        click.echo(render_preview(plan))
        click.echo(f"error: {plan.refusal}", err=True)
        raise SystemExit(plan.exit_code)
    opts.emit(data, lambda: render_preview(plan), exit_code=plan.exit_code)


def _rollback_hint(backup: sync.BackupResult) -> str:
    return f"to undo: dbtools rollback --yes   (restores {backup.path})"


def render_sync(
    result: sync.SyncResult,
    headline: str = "sync-data: prod now holds dev's data (one transaction, committed)",
) -> str:
    out = [headline]
    out.append(render_changes(result.tables))
    if result.checks is not None:
        out.append(result.checks.summary())
    out.append(f"backup of prod before the sync: {result.backup.path} (verified)")
    out.append(f"dev snapshot loaded: {result.dev_snapshot}")
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
        out.append(f"backup of prod before this run: {result.backup.path} (verified)")
        # Only a committed run changed prod (schema and data commit together or not at all).
        if failed is None or failed.name == "check":
            out.append(_rollback_hint(result.backup))
    return "\n".join(out)


def render_rollback(result: sync.ProdRestoreResult) -> str:
    out = [f"rollback: prod restored from {result.restored} ({result.restored_created_at})"]
    out += [f"warning: {w}" for w in result.warnings]
    if result.migrations_rolled_back:
        out.append(f"migrations rolled back first: {', '.join(result.migrations_rolled_back)}")
    out.append(render_changes(result.tables))
    out.append(f"prod as it was just before the rollback: {result.backup.path} (verified)")
    out.append(f"to undo the rollback: dbtools restore {result.backup.path} --target prod --yes")
    return "\n".join(out)


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
    opts.confirm(f"replace the data of prod {_prod(opts)} with dev's?")
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
    if not dry_run:
        opts.confirm(f"migrate prod {_prod(opts)} and replace its data with dev's?")
    result = sync.full_sync(opts.settings, dry_run=dry_run, progress=opts.progress)
    data = result.as_dict()
    if result.dry_run and result.plan is not None:
        _emit_preview(opts, data, result.plan)
    if result.failed is not None and not opts.json:
        click.echo(render_full(result))
        click.echo(f"error: {result.failed.detail}", err=True)
        raise SystemExit(result.exit_code)
    opts.emit(data, lambda: render_full(result), exit_code=result.exit_code)


@click.command()
@common_options(destructive=True)
def rollback(opts: Options) -> None:
    """Put prod back as it was before the last committed sync (the Emergency Rollback).

    The backup comes from prod's own history of committed syncs and restores: a refused,
    failed or killed run never changes it. Migrations applied since that backup are undone
    and the backup loaded in one transaction. Refuses, changing nothing, if that backup is
    missing or does not verify (naming the next one that does), or on migration drift.

    \b
    Example:
      dbtools rollback --yes
    """
    opts.confirm(f"restore the backup taken before the last sync into prod {_prod(opts)}?")
    result = sync.rollback(opts.settings, progress=opts.progress)
    opts.emit(result.as_dict(), lambda: render_rollback(result))


COMMANDS: list[click.Command] = [check, sync_data, full_sync, rollback]
