"""Promotion as plan -> apply -> history: `dbtools plan` shows what a sync would change in
prod row by row, `dbtools apply` applies exactly a reviewed plan, `dbtools history` lists
what prod's own history recorded."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click

from dbtools import changes, db, history, sync
from dbtools.cli.output import Options, common_options, table
from dbtools.cli.sync_cmd import render_sync
from dbtools.errors import ConfigError
from dbtools.snapshot import archive
from dbtools.snapshot.store import shown

_KINDS = ("inserted", "updated", "deleted")


_CONTROL = {c: f"\\x{c:02x}" for c in range(32)} | {10: "\\n", 13: "\\r", 9: "\\t"}


def _name(text: str) -> str:
    """A name from dev as one line: a newline in a table name cannot fake a line of output."""
    return text.translate(_CONTROL)


def _columns(t: changes.TableChanges) -> str:
    return ", ".join(f"{_name(c)} ({n})" for c, n in sorted(t.changed_columns.items()))


def _sample(key: dict[str, Any]) -> str:
    if len(key) == 1:
        return repr(next(iter(key.values())))
    return "(" + ", ".join(f"{k}={v!r}" for k, v in key.items()) + ")"


def _header(cs: changes.ChangeSet, saved: Path | None) -> list[str]:
    lines = [f"dev snapshot:  {shown(cs.dev.path)}", f"prod snapshot: {shown(cs.prod.path)}"]
    if saved:
        lines.append(f"saved plan:    {saved}")
    if cs.migrations_to_apply:
        lines.append("migrations sync-schema would apply: " + ", ".join(cs.migrations_to_apply))
        lines.append("  (apply needs the same schema on both: run sync-schema, then plan again)")
    if cs.migrations_only_in_prod:
        lines.append("migrations applied in prod only: " + ", ".join(cs.migrations_only_in_prod))
    return lines


def _details(cs: changes.ChangeSet) -> list[str]:
    """Per table: the sample keys of each kind of change, and the notes."""
    out: list[str] = []
    for t in cs.tables:
        for kind in _KINDS:
            if t.samples.get(kind):
                more = getattr(t, kind) - len(t.samples[kind])
                keys = ", ".join(_sample(k) for k in t.samples[kind])
                more_text = f" (+{more} more)" if more else ""
                out.append(f"  {_name(t.table)} {kind}: {_name(keys)}{more_text}")
        if t.note:
            out.append(f"  {_name(t.table)}: {_name(t.note)}")
    for name, move in cs.sequences.items():
        out.append(f"  sequence {_name(name)}: {move['prod']} -> {move['dev']}")
    for key in cs.tables_only_in_prod:
        out.append(f"  {_name(key)}: only in prod, not touched by the load")
    return out


def render_text(cs: changes.ChangeSet, saved: Path | None = None) -> str:
    rows = [
        [_name(t.table), t.mode, t.inserted, t.updated, t.deleted, t.unchanged, _columns(t)]
        for t in cs.tables
    ]
    header = ["table", "compared", "insert", "update", "delete", "same", "changed columns"]
    totals = cs.totals
    lines = [*_header(cs, saved), "", table(rows, header)]
    details = _details(cs)
    if details:
        lines += ["", "details:", *details]
    lines += [
        "",
        f"in all: {totals['inserted']} inserted, {totals['updated']} updated, "
        f"{totals['deleted']} deleted",
    ]
    return "\n".join(lines)


def _md(text: object) -> str:
    """A table cell: names come from dev (any text), so nothing in one may end the cell, the
    table or open HTML in the step summary."""
    out = str(text)
    for char, escaped in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ("|", "\\|")):
        out = out.replace(char, escaped)
    return out.replace("`", "\\`").replace("\r", " ").replace("\n", " ")


def _fence(lines: list[str]) -> str:
    """A code fence longer than any run of backticks in the block, so none can close it."""
    longest = max((len(run) for line in lines for run in re.findall("`+", line)), default=0)
    return "`" * max(3, longest + 1)


def render_markdown(cs: changes.ChangeSet, saved: Path | None = None) -> str:
    """For a GitHub step summary: the same facts as a Markdown table."""
    totals = cs.totals
    lines = [
        "## dbtools plan",
        "",
        f"{totals['inserted']} inserted, {totals['updated']} updated, {totals['deleted']} deleted.",
        "",
        *[f"- {_md(line)}" for line in _header(cs, saved)],
        "",
        "| table | compared | insert | update | delete | same | changed columns |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for t in cs.tables:
        cells = [_name(t.table), t.mode, t.inserted, t.updated, t.deleted, t.unchanged, _columns(t)]
        lines.append("| " + " | ".join(_md(c) for c in cells) + " |")
    details = _details(cs)
    if details:
        block = [d.strip() for d in details]
        fence = _fence(block)
        lines += ["", "<details><summary>details</summary>", "", fence]
        lines += [*block, fence, "", "</details>"]
    return "\n".join(lines)


@click.command()
@click.option(
    "--dev-snapshot",
    metavar="SNAPSHOT",
    help="Compare this dev snapshot (dev/STAMP, dev:latest or a path) instead of taking a "
    "fresh one (with --prod-snapshot).",
)
@click.option(
    "--prod-snapshot",
    metavar="SNAPSHOT",
    help="Compare with this prod snapshot (prod/STAMP, prod:latest or a path) instead of "
    "prod's current state.",
)
@click.option("--markdown", is_flag=True, help="Print Markdown (for a GitHub step summary).")
@click.option("--save", is_flag=True, help="Write the plan into the archive (snapshots/plans/).")
@common_options()
def plan(
    opts: Options, dev_snapshot: str | None, prod_snapshot: str | None, markdown: bool, save: bool
) -> None:
    """What sync-data would change in prod, row by row, writing nothing to either database.

    Rows are matched on the primary key: inserted, updated (and which columns), deleted,
    unchanged, with a few sample keys each. A table without a primary key is replaced whole
    and says so; preserved tables keep prod's rows. Without --dev-snapshot/--prod-snapshot
    both databases are snapshotted (read-only) and compared.

    \b
    Examples:
      dbtools plan
      dbtools plan --markdown >> "$GITHUB_STEP_SUMMARY"
      dbtools plan --json | jq .totals
    """
    if (dev_snapshot is None) != (prod_snapshot is None):
        raise ConfigError("give both --dev-snapshot and --prod-snapshot, or neither")
    settings = opts.settings
    if dev_snapshot is not None and prod_snapshot is not None:
        cs = changes.compare(
            archive.resolve_path(settings, dev_snapshot),
            archive.resolve_path(settings, prod_snapshot),
            preserved=changes.preserved_keys(settings),
            excluded=changes.excluded_keys(settings),
        )
    else:
        cs = changes.plan_sync(settings, progress=opts.progress)
    saved = changes.save(settings, cs) if save else None
    data = {"plan_id": changes.plan_id(cs), **cs.jsonable()}
    if saved:
        data["saved"] = str(saved)
    opts.emit(data, lambda: render_markdown(cs, saved) if markdown else render_text(cs, saved))


def render_saved(saved: changes.SavedPlan) -> str:
    """A saved plan as `apply` shows it before its question: what it will change, per table."""
    rows = [
        [_name(t.table), t.mode, t.inserted, t.updated, t.deleted]
        for t in saved.tables
        if t.inserted or t.updated or t.deleted
    ]
    totals = [sum(getattr(t, k) for t in saved.tables) for k in _KINDS]
    lines = [
        f"plan {saved.plan_id[:12]}: {saved.path}",
        f"dev snapshot it loads: {shown(saved.dev_snapshot)}",
    ]
    if rows:
        lines.append(table(rows, ["table", "compared", "insert", "update", "delete"]))
    unchanged = len(saved.tables) - len(rows)
    lines.append(
        f"in all: {totals[0]} inserted, {totals[1]} updated, {totals[2]} deleted"
        + (f" ({unchanged} tables unchanged)" if unchanged else "")
    )
    return "\n".join(lines)


@click.command()
@click.argument("plan_file", metavar="PLAN", type=click.Path(path_type=Path, dir_okay=False))
@common_options(destructive=True)
def apply(opts: Options, plan_file: Path) -> None:
    """Apply a saved plan to prod: exactly the reviewed rows, or nothing.

    Loads the dev snapshot the plan was computed from (never dev as it is now), in one
    transaction after a verified backup, with the checks before the commit. Refused (exit 3,
    nothing changed) when prod changed since the plan, or the plan or its snapshot was altered.

    \b
    Example:
      dbtools plan --save --json | jq -r .saved
      dbtools apply snapshots/plans/20261204T170000Z-1a2b3c4d5e6f.json --yes
    """
    saved = changes.read(plan_file)
    target = db.target(opts.settings, "prod").masked
    if opts.will_ask(f"apply plan {saved.plan_id[:12]} to prod {target}?"):
        opts.show(render_saved(saved))
        opts.confirm(
            f"apply plan {saved.plan_id[:12]} (dev snapshot {saved.dev_snapshot.name}) "
            f"to prod {target}, after a verified backup?"
        )
    result = sync.apply_plan(opts.settings, saved, progress=opts.progress)
    headline = f"apply: plan {saved.plan_id[:12]} applied to prod (one transaction, committed)"
    opts.emit({"plan_id": saved.plan_id, **result.as_dict()}, lambda: render_sync(result, headline))


def _history_row(e: history.Entry) -> list[Any]:
    counts = [
        sum(v for t in e.tables.values() if isinstance(t, dict) and isinstance(v := t.get(k), int))
        for k in ("inserted", "updated", "deleted")
    ]
    shown = f"+{counts[0]} ~{counts[1]} -{counts[2]}" if e.plan_id else ""
    return [e.id, e.committed_at[:19], e.operation, (e.plan_id or "")[:12], shown, e.backup_stamp]


@click.command("history")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@common_options()
def history_cmd(opts: Options, limit: int) -> None:
    """What dbtools committed to prod, newest first: prod's own record (_dbtools.history).

    Each sync, apply, restore and rollback wrote one row in the transaction that committed
    it; `rollback` returns to the backup named by the newest row it may undo.

    \b
    Example:
      dbtools history --json | jq '.entries[0]'
    """
    entries = history.recent(opts.settings, limit)
    header = ["id", "committed (UTC)", "operation", "plan", "rows", "backup"]
    opts.emit(
        {"entries": [e.as_dict() for e in entries]},
        lambda: (
            table([_history_row(e) for e in entries], header)
            if entries
            else "prod's history is empty: dbtools never committed a write here"
        ),
    )


COMMANDS = [plan, apply, history_cmd]
