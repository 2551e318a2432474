"""The snapshot archive: list, show, verify, prune, and resolving a PATH argument.

Retention (setup.cfg [dbtools]): snapshots older than retention_days are deleted, except the
newest keep_min of each environment and the newest prod backup that verifies, whatever its
age: a restore point must survive any pruning. Build directories of runs that died
(`.tmp-*` whose process is gone) and published directories without a manifest are removed too.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from dbtools.config import ENVS, Settings
from dbtools.errors import ConfigError, DbtoolsError, SnapshotError
from dbtools.snapshot import format as fmt


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

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["path"] = str(self.path)
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
            "path": str(self.path),
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
            "path": str(self.path),
            "env": m.env,
            "database": m.database,
            "server_version": m.server_version,
            "created_at": m.created_at,
            "tool_version": m.tool_version,
            "format_version": m.format_version,
            "migrations": m.migrations,
            "schema_fingerprint": m.schema_fingerprint,
            "excluded_tables": m.excluded_tables,
            "bookkeeping_tables": m.bookkeeping_tables,
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
                }
                for t in m.tables.values()
            ],
        }


@dataclass
class PruneResult:
    dry_run: bool
    deleted: list[dict[str, str]]
    kept: list[dict[str, str]]

    def as_dict(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "deleted": self.deleted, "kept": self.kept}


def resolve_path(settings: Settings, arg: str, env: str | None = None) -> Path:
    """A snapshot directory from a path, or a bare stamp looked up in the archive."""
    given = Path(arg).expanduser()
    if given.is_file() and given.name == fmt.MANIFEST:
        given = given.parent
    if given.is_dir():
        return given.resolve()
    if given.exists():
        raise ConfigError(f"{arg} is not a snapshot directory")
    if len(given.parts) == 1:
        # The target's own archive first; a stamp of the other side is found too (sync-data
        # loads dev snapshots into prod).
        envs = [env, *(e for e in ENVS if e != env)] if env else list(ENVS)
        for e in envs:
            candidate = settings.snapshot_dir / e / arg
            if candidate.is_dir():
                return candidate.resolve()
    raise ConfigError(
        f"snapshot {arg} does not exist (looked for a directory and for a stamp under "
        f"{settings.snapshot_dir})",
        hint="dbtools snapshot list shows the snapshots in the archive",
    )


def _info(path: Path, env: str, verify: bool) -> SnapshotInfo:
    if verify:
        manifest, problems = fmt.verify_dir(path)
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
            bytes=fmt.dir_bytes(path),
            migration_head=None,
            verified=False,
            complete=(path / fmt.MANIFEST).is_file(),
            problems=problems,
        )
    return SnapshotInfo(
        path=path,
        env=manifest.env,
        created_at=manifest.created,
        tables=len(manifest.tables),
        rows=manifest.rows,
        bytes=fmt.dir_bytes(path),
        migration_head=manifest.migration_head,
        verified=(not problems) if verify else None,
        problems=problems,
    )


def _sort_key(info: SnapshotInfo) -> tuple[datetime, str]:
    return (info.created_at or datetime.min.replace(tzinfo=timezone.utc), info.path.name)


def list_snapshots(
    settings: Settings, env: str | None = None, *, verify: bool = False
) -> list[SnapshotInfo]:
    """Snapshots of the archive, newest first; verify=True checks every file of each."""
    envs = [env] if env else list(ENVS)
    infos = [
        _info(path, e, verify)
        for e in envs
        for path in fmt.snapshot_dirs(settings.snapshot_dir / e)
    ]
    return sorted(infos, key=_sort_key, reverse=True)


def verify_snapshot(path: Path) -> VerifyResult:
    """Checksums, readable Parquet, consistent manifest; problems are returned, not raised."""
    path = Path(path)
    if not path.is_dir():
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


def newest_verified(
    settings: Settings, env: str, *, skip_reasons: tuple[str, ...] = ()
) -> tuple[Path | None, list[tuple[Path, list[str]]]]:
    """The newest snapshot of env that verifies, and the newer ones that failed, with why.

    Snapshots whose manifest gives one of skip_reasons are not candidates at all.
    """
    failed: list[tuple[Path, list[str]]] = []
    for info in list_snapshots(settings, env):
        if skip_reasons and _reason(info.path) in skip_reasons:
            continue
        result = verify_snapshot(info.path)
        if result.ok:
            return info.path, failed
        failed.append((info.path, result.problems))
    return None, failed


def _reason(path: Path) -> str | None:
    """The recorded reason of a snapshot; None when its manifest cannot be read (a corrupt
    snapshot stays a candidate, so that rollback refuses it by name rather than skip it)."""
    try:
        return fmt.read_manifest(path).reason
    except DbtoolsError:
        return None


def _leftovers(env_dir: Path) -> list[tuple[Path, str]]:
    out: list[tuple[Path, str]] = []
    if not env_dir.is_dir():
        return out
    for path in sorted(env_dir.iterdir()):
        if not path.is_dir():
            continue
        if path.name.startswith(fmt.TMP_PREFIX):
            pid = fmt.temp_dir_pid(path.name)
            if pid is None or not fmt.pid_alive(pid):
                out.append((path, "leftover of a crashed run"))
        elif not path.name.startswith(".") and not (path / fmt.MANIFEST).is_file():
            out.append((path, "incomplete: no manifest.json"))
    return out


def prune(settings: Settings, *, dry_run: bool, now: datetime | None = None) -> PruneResult:
    """Apply the retention rules (module doc); dry_run only reports what would go."""
    now = now or datetime.now(timezone.utc)
    cutoff = now - timedelta(days=settings.retention_days)
    deleted: list[dict[str, str]] = []
    kept: list[dict[str, str]] = []
    doomed: list[Path] = []
    protected: Path | None = None
    if settings.snapshot_dir.is_dir():
        protected, _ = newest_verified(settings, "prod")
    for env in ENVS:
        leftovers = _leftovers(settings.snapshot_dir / env)
        skip = {p for p, _ in leftovers}
        for path, reason in leftovers:
            doomed.append(path)
            deleted.append({"path": str(path), "reason": reason})
        complete = [i for i in list_snapshots(settings, env) if i.path not in skip]
        for n, info in enumerate(complete):
            if n < settings.keep_min:
                kept.append(
                    {"path": str(info.path), "reason": f"among the newest {settings.keep_min}"}
                )
            elif protected is not None and info.path == protected:
                kept.append({"path": str(info.path), "reason": "newest verified prod backup"})
            elif info.created_at is not None and info.created_at < cutoff:
                doomed.append(info.path)
                deleted.append(
                    {
                        "path": str(info.path),
                        "reason": f"older than {settings.retention_days} days",
                    }
                )
            else:
                kept.append(
                    {"path": str(info.path), "reason": f"within {settings.retention_days} days"}
                )
    if not dry_run:
        for path in doomed:
            fmt.remove_tree(path)
    return PruneResult(dry_run=dry_run, deleted=deleted, kept=kept)
