"""What the archive holds, read without changing anything: every snapshot directory listed
(a SnapshotInfo each, newest first), one snapshot's manifest shown, one snapshot's files
verified.

A bad snapshot is listed with its problems and verifies as not ok, without raising: one
damaged directory never hides the others (backups and retention choose among these).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from dbtools.config import ENVS, Settings
from dbtools.errors import SnapshotError
from dbtools.snapshot import format as fmt
from dbtools.snapshot import store, types
from dbtools.snapshot.encryption import KeyUnavailable


@dataclass
class SnapshotInfo:
    path: Path
    env: str
    created_at: datetime | None
    tables: int
    rows: int
    bytes: int
    migration_head: str | None
    verified: bool | None  # None: not checked (list without verification)
    complete: bool = True
    problems: list[str] = field(default_factory=list)
    source: dict[str, Any] | None = None  # None: unknown (older manifest or unreadable)
    reason: str | None = None
    database: str | None = None

    @property
    def ref(self) -> str:
        """How every command can name it without ambiguity: `<side>/<stamp>`, the side being
        the archive folder it lies in (archive.resolve_path reads it back)."""
        return f"{self.path.parent.name}/{self.path.name}"

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["path"] = store.shown(self.path)
        out["ref"] = self.ref
        out["created_at"] = self.created_at.isoformat() if self.created_at else None
        return out


@dataclass
class VerifyResult:
    path: Path
    ok: bool
    problems: list[str]
    tables: int = 0
    rows: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": store.shown(self.path),
            "ok": self.ok,
            "problems": self.problems,
            "tables": self.tables,
            "rows": self.rows,
        }


@dataclass
class ShowResult:
    path: Path
    manifest: fmt.Manifest

    def as_dict(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "path": store.shown(self.path),
            "env": m.env,
            "database": m.database,
            "server_version": m.server_version,
            "created_at": m.created_at,
            "tool_version": m.tool_version,
            "reason": m.reason,
            "source": m.source,
            "format_version": m.format_version,
            "migrations": m.migrations,
            "schema_fingerprint": m.schema_fingerprint,
            "excluded_tables": m.excluded_tables,
            "bookkeeping_tables": m.bookkeeping_tables,
            # scheme and key id of an encrypted snapshot; None: its files are plaintext
            "encryption": m.encryption,
            "rows": m.rows,
            "bytes": m.bytes,
            "tables": [
                {
                    "table": t.key,
                    "rows": t.rows,
                    "columns": len(t.columns),
                    "bytes": t.bytes,
                    "files": len(t.files),
                    "column_types": {c["name"]: c["pg_type"] for c in t.columns},
                    # How each column reaches an analyst (list, categorical, text, ...).
                    "stored_as": {c["name"]: types.stored_as(c) for c in t.columns},
                }
                for t in m.tables.values()
            ],
        }


def _info(path: Path, env: str, verify: bool) -> SnapshotInfo:
    if verify:
        try:
            manifest, problems = fmt.verify_dir(path)
        except KeyUnavailable as exc:  # listed, as not verified here: one line says why
            manifest, problems = fmt.read_manifest(path), [exc.message]
    else:
        try:
            manifest, problems = fmt.read_manifest(path), []
        except SnapshotError as exc:
            manifest, problems = None, [exc.message]
    if manifest is None:
        return SnapshotInfo(
            path=path,
            env=env,
            created_at=fmt.parse_stamp(path.name),
            tables=0,
            rows=0,
            bytes=_bytes(path, None),
            migration_head=None,
            verified=False,
            complete=path.is_symlink() or (path / fmt.MANIFEST).is_file(),
            problems=problems,
        )
    return SnapshotInfo(
        path=path,
        env=manifest.env,
        created_at=manifest.created,
        tables=len(manifest.tables),
        rows=manifest.rows,
        bytes=_bytes(path, manifest),
        migration_head=manifest.migration_head,
        verified=(not problems) if verify else None,
        problems=problems,
        source=manifest.source,
        reason=manifest.reason,
        database=manifest.database,
    )


def _bytes(path: Path, manifest: fmt.Manifest | None) -> int:
    """What a snapshot holds: its files on disk, or, mirrored from object storage (where
    only the manifest is local until read), what its manifest records."""
    if store.shown(path) != str(path):
        return manifest.bytes if manifest else 0
    return fmt.dir_bytes(path)


def _sort_key(info: SnapshotInfo) -> tuple[datetime, str]:
    return (info.created_at or datetime.min.replace(tzinfo=timezone.utc), info.path.name)


def list_snapshots(
    settings: Settings, env: str | None = None, *, verify: bool = False
) -> list[SnapshotInfo]:
    """Snapshots of the archive, newest first; verify=True checks every file of each.

    A bad snapshot is listed with its problems (verified False); it never stops the listing."""
    envs = [env] if env else list(ENVS)
    remote = store.remote_for(settings.snapshot_dir)
    if remote is not None:
        for e in envs:
            remote.refresh(e)  # the bucket's published manifests, mirrored locally
    infos = [
        _info(path, e, verify)
        for e in envs
        for path in fmt.snapshot_dirs(settings.snapshot_dir / e)
    ]
    return sorted(infos, key=_sort_key, reverse=True)


def verify_snapshot(path: Path) -> VerifyResult:
    """Checksums, readable Parquet, consistent manifest; problems are returned, not raised."""
    path = Path(path)
    if not path.is_dir() and not path.is_symlink():
        return VerifyResult(path, False, [f"{path} does not exist or is not a directory"])
    manifest, problems = fmt.verify_dir(path)
    return VerifyResult(
        path=path,
        ok=not problems,
        problems=problems,
        tables=len(manifest.tables) if manifest else 0,
        rows=manifest.rows if manifest else 0,
    )


def show_snapshot(path: Path) -> ShowResult:
    return ShowResult(Path(path), fmt.read_manifest(Path(path)))
