"""Where a snapshot comes from (its source identity, its manifest checksum) and what a
restore into prod may touch (the backup taken first must cover it)."""

from __future__ import annotations

from pathlib import Path

from dbtools import (
    db,
    history,
)
from dbtools.config import Settings
from dbtools.db import Conn, execute
from dbtools.errors import (
    SafetyError,
)
from dbtools.snapshot import format as fmt
from dbtools.sync.results import BackupResult


def source_problem(path: Path, manifest: fmt.Manifest, prod: Conn, ident: db.Identity) -> str:
    """Why a snapshot is not known to be of this prod; "" when it is.

    Known: its manifest names this prod (system identifier, database oid, name), or, for a
    manifest without a source, prod's own history lists it as one of its backups.
    """
    src = manifest.source
    if src is not None:
        if fmt.same_source(src, ident):
            return ""
        return (
            f"it is a snapshot of {src.get('database')!r} (system {src.get('system_identifier')}, "
            f"oid {src.get('database_oid')}), not of this prod ({ident.database!r}, system "
            f"{ident.system_identifier}, oid {ident.database_oid})"
        )
    sha = fmt.manifest_sha256(path)
    if sha is not None and sha in history.backup_checksums(prod):
        return ""
    return (
        f"its source is unknown: the manifest does not say which database it was taken from "
        f"({manifest.env} database {manifest.database!r}), and prod's history does not list it "
        "as one of prod's backups"
    )


# --- what a restore into prod may touch ---------------------------------------------------------


def assert_covered(settings: Settings, manifest: fmt.Manifest, what: str) -> None:
    missing = [f"schema {s}" for s in manifest.schemas if s not in settings.schemas]
    if missing:
        raise SafetyError(
            f"refusing to {what}: the snapshot was taken with schemas "
            f"{', '.join(manifest.schemas)}, but prod's backup covers only "
            f"{', '.join(settings.schemas)} (setup.cfg schemas): the load would replace "
            f"{', '.join(missing)} with no backup of it; nothing was changed",
            hint="set `schemas` in setup.cfg [dbtools] to include them, then rerun",
        )


def _sequence_names(m: fmt.Manifest) -> set[str]:
    owned = {str(s["name"]) for t in m.tables.values() for s in t.sequences}
    return owned | {str(s["name"]) for s in m.sequences}


def assert_backup_covers(conn: Conn, made: BackupResult, manifest: fmt.Manifest, what: str) -> None:
    """After the backup: every table and sequence holding data that the load will replace is
    in that backup. Only what exists in prod now can lose data (a table a rollback's undone
    migration recreates is empty), so the snapshot's objects are compared as they exist now.
    """
    held = fmt.read_manifest(made.path)
    excluded = set(held.excluded_tables)
    live = {
        str(r[0])
        for r in execute(
            conn,
            "SELECT n.nspname || '.' || c.relname FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'p', 'S') AND n.nspname = ANY(%s)",
            (list(manifest.schemas),),
        )
    }
    tables = {k for k in manifest.tables if k not in excluded and k in live} - set(held.tables)
    seqs = {q for q in _sequence_names(manifest) if q in live} - _sequence_names(held)
    schemas = set(manifest.schemas) - set(held.schemas)
    missing = (
        [f"schema {s}" for s in sorted(schemas)]
        + [f"table {t}" for t in sorted(tables)]
        + [f"sequence {s}" for s in sorted(seqs)]
    )
    if missing:
        raise SafetyError(
            f"refusing to {what}: the backup just taken ({made.path}) does not hold "
            f"{', '.join(missing)}, which the load would replace; nothing was changed",
            hint="check `schemas` / `excluded_tables` in setup.cfg [dbtools]",
        )
