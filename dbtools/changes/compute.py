"""Computing a change set: snapshot both sides (read-only), compare them, save the result.

`plan_sync` is what `dbtools plan` runs: a fresh snapshot of dev and one of prod, each in one
consistent REPEATABLE READ view and with ACCESS SHARE locks only (as pg_dump takes), so
neither database is written. `compare` works on any two snapshots, e.g. two archived ones.
"""

from __future__ import annotations

import difflib
import functools
from pathlib import Path

from dbtools.changes.duck import Comparison
from dbtools.changes.model import (
    NEW_TABLE,
    PRESERVED,
    UNCHANGED,
    ChangeSet,
    SnapshotRef,
    TableChanges,
)
from dbtools.changes.rows import compare_table
from dbtools.config import Settings
from dbtools.db import Progress
from dbtools.errors import ConfigError, SafetyError, VerificationFailed
from dbtools.snapshot import format as fmt
from dbtools.snapshot import store


def _verified(directory: Path, role: str) -> fmt.Manifest:
    if not directory.is_dir():
        raise ConfigError(f"no {role} snapshot at {directory}")
    manifest, problems = fmt.verify_dir(directory)
    if manifest is None or problems:
        first = problems[0] if problems else "unreadable"
        raise VerificationFailed(f"the {role} snapshot {directory} does not verify: {first}")
    if manifest.env != role:
        raise ConfigError(
            f"the {role} snapshot {directory} is a snapshot of {manifest.env}, not of {role}",
            hint="give dev's snapshot as --dev-snapshot and prod's as --prod-snapshot",
        )
    return manifest


def _distinct(dev: fmt.Manifest, prod: fmt.Manifest) -> None:
    """Two snapshots of one database compare equal and plan nothing: say what is wrong."""
    a, b = dev.source, prod.source
    if (
        a
        and b
        and a.get("database_oid") == b.get("database_oid")
        and (a.get("system_identifier") == b.get("system_identifier") is not None)
    ):
        raise SafetyError(
            f"dev and prod are the same database ({b.get('database')!r}): there is nothing to plan",
            hint="check DEV_DATABASE_URL and PROD_DATABASE_URL",
        )


def _ref(directory: Path, manifest: fmt.Manifest) -> SnapshotRef:
    return SnapshotRef(
        env=manifest.env,
        # An archive in object storage: its s3:// URL, which outlives this process's stand-in.
        path=store.shown(directory),
        manifest_sha256=fmt.manifest_sha256(directory) or "",
        created_at=manifest.created_at,
    )


def _unmatched(
    dev: fmt.Manifest, prod: fmt.Manifest, preserved: set[str], excluded: set[str]
) -> None:
    """A preserved or excluded name that matches no table is a typo the sync itself would
    refuse (a misspelt preserved table gets overwritten): the plan refuses it the same way."""
    tables = set(dev.tables) | set(prod.tables)
    known = tables | set(dev.excluded_tables) | set(prod.excluded_tables)
    for setting, keys, pool in (
        ("preserved_tables", preserved, tables),
        ("excluded_tables", excluded, known),
    ):
        for key in sorted(keys - pool):
            lower = {k.lower(): k for k in known}
            close = difflib.get_close_matches(key.lower(), list(lower), n=1)
            raise ConfigError(
                f"setup.cfg [dbtools] {setting}: {key!r} matches no table in dev or prod"
                + (f" (did you mean {lower[close[0]]!r}?)" if close else ""),
                hint="table names are case-sensitive; write them as `schema.table`",
            )


def compare(
    dev_dir: Path,
    prod_dir: Path,
    *,
    preserved: set[str],
    excluded: set[str] | None = None,
    verified: bool = False,
) -> ChangeSet:
    """What loading the dev snapshot into prod would change, prod being the prod snapshot.

    Both snapshots are verified first (checksums, row counts), unless the caller just
    verified them (`verified`); `preserved` are table keys whose prod rows a sync keeps,
    `excluded` those the snapshots leave out (both checked to name real tables).
    """
    try:
        import duckdb
    except ImportError:  # a broken install: duckdb is a dependency of dbtools
        raise ConfigError("dbtools plan needs DuckDB", hint="pip install duckdb") from None
    # absolute, so that a saved plan works from any directory
    dev_dir, prod_dir = Path(dev_dir).resolve(), Path(prod_dir).resolve()
    if verified:
        dev, prod = fmt.read_manifest(dev_dir), fmt.read_manifest(prod_dir)
    else:
        dev, prod = _verified(dev_dir, "dev"), _verified(prod_dir, "prod")
    _distinct(dev, prod)
    _unmatched(dev, prod, preserved, excluded or set())
    comparison = None
    try:
        comparison = Comparison(dev_dir, dev, prod_dir, prod)
        tables: list[TableChanges] = []
        for key in sorted(dev.tables):
            d, p = dev.tables[key], prod.tables.get(key)
            if key in preserved:
                t = TableChanges.between(key, PRESERVED, d, p)
                t.unchanged, t.note = t.prod_rows, "prod keeps its rows; dev's are not copied"
                tables.append(t)
            elif p is None:
                t = TableChanges.between(key, NEW_TABLE, d, None)
                t.inserted = d.rows
                tables.append(t)
            elif d.content_hash == p.content_hash and d.columns == p.columns:
                t = TableChanges.between(key, UNCHANGED, d, p)
                t.unchanged = d.rows
                tables.append(t)
            else:
                tables.append(
                    comparison.run(functools.partial(compare_table, key=key, dev=d, prod=p))
                )
    except duckdb.Error as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise VerificationFailed(f"comparing the snapshots failed: {first}") from None
    finally:
        if comparison is not None:
            comparison.close()
    dev_seqs, prod_seqs = dev.sequence_values(preserved), prod.sequence_values(preserved)
    moved = {
        name: {"prod": prod_seqs.get(name), "dev": v}
        for name, v in sorted(dev_seqs.items())
        if prod_seqs.get(name) != v
    }
    return ChangeSet(
        dev=_ref(dev_dir, dev),
        prod=_ref(prod_dir, prod),
        tables=tables,
        migrations_to_apply=[m for m in dev.migrations if m not in set(prod.migrations)],
        migrations_only_in_prod=[m for m in prod.migrations if m not in set(dev.migrations)],
        sequences=moved,
        tables_only_in_prod=sorted(set(prod.tables) - set(dev.tables)),
    )


def plan_sync(settings: Settings, *, progress: Progress = None, workers: int = 2) -> ChangeSet:
    """Snapshot dev and prod (reading only) and compare them."""
    from dbtools.snapshot.create import create_snapshot

    dev = create_snapshot(settings, "dev", progress=progress, workers=workers, reason="plan")
    prod = create_snapshot(settings, "prod", progress=progress, workers=workers, reason="plan")
    # both were verified as they were written (create_snapshot): not read a second time
    return compare(
        dev.path,
        prod.path,
        preserved=preserved_keys(settings),
        excluded=excluded_keys(settings),
        verified=True,
    )


def _keys(settings: Settings, names: tuple[str, ...]) -> set[str]:
    from dbtools import catalog

    schema = settings.schemas[0] if settings.schemas else "public"
    return set(catalog.normalize_table_names(names, schema))


def preserved_keys(settings: Settings) -> set[str]:
    """The configured preserved tables as "schema.table" keys."""
    return _keys(settings, settings.preserved_tables)


def excluded_keys(settings: Settings) -> set[str]:
    """The configured excluded tables as "schema.table" keys."""
    return _keys(settings, settings.excluded_tables)
