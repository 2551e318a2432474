"""`dbtools migrate ...`, `dbtools sync-schema` and `dbtools diff`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from dbtools import migrations, schema_sync, sync
from dbtools.cli.output import Options, common_options, table, target_option
from dbtools.errors import EXIT_CHECK_FAILED


def _envs(target: str) -> list[str]:
    return ["dev", "prod"] if target == "both" else [target]


def _render_status(st: migrations.MigrationStatus) -> str:
    out = [f"== {st.env}: {st.database}"]
    rows: list[list[str]] = [[m, "applied"] for m in st.applied]
    for m in st.drift:
        d = st.drift_details.get(m, {})
        rows.append(
            [m, f"DRIFT: file is {d.get('file', '?')[:19]}, applied {d.get('recorded', '?')[:19]}"]
        )
    rows += [[m, "unknown (applied, no file)"] for m in st.unknown]
    rows += [[m, "applied, no checksum (run migrate mark)"] for m in st.unchecked]
    rows += [[m, "pending"] for m in st.pending]
    out.append(table(rows, ["migration", "state"]) if rows else "(no migrations)")
    out.append(
        f"{len(st.applied)} applied, {len(st.pending)} pending"
        + (f", DRIFT in {', '.join(st.drift)}" if st.drift else ", no drift")
    )
    return "\n".join(out)


def _render_steps(result: migrations.ApplyResult, *, show_sql: bool) -> str:
    verb = {"apply": "applied", "rollback": "rolled back", "mark": "marked"}[result.operation]
    where = f"{result.env} database {result.database}"
    out = [f"warning: {w}" for w in result.warnings]
    if result.dry_run:
        out.append(f"dry run on {where}: would have {verb} {len(result.done)} migration(s)")
        for step in result.steps:
            tx = "" if step.transactional else "  (outside a transaction)"
            out.append(f"-- {step.id}{tx}\n{step.sql}\n")
        return "\n".join(out)
    if not result.done:
        out.append(f"{where}: nothing to do")
    else:
        out.append(f"{where}: {verb} {', '.join(result.done)}")
    if show_sql:
        out += [f"-- {s.id}\n{s.sql}\n" for s in result.steps]
    return "\n".join(out)


@click.group()
def migrate() -> None:
    """Schema migrations (yoyo) on dev or prod: status, apply, rollback, new, mark, unlock.

    \b
    Examples:
      dbtools migrate status
      dbtools migrate new add_order_notes
      dbtools migrate apply --target dev
      dbtools migrate rollback --target dev --count 1
    """


@migrate.command("status")
@target_option("both", both=True)
@common_options()
def status_cmd(opts: Options, target: str) -> None:
    """Applied, pending and drifted migrations per database (exit 1 on drift).

    \b
    Example:
      dbtools migrate status --target prod --json
    """
    results = [migrations.status(opts.settings, env) for env in _envs(target)]
    drift = any(r.drift for r in results)
    opts.emit(
        {"targets": {r.env: r.as_dict() for r in results}},
        lambda: "\n\n".join(_render_status(r) for r in results),
        exit_code=EXIT_CHECK_FAILED if drift else 0,
    )


@migrate.command("apply")
@target_option(both=True)
@click.option("--upto", metavar="ID", help="Apply up to and including this migration.")
@click.option("--dry-run", is_flag=True, help="Print the SQL that would run; change nothing.")
@common_options(destructive=True)
def apply_cmd(opts: Options, target: str, upto: str | None, dry_run: bool) -> None:
    """Apply pending migrations (dev first; --target both does dev, then prod).

    \b
    Examples:
      dbtools migrate apply --target dev
      dbtools migrate apply --target dev --upto 0002_add_orders --dry-run
    """
    if "prod" in _envs(target) and not dry_run:
        opts.confirm(f"apply pending migrations to prod ({opts.settings.expected_names['prod']})?")
    results = [
        sync.migrate_prod(opts.settings, "apply", upto=upto, progress=opts.progress)
        if env == "prod" and not dry_run
        else migrations.apply(opts.settings, env, upto=upto, dry_run=dry_run)
        for env in _envs(target)
    ]
    opts.emit(
        {"targets": {r.env: r.as_dict() for r in results}},
        lambda: "\n".join(_render_steps(r, show_sql=False) for r in results),
    )


@migrate.command("rollback")
@target_option()
@click.option("--id", "ids", multiple=True, metavar="ID", help="Roll back this migration.")
@click.option("--count", type=int, help="Roll back the last N migrations (default 1).")
@click.option("--all", "all_", is_flag=True, help="Roll back every applied migration.")
@click.option("--dry-run", is_flag=True, help="Print the SQL that would run; change nothing.")
@common_options(destructive=True)
def rollback_cmd(
    opts: Options, target: str, ids: tuple[str, ...], count: int | None, all_: bool, dry_run: bool
) -> None:
    """Roll back applied migrations, newest first (default: the last one).

    \b
    Examples:
      dbtools migrate rollback --target dev
      dbtools migrate rollback --target dev --id 0003_rename_order_total --dry-run
    """
    if sum(bool(x) for x in (ids, count is not None, all_)) > 1:
        raise click.UsageError("use only one of --id, --count and --all")
    if all_:
        count = 1_000_000
    if not dry_run:
        # Destructive on dev too: the rollback file may drop columns and their data.
        what = ", ".join(ids) if ids else ("every" if all_ else f"the last {count or 1}")
        name = opts.settings.expected_names[target]
        opts.confirm(f"roll back {what} migration(s) on {target} ({name})?")
    if target == "prod" and not dry_run:
        result = sync.migrate_prod(
            opts.settings, "rollback", ids=list(ids) or None, count=count, progress=opts.progress
        )
    else:
        result = migrations.rollback(
            opts.settings, target, ids=list(ids) or None, count=count, dry_run=dry_run
        )
    opts.emit(result.as_dict(), lambda: _render_steps(result, show_sql=False))


@migrate.command("mark")
@target_option(both=True)
@click.option("--upto", metavar="ID", help="Mark up to and including this migration.")
@common_options(destructive=True)
def mark_cmd(opts: Options, target: str, upto: str | None) -> None:
    """Baseline an existing database: record migrations as applied without running them.

    \b
    Example:
      dbtools migrate mark --target prod --upto 0002_add_orders --yes
    """
    if "prod" in _envs(target):
        opts.confirm(f"record migrations{' up to ' + upto if upto else ''} as applied on prod?")
    results = [
        sync.migrate_prod(opts.settings, "mark", upto=upto, progress=opts.progress)
        if env == "prod"
        else migrations.mark(opts.settings, env, upto=upto)
        for env in _envs(target)
    ]
    opts.emit(
        {"targets": {r.env: r.as_dict() for r in results}},
        lambda: "\n".join(_render_steps(r, show_sql=False) for r in results),
    )


@migrate.command("unlock")
@target_option()
@common_options(destructive=True)
def unlock_cmd(opts: Options, target: str) -> None:
    """Clear a stale migration lock left by a killed run (yoyo break-lock).

    \b
    Example:
      dbtools migrate unlock --target prod --yes
    """
    opts.confirm(f"clear the migration lock on {target}? (only if no migration is running)")
    result = migrations.unlock(opts.settings, target)
    pid = result.held_by_pid
    # dbtools marks its own lock rows with minus its server process id.
    holder = (
        f"a dbtools run (server process {-pid})"
        if pid is not None and pid < 0
        else (f"process {pid}")
    )
    text = (
        f"{target} database {result.database}: cleared the lock of {holder} "
        f"(taken {result.since} UTC)"
        if result.cleared
        else f"{target} database {result.database}: there was no lock"
    )
    opts.emit(result.as_dict(), text)


@migrate.command("lint")
@click.argument("files", nargs=-1, type=click.Path(path_type=Path, dir_okay=False))
@common_options()
def lint_cmd(opts: Options, files: tuple[Path, ...]) -> None:
    """Check migrations before they reach prod: squawk's rules plus dbtools' own (a drop and
    add on one table is a rename that loses data; a missing or empty rollback file).

    Without FILES: the migrations prod has not applied yet. Exit 1 on any finding that is not
    acknowledged in its own file with `-- dbtools: allow <rule>: <reason>`. In GitHub Actions
    each finding is also printed as an annotation on the diff.

    \b
    Examples:
      dbtools migrate lint
      dbtools migrate lint migrations/0004_add_reviews.sql --json
    """
    from dbtools.migrations.lint import lint

    paths = list(files)
    if not paths:
        pending = migrations.status(opts.settings, "prod").pending
        paths = [opts.settings.migrations_dir / f"{mid}.sql" for mid in pending]
    findings = lint(paths)
    open_ = [f for f in findings if not f.acknowledged]
    if os.environ.get("GITHUB_ACTIONS") == "true" and not opts.json:
        for f in open_:
            click.echo(f.annotation())
    rows = [
        [
            f"{f.file}:{f.line}:{f.column}",
            f.rule,
            f.message + (f" ({f.advice})" if f.advice else ""),
        ]
        for f in open_
    ]

    def text() -> str:
        out = [f"migrate lint: {len(paths)} file(s), {len(open_)} finding(s)"]
        if rows:
            out.append(table(rows, ["where", "rule", "finding"]))
        acked = len(findings) - len(open_)
        if acked:
            out.append(f"{acked} acknowledged in their files (--json lists them)")
        return "\n".join(out)

    opts.emit(
        {"files": [str(p) for p in paths], "findings": [f.as_dict() for f in findings]},
        text,
        exit_code=EXIT_CHECK_FAILED if open_ else 0,
    )


@migrate.command("test")
@click.option(
    "--data",
    is_flag=True,
    help="Fill every new table with generated rows; no migration or rollback may lose a row "
    "or a value it does not mean to drop.",
)
@click.option(
    "--markdown",
    is_flag=True,
    help="Print Markdown: the results and the schema objects each migration adds, changes "
    "and drops (for a pull request's step summary).",
)
@common_options()
def test_cmd(opts: Options, data: bool, markdown: bool) -> None:
    """Apply, roll back and re-apply every migration on a scratch database (exit 1 if any
    rollback does not undo its migration, or a step fails).

    The scratch database is created on dev's server and dropped at the end; dev's own data
    and schema are not touched. Each rollback must return the schema to exactly what it was
    before its migration: an empty, missing or incomplete rollback file is named. With
    --data, the tables each migration creates get generated rows, and every step must keep
    every row and value except those it drops or writes on purpose (a rollback that
    recreates a renamed column empty is named).

    \b
    Examples:
      dbtools migrate test
      dbtools migrate test --data --markdown >> "$GITHUB_STEP_SUMMARY"
    """
    from dbtools.migrations.roundtrip import round_trip

    result = round_trip(opts.settings, data=data)
    rows = [
        [s.migration, s.apply or "-", s.rollback or "-", s.reapply or "-"] for s in result.steps
    ]

    def text() -> str:
        out = [f"migrate test on a scratch database of {result.server}"]
        out.append(table(rows, ["migration", "apply", "rollback", "apply again"]))
        out += [f"problem: {p}" for p in result.problems]
        out += [f"note: {n}" for n in result.notes]
        out.append("migrate test: ok" if result.ok else "migrate test: FAILED")
        return "\n".join(out)

    opts.emit(
        result.as_dict(),
        (lambda: _test_markdown(result)) if markdown else text,
        exit_code=0 if result.ok else EXIT_CHECK_FAILED,
    )


def _test_markdown(result: Any) -> str:
    """migrate test as a step summary: the verdict, each step, and what each migration does
    to the schema (newest first: a pull request's own migrations are the newest)."""
    mark = "passed" if result.ok else "FAILED"
    lines = [f"### migrate test{' --data' if result.data else ''}: {mark}", ""]
    lines += ["| migration | apply | rollback | apply again |", "|---|---|---|---|"]
    for s in result.steps:
        cells = [s.migration, s.apply or "-", s.rollback or "-", s.reapply or "-"]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    lines += [""] + [f"- problem: {p}" for p in result.problems]
    lines += [f"- note: {n}" for n in result.notes]
    lines += ["", "#### Schema changes, newest migration first", ""]
    for s in reversed(result.steps):
        kinds = (("added", s.added), ("changed", s.changed), ("dropped", s.dropped))
        said = [f"{k} {len(v)}" for k, v in kinds if v]
        lines.append(f"<details><summary>{s.migration}: {', '.join(said) or 'no change'}</summary>")
        lines.append("")
        for kind, names in kinds:
            lines += [f"- {kind}: `{n}`" for n in names]
        lines += ["", "</details>"]
    return "\n".join(lines)


@migrate.command("new")
@click.argument("name")
@common_options()
def new_cmd(opts: Options, name: str) -> None:
    """Create NNNN_name.sql and NNNN_name.rollback.sql after the newest migration.

    \b
    Example:
      dbtools migrate new add_order_notes
    """
    result = migrations.new(Path(opts.settings.migrations_dir), name)
    opts.emit(result.as_dict(), f"created {result.path}\ncreated {result.rollback_path}")


def _render_sync(result: schema_sync.SchemaSyncResult) -> str:
    where = f"prod database {result.prod_database}"
    if result.dry_run:
        out = [
            f"dry run: would apply to {where} {len(result.applied)} migration(s) "
            f"already applied on dev ({result.dev_database})"
        ]
        for step in result.steps:
            tx = "" if step.transactional else "  (outside a transaction)"
            out.append(f"-- {step.id}{tx}\n{step.sql}\n")
        return "\n".join(out)
    if result.applied:
        out = [f"applied to {where}: {', '.join(result.applied)}"]
    else:
        out = [f"{where} is up to date with dev ({len(result.already_applied)} applied)"]
    if result.schema_match:
        out.append("prod schema now matches dev")
    for line in result.differences:
        out.append(f"  {line}")
    return "\n".join(out)


@click.command("sync-schema")
@click.option("--dry-run", is_flag=True, help="Print the SQL that would run; change nothing.")
@common_options(destructive=True)
def sync_schema_cmd(opts: Options, dry_run: bool) -> None:
    """Apply to prod the migrations already applied on dev (and only those).

    Prod is backed up (a verified snapshot) before the first migration touches it.

    \b
    Examples:
      dbtools sync-schema --dry-run
      dbtools sync-schema --yes
    """
    if not dry_run:
        planned = schema_sync.sync_schema(opts.settings, dry_run=True)
        if planned.applied:
            opts.confirm(f"apply {', '.join(planned.applied)} to prod ({planned.prod_database})?")
    # Through the sync pipeline: the sync lock on prod, and a verified backup before the first
    # migration touches it.
    run = sync.sync_schema(opts.settings, dry_run=dry_run, progress=opts.progress)
    result = run.result
    code = EXIT_CHECK_FAILED if result.schema_match is False else 0
    if code:
        opts.warn("prod schema differs from dev after the same migrations: see `dbtools diff`")
    backup = run.backup.as_dict() if run.backup else None

    def text() -> str:
        lines = [f"backed up prod first: {backup['path']}"] if backup else []
        return "\n".join([*lines, _render_sync(result)])

    opts.emit(run.as_dict(), text, exit_code=code)


def _render_diff(result: schema_sync.SchemaDiffResult) -> str:
    out = [f"dev {result.dev_database} vs prod {result.prod_database}"]
    if result.schema.empty:
        out.append(f"schema: identical ({result.dev_fingerprint[:19]})")
    else:
        out.append("schema:")
        out += [f"  {line}" for line in result.schema.lines()]
    if result.migrations_only_dev or result.migrations_only_prod:
        out.append("migrations:")
        out += [f"  only in dev: {m}" for m in result.migrations_only_dev]
        out += [f"  only in prod: {m}" for m in result.migrations_only_prod]
    rows = [[k, v["dev"], v["prod"], ""] for k, v in result.row_counts.items()]
    rows += [
        [k, v["dev"], v["prod"], f"expected ({schema_sync.PRESERVED_NOTE})"]
        for k, v in result.preserved_row_counts.items()
    ]
    if not result.row_counts:
        out.append(
            "row counts: identical"
            + (" apart from preserved tables" if result.preserved_row_counts else "")
        )
    if rows:
        out.append(table(rows, ["table", "dev rows", "prod rows", "note"]))
    if result.differs:
        out.append("dev and prod differ")
    elif result.preserved_row_counts:
        out.append("dev and prod match (preserved tables keep prod's rows, as expected)")
    else:
        out.append("dev and prod match")
    return "\n".join(out)


@click.command("diff")
@common_options()
def diff_cmd(opts: Options) -> None:
    """Schema, migration and row-count differences, dev vs prod (exit 1 when they differ).

    Preserved tables (setup.cfg preserved_tables) keep prod's own rows through every sync:
    their row counts are shown, marked as expected, and do not count as a difference. Right
    after a good sync, diff exits 0.

    \b
    Example:
      dbtools diff --json | jq .schema_lines
    """
    result = schema_sync.diff(opts.settings)
    opts.emit(
        result.as_dict(),
        lambda: _render_diff(result),
        exit_code=EXIT_CHECK_FAILED if result.differs else 0,
    )


COMMANDS: list[click.Command] = [migrate, sync_schema_cmd, diff_cmd]
