"""Computing a change set: snapshot both sides (read-only), compare them, save the result.

`plan_sync` is what `dbtools plan` runs: a fresh snapshot of dev and one of prod, each in one
consistent REPEATABLE READ view and with ACCESS SHARE locks only (as pg_dump takes), so
neither database is written. `compare` works on any two snapshots, e.g. two archived ones.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from dbtools.changes.model import (
    NEW_TABLE,
    PRESERVED,
    UNCHANGED,
    ChangeSet,
    SnapshotRef,
    TableChanges,
)
from dbtools.changes.rows import TableSources, compare_table
from dbtools.config import Settings
from dbtools.db import Progress
from dbtools.errors import ConfigError, VerificationFailed
from dbtools.snapshot import format as fmt

PLANS_DIR = "plans"  # under the snapshot archive: saved change sets, private like backups


def _verified(directory: Path, role: str) -> fmt.Manifest:
    manifest, problems = fmt.verify_dir(directory)
    if manifest is None or problems:
        first = problems[0] if problems else "unreadable"
        raise VerificationFailed(f"the {role} snapshot {directory} does not verify: {first}")
    return manifest


def _ref(directory: Path, manifest: fmt.Manifest) -> SnapshotRef:
    return SnapshotRef(
        env=manifest.env,
        path=str(directory),
        manifest_sha256=fmt.manifest_sha256(directory) or "",
        created_at=manifest.created_at,
    )


def _sequences(manifest: fmt.Manifest, skip: set[str]) -> dict[str, tuple[object, object]]:
    out: dict[str, tuple[object, object]] = {}
    for key, entry in manifest.tables.items():
        if key in skip:
            continue
        for seq in entry.sequences:
            out[str(seq["name"])] = (seq.get("last_value"), seq.get("is_called"))
    for seq in manifest.sequences:
        out[str(seq["name"])] = (seq.get("last_value"), seq.get("is_called"))
    return out


def compare(dev_dir: Path, prod_dir: Path, *, preserved: set[str]) -> ChangeSet:
    """What loading the dev snapshot into prod would change, prod being the prod snapshot.

    Both snapshots are verified first (checksums, row counts); `preserved` are table keys
    whose prod rows a sync keeps.
    """
    try:
        import duckdb
    except ImportError:  # a broken install: duckdb is a dependency of dbtools
        raise ConfigError("dbtools plan needs DuckDB", hint="pip install duckdb") from None
    dev_dir, prod_dir = Path(dev_dir), Path(prod_dir)
    dev, prod = _verified(dev_dir, "dev"), _verified(prod_dir, "prod")
    con = duckdb.connect(":memory:")
    try:
        sources = TableSources(con, dev_dir, dev, prod_dir, prod)
        tables: list[TableChanges] = []
        for key in sorted(dev.tables):
            d, p = dev.tables[key], prod.tables.get(key)
            if key in preserved:
                tables.append(
                    TableChanges(
                        table=key,
                        mode=PRESERVED,
                        key=list(d.primary_key),
                        dev_rows=d.rows,
                        prod_rows=p.rows if p else 0,
                        unchanged=p.rows if p else 0,
                        note="prod keeps its rows; dev's are not copied",
                    )
                )
            elif p is None:
                tables.append(
                    TableChanges(
                        table=key,
                        mode=NEW_TABLE,
                        key=list(d.primary_key),
                        dev_rows=d.rows,
                        inserted=d.rows,
                        dev_content_hash=d.content_hash,
                    )
                )
            elif d.content_hash == p.content_hash and d.columns == p.columns:
                tables.append(
                    TableChanges(
                        table=key,
                        mode=UNCHANGED,
                        key=list(d.primary_key),
                        dev_rows=d.rows,
                        prod_rows=p.rows,
                        unchanged=d.rows,
                        dev_content_hash=d.content_hash,
                        prod_content_hash=p.content_hash,
                    )
                )
            else:
                tables.append(compare_table(sources, key, d, p))
    except duckdb.Error as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise VerificationFailed(f"comparing the snapshots failed: {first}") from None
    finally:
        con.close()
    dev_seqs, prod_seqs = _sequences(dev, preserved), _sequences(prod, preserved)
    moved = {
        name: {"prod": list(prod_seqs[name]) if name in prod_seqs else None, "dev": list(v)}
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
    return compare(dev.path, prod.path, preserved=preserved_keys(settings))


def preserved_keys(settings: Settings) -> set[str]:
    """The configured preserved tables as "schema.table" keys."""
    from dbtools import catalog

    schema = settings.schemas[0] if settings.schemas else "public"
    return set(catalog.normalize_table_names(settings.preserved_tables, schema))


def plan_id(changes: ChangeSet) -> str:
    """A stable id of the change set's content: what a reviewer approved."""
    body = json.dumps(changes.jsonable(), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def save(settings: Settings, changes: ChangeSet) -> Path:
    """Write the change set into the archive (0600 in a 0700 directory); return its path."""
    directory = settings.snapshot_dir / PLANS_DIR
    fmt.make_private_dir(directory)
    ident = plan_id(changes)
    path = directory / f"{fmt.stamp_of(fmt.utc_now())}-{ident[:12]}.json"
    data = {"plan_id": ident, **changes.jsonable()}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(data, out, indent=2, sort_keys=True, default=str)
        out.write("\n")
    return path
