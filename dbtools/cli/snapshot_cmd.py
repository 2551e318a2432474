"""`dbtools snapshot create|list|show|verify|prune|query`, `dbtools backup`, `dbtools restore`."""

from __future__ import annotations

from pathlib import Path

import click
import psycopg2

from dbtools.cli.output import Options, common_options, table, target_option
from dbtools.errors import EXIT_CHECK_FAILED, DbtoolsError
from dbtools.snapshot import archive, create, query, restore
from dbtools.snapshot.restore_test import restore_test
from dbtools.snapshot.store import shown


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def _render_created(result: create.SnapshotResult) -> str:
    lines = [
        f"snapshot of {result.env} ({result.manifest.database}): {result.tables} tables, "
        f"{result.rows} rows, {_size(result.bytes)}, verified",
        f"path: {shown(result.path)}",
    ]
    lines += [f"note: {n}" for n in result.notes]
    return "\n".join(lines)


def _create(opts: Options, env: str, workers: int) -> None:
    result = create.create_snapshot(
        opts.settings, env, progress=opts.progress, workers=max(1, workers)
    )
    opts.emit(result.as_dict(), lambda: _render_created(result))


@click.group()
def snapshot() -> None:
    """Parquet snapshots of dev or prod: create, list, show, verify, prune, query.

    \b
    Example:
      dbtools snapshot create --target dev
      dbtools snapshot list
    """


@snapshot.command("create")
@target_option()
@click.option("--workers", default=2, show_default=True, help="Tables read in parallel.")
@common_options()
def create_cmd(opts: Options, target: str, workers: int) -> None:
    """Write a verified snapshot of one database into the archive.

    \b
    Example:
      dbtools snapshot create --target dev --json | jq -r .path
    """
    _create(opts, target, workers)


@click.command()
@click.option("--workers", default=2, show_default=True, help="Tables read in parallel.")
@common_options()
def backup(opts: Options, workers: int) -> None:
    """Snapshot prod into snapshots/prod/ (the backup archive).

    Refuses (exit 3) unless prod is named as expected and is not dev: a "prod" backup of
    another database would later be restored into prod.

    \b
    Example:
      dbtools backup --json
    """
    from dbtools import sync

    made = sync.backup(opts.settings, progress=opts.progress, workers=max(1, workers))
    opts.emit(
        made.as_dict(),
        f"backup of prod ({made.database}): {made.tables} tables, {made.rows} rows, "
        f"{_size(made.bytes)}, verified\npath: {shown(made.path)}",
    )


@snapshot.command("list")
@click.option("--env", type=click.Choice(["dev", "prod"]), default=None, help="Only this side.")
@click.option("--no-verify", is_flag=True, help="Skip reading every file (faster).")
@common_options()
def list_cmd(opts: Options, env: str | None, no_verify: bool) -> None:
    """The archive, newest first: reference, env, reason, time, size, verified, rollback target.

    The reference (prod/STAMP) names the snapshot in every other command. The rollback target
    is the backup prod's history names for its last committed write (read from prod only when
    prod is configured and answers).

    \b
    Example:
      dbtools snapshot list --env prod --json
    """
    infos = archive.list_snapshots(opts.settings, env, verify=not no_verify)
    warnings = archive.exposure_warnings(opts.settings)
    target, unknown = _rollback_target(opts, env)
    if unknown:
        warnings.append(unknown)
    for w in warnings:
        opts.warn(w)
    marked = {i.path for i in infos if target is not None and _same(i.path, target)}

    def render() -> str:
        if not infos:
            return f"no snapshots under {shown(opts.settings.snapshot_dir)}"
        rows = [_list_row(i, i.path in marked) for i in infos]
        # A bad snapshot gets one line saying why; the others are listed as usual.
        bad = [f"{i.ref}: {i.problems[0]}" for i in infos if i.problems]
        return "\n".join([table(rows, _LIST_HEADER), *bad])

    data = {
        "snapshots": [{**i.as_dict(), "rollback_target": i.path in marked} for i in infos],
        "rollback_target": shown(target) if target else None,
        "warnings": warnings,
    }
    opts.emit(data, render)


_LIST_HEADER = [
    "snapshot",
    "env",
    "reason",
    "created",
    "tables",
    "rows",
    "size",
    "migration",
    "verified",
    "rollback",
]
_VERIFIED = {True: "yes", False: "NO", None: "-"}


def _list_row(i: archive.SnapshotInfo, target: bool) -> list[object]:
    return [
        i.ref,
        i.env,
        i.reason or "-",
        i.created_at.strftime("%Y-%m-%d %H:%M:%SZ") if i.created_at else "?",
        i.tables,
        i.rows,
        _size(i.bytes),
        i.migration_head or "-",
        _VERIFIED[i.verified] if i.complete else "INCOMPLETE",
        "target" if target else "",
    ]


def _rollback_target(opts: Options, env: str | None) -> tuple[Path | None, str | None]:
    """Rollback's target from prod's history, or (None, why it is not known).

    Listing never depends on prod: not configured (or only dev listed) means no marker and
    nothing said; prod that cannot be read means no marker and a warning."""
    settings = opts.settings
    if env == "dev" or not settings.urls.get("prod"):
        return None, None
    from dbtools import sync

    try:
        return sync.rollback_target(settings), None
    except (DbtoolsError, psycopg2.Error) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return None, f"rollback's target is not marked: {first}"


def _same(a: Path, b: Path) -> bool:
    """One directory, however each path spells it (prod's history records the path the
    backup had when it was taken); a symlink in the archive is not what it points to."""
    return a.parent.resolve() / a.name == b.parent.resolve() / b.name


@snapshot.command("show")
@click.argument("ref", metavar="SNAPSHOT")
@click.argument("tables", nargs=-1, metavar="[TABLE]...")
@common_options()
def show_cmd(opts: Options, ref: str, tables: tuple[str, ...]) -> None:
    """Per table: rows, columns, bytes; with TABLEs, each column's type and how it is stored.

    SNAPSHOT is a directory, prod/STAMP or dev/STAMP, prod:latest or dev:latest (the newest
    that verifies), or a STAMP only one side holds. TABLE is schema.table or a bare name.

    \b
    Examples:
      dbtools snapshot show prod/20250514T102112Z
      dbtools snapshot show prod:latest User
    """
    result = archive.show_snapshot(archive.resolve_path(opts.settings, ref))
    picked = [result.manifest.table(name).key for name in tables]  # unknown: one clear line
    data = result.as_dict()
    if picked:
        data["tables"] = [t for t in data["tables"] if t["table"] in picked]

    def render() -> str:
        m = result.manifest
        head = [
            f"snapshot {shown(result.path)}",
            f"  {m.env} database {m.database} (PostgreSQL {m.server_version}), {m.created_at}",
            f"  migration head {m.migration_head or '-'}, {len(m.migrations)} applied",
            f"  excluded: {', '.join(m.excluded_tables) or '-'}; "
            f"bookkeeping left out: {', '.join(m.bookkeeping_tables) or '-'}",
            "  encrypted with key id " + m.encryption["key_id"]
            if m.encryption
            else "  not encrypted",
        ]
        rows = [[t["table"], t["rows"], t["columns"], _size(t["bytes"])] for t in data["tables"]]
        parts = ["\n".join(head), table(rows, ["table", "rows", "columns", "bytes"])]
        for t in data["tables"] if picked else []:
            cols = [[n, pg, t["stored_as"][n]] for n, pg in t["column_types"].items()]
            heads = ["column", "PostgreSQL type", "stored as"]
            parts.append(f"{t['table']}\n" + table(cols, heads))
        if not picked:
            parts.append(f"column types: dbtools snapshot show {ref} TABLE")
        return "\n".join(parts)

    opts.emit(data, render)


@snapshot.command("verify")
@click.argument("ref", metavar="SNAPSHOT")
@click.option(
    "--restore",
    is_flag=True,
    help="Also restore it into a scratch database (created and dropped) and compare every "
    "table's content hash and every sequence with the manifest.",
)
@click.option(
    "--scratch-url",
    metavar="URL",
    help="The server to make the scratch database on (default: the snapshot's own database's).",
)
@common_options()
def verify_cmd(opts: Options, ref: str, restore: bool, scratch_url: str | None) -> None:
    """Checksums, every Parquet file readable, manifest consistent (exit 1 if not).

    SNAPSHOT is a directory, prod/STAMP or dev/STAMP, prod:latest or dev:latest (the newest
    that verifies), or a STAMP only one side holds. With --restore, the proof that the backup
    restores: it is loaded into a scratch database on the server of the database it was taken
    from (or --scratch-url's) and compared with its manifest; the time it took is reported.

    \b
    Examples:
      dbtools snapshot verify snapshots/prod/20250514T102112Z
      dbtools snapshot verify prod:latest --restore
    """
    result = archive.verify_snapshot(archive.resolve_path(opts.settings, ref))
    warnings = archive.exposure_warnings(opts.settings, result.path)
    for w in warnings:
        opts.warn(w)
    if not result.ok and not opts.json:
        opts.fail(
            "\n".join(f"  - {p}" for p in result.problems),
            f"snapshot {shown(result.path)} does not verify",
            EXIT_CHECK_FAILED,
        )
    if not restore or not result.ok:
        opts.emit(
            {**result.as_dict(), "warnings": warnings},
            f"snapshot {shown(result.path)} verified: {result.tables} tables, {result.rows} rows",
            exit_code=0 if result.ok else EXIT_CHECK_FAILED,
        )
        return
    tested = restore_test(
        opts.settings, result.path, scratch_url=scratch_url, progress=opts.progress
    )
    if not tested.ok and not opts.json:
        opts.fail(
            "\n".join(f"  - {p}" for p in tested.problems),
            f"snapshot {shown(result.path)} did not restore exactly",
            EXIT_CHECK_FAILED,
        )
    opts.emit(
        {**result.as_dict(), "warnings": warnings, "restore": tested.as_dict()},
        f"snapshot {shown(result.path)} verified and restored exactly into a scratch database on "
        f"{tested.server} in {tested.seconds:.1f} s: {tested.tables} tables, {tested.rows} rows, "
        f"{tested.sequences} sequences",
        exit_code=0 if tested.ok else EXIT_CHECK_FAILED,
    )


@snapshot.command("prune")
@click.option("--dry-run", is_flag=True, help="Only show what would be deleted.")
@common_options(destructive=True)
def prune_cmd(opts: Options, dry_run: bool) -> None:
    """Delete snapshots past retention (keeping the newest and the newest verified backup).

    Retention comes from setup.cfg [dbtools]: retention_days and keep_min. Whatever their
    age, the newest keep_min, each database's newest verified snapshot and rollback's target
    stay. Leftovers of crashed runs are removed too. --dry-run also says why each is kept.

    \b
    Example:
      dbtools snapshot prune --dry-run
    """
    from dbtools import sync

    settings = opts.settings
    if not dry_run:
        plan = sync.prune(settings, dry_run=True)
        if plan.deleted:
            opts.confirm(f"delete {len(plan.deleted)} snapshot directories?")
    result = sync.prune(settings, dry_run=dry_run)

    def render() -> str:
        verb = "would delete" if dry_run else "deleted"
        lines = [f"{verb} {d['path']} ({d['reason']})" for d in result.deleted]
        if dry_run:
            lines += [f"keep {k['path']} ({k['reason']})" for k in result.kept]
        lines.append(f"{verb} {len(result.deleted)}, kept {len(result.kept)}")
        return "\n".join(lines)

    opts.emit(result.as_dict(), render)


@snapshot.command("query")
@click.argument("ref", metavar="SNAPSHOT")
@click.argument("sql")
@click.option("--limit", default=1000, show_default=True, help="At most this many rows.")
@common_options()
def query_cmd(opts: Options, ref: str, sql: str, limit: int) -> None:
    """SQL over a snapshot's Parquet files with DuckDB; tables are named as in PostgreSQL.

    SNAPSHOT is a directory, prod/STAMP or dev/STAMP, prod:latest or dev:latest (the newest
    that verifies), or a STAMP only one side holds.

    \b
    Example:
      dbtools snapshot query prod:latest 'SELECT status, count(*) FROM orders GROUP BY 1'
    """
    result = query.query_snapshot(archive.resolve_path(opts.settings, ref), sql, limit=limit)

    def render() -> str:
        text = table([list(r) for r in result.rows], result.columns) if result.columns else ""
        return text + (f"\n(first {limit} rows)" if result.truncated else "")

    opts.emit(result.as_dict(), render)


@click.command("restore")
@click.argument("ref", metavar="SNAPSHOT")
@target_option()
@click.option(
    "--allow-other-source",
    is_flag=True,
    help="Into prod: load a snapshot that is not a backup of this prod (e.g. of dev).",
)
@common_options(destructive=True)
def restore_cmd(opts: Options, ref: str, target: str, allow_other_source: bool) -> None:
    """Load a snapshot into dev or prod, all or nothing.

    SNAPSHOT is a directory, prod/STAMP or dev/STAMP, prod:latest or dev:latest (the newest
    that verifies), or a STAMP only one side holds (`dbtools snapshot list` shows each
    one's reference). Into prod, the snapshot must be a backup of this prod; another
    database's (or one of unknown source) is refused unless --allow-other-source.

    \b
    Example:
      dbtools restore prod/20250514T102112Z --target prod --yes
    """
    settings = opts.settings
    resolved = archive.resolve_path(settings, ref)
    question = f"replace every table of {target} by {resolved}"
    if opts.will_ask(question):
        # Refuse a damaged snapshot before asking; with --yes the load verifies it first anyway.
        manifest = restore.verified_manifest(resolved)
        preserved = ", ".join(settings.preserved_tables) if target == "prod" else ""
        opts.show(
            f"restore into {target} ({_masked(settings.urls.get(target))}), nothing written yet:\n"
            f"  snapshot: {manifest.env}/{Path(resolved).name} of {manifest.database}, taken "
            f"{manifest.created_at} ({manifest.reason})\n"
            f"  {len(manifest.tables)} tables, {manifest.rows} rows, migrations up to "
            f"{manifest.migration_head or 'none'}\n"
            f"  every table's rows are replaced by the snapshot's"
            + (f" (preserved tables too: {preserved})" if preserved else "")
            + ("; prod is backed up first, verified" if target == "prod" else "")
        )
    opts.confirm(
        f"replace every table of the {target} database "
        f"({_masked(settings.urls.get(target))}) by {resolved}?"
    )
    if target == "prod":
        # Prod is written only after a fresh verified backup, under the sync lock: the sync
        # pipeline's restore provides both.
        from dbtools import sync

        guarded = sync.restore_prod(
            settings,
            Path(resolved),
            progress=opts.progress,
            allow_other_source=allow_other_source,
        )
        for w in guarded.warnings:
            opts.warn(w)
        opts.emit(
            guarded.as_dict(),
            f"restored {shown(guarded.restored)} into prod, verified\n"
            f"backup of prod before the restore: {shown(guarded.backup.path)}",
        )
    result = restore.restore(settings, Path(resolved), target, progress=opts.progress)
    for w in result.warnings:
        opts.warn(w)
    opts.emit(
        result.as_dict(),
        f"restored {shown(result.path)} into {target} ({result.database}): "
        f"{len(result.load.tables)} tables, {result.load.rows} rows, verified",
    )


def _masked(url: str | None) -> str:
    from dbtools.config import mask_url

    return mask_url(url) if url else "no URL"


COMMANDS: list[click.Command] = [snapshot, backup, restore_cmd]
