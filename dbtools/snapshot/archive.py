"""The snapshot archive: list, show, verify, prune, rollback's choice, and resolving a PATH.

Retention (setup.cfg [dbtools]): snapshots older than retention_days are deleted, except,
whatever their age: the newest keep_min of each environment; for each source database (the
manifest's `source`), its newest verified snapshot and, in prod, the backup rollback would
restore (the newest verified one not taken by a rollback); and any path the caller protects.
Build directories of runs that died (`.tmp-*` whose process is gone) and published directories
without a manifest are removed too. A directory is deleted by renaming it to a `.tmp-` name
first, so a killed prune never leaves a half-deleted directory that looks like a snapshot.

Backups are chosen by source, never by folder: a snapshot of another database that landed in
snapshots/prod/ (or one written before sources were recorded) is never a backup of prod.
"""

from __future__ import annotations

import os
import stat
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from dbtools import faults
from dbtools.config import ENVS, Settings
from dbtools.errors import ConfigError, SnapshotError
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
    source: dict[str, Any] | None = None  # None: unknown (older manifest or unreadable)
    reason: str | None = None
    database: str | None = None

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
            "reason": m.reason,
            "source": m.source,
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
    kept: list[dict[str, str]]  # every kept snapshot with why ("; "-joined when several)

    def as_dict(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "deleted": self.deleted, "kept": self.kept}


@dataclass
class RollbackChoice:
    """Which backup rollback would restore for one database, and what it passed over.

    target: the newest verified backup of that database not taken by a rollback (or None).
    failed: newer snapshots that could be backups of it but do not verify (its own backups
            with damaged files, and snapshots whose manifest cannot be read), with why.
    skipped: snapshots that are not candidates, with why (another database's, unknown
             source, taken by a rollback).
    """

    target: Path | None
    failed: list[tuple[Path, list[str]]] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": str(self.target) if self.target else None,
            "failed": [{"path": str(p), "problems": pr} for p, pr in self.failed],
            "skipped": [{"path": str(p), "reason": r} for p, r in self.skipped],
        }


def resolve_path(settings: Settings, arg: str, env: str | None = None) -> Path:
    """A snapshot directory from a path, or a bare stamp looked up in the archive.

    A symlink is never resolved to what it points to: the snapshot is then refused by name
    (reading happens only inside a real snapshot directory)."""
    given = Path(arg).expanduser()
    if given.is_file() and not given.is_symlink() and given.name == fmt.MANIFEST:
        given = given.parent
    if given.is_symlink():
        return _absolute(given)
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
            if candidate.is_symlink():
                return _absolute(candidate)
            if candidate.is_dir():
                return candidate.resolve()
    raise ConfigError(
        f"snapshot {arg} does not exist (looked for a directory and for a stamp under "
        f"{settings.snapshot_dir})",
        hint="dbtools snapshot list shows the snapshots in the archive",
    )


def _absolute(link: Path) -> Path:
    """A symlink's own absolute path (its folder resolved, the link itself kept)."""
    return link.absolute().parent.resolve() / link.name


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
            complete=path.is_symlink() or (path / fmt.MANIFEST).is_file(),
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
        source=manifest.source,
        reason=manifest.reason,
        database=manifest.database,
    )


def _sort_key(info: SnapshotInfo) -> tuple[datetime, str]:
    return (info.created_at or datetime.min.replace(tzinfo=timezone.utc), info.path.name)


def list_snapshots(
    settings: Settings, env: str | None = None, *, verify: bool = False
) -> list[SnapshotInfo]:
    """Snapshots of the archive, newest first; verify=True checks every file of each.

    A bad snapshot is listed with its problems (verified False); it never stops the listing."""
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


def _fix_hint(exposed: list[Path], root: Path, what: str) -> str:
    first = exposed[0]
    mode = stat.S_IMODE(first.lstat().st_mode)
    more = f" and {len(exposed) - 1} more" if len(exposed) > 1 else ""
    return (
        f"{what} {root} can be read or written by other users ({first} has mode "
        f"{mode:04o}{more}); it holds prod's data: fix with `chmod -R go-rwx {root}`"
    )


def exposure_warnings(settings: Settings, path: Path | None = None) -> list[str]:
    """Warnings for an archive (path None) or one snapshot that others can read or write.

    A snapshot's warning also covers the archive folders above it (snapshot_dir, env dir)."""
    if path is None:
        root = settings.snapshot_dir
        exposed = fmt.exposure(root) if root.is_dir() else []
        return [_fix_hint(exposed, root, "the snapshot archive")] if exposed else []
    out: list[str] = []
    path = Path(path)
    archive_root = settings.snapshot_dir.resolve() if settings.snapshot_dir.is_dir() else None
    parents = [
        p for p in path.parents if archive_root and (p == archive_root or archive_root in p.parents)
    ]
    for folder in reversed(parents):
        if fmt.exposure(folder, recursive=False):
            out.append(_fix_hint([folder], folder, "the archive folder"))
            break
    exposed = fmt.exposure(path)
    if exposed:
        out.append(_fix_hint(exposed, path, "snapshot"))
    return out


def newest_verified(
    settings: Settings, env: str, *, skip_reasons: tuple[str, ...] = ()
) -> tuple[Path | None, list[tuple[Path, list[str]]]]:
    """The newest snapshot of env that verifies, and the newer ones that failed, with why.

    Snapshots whose manifest gives one of skip_reasons are not candidates at all. Sources are
    not considered: rollback uses rollback_target, which is.
    """
    failed: list[tuple[Path, list[str]]] = []
    for info in list_snapshots(settings, env):
        if skip_reasons and info.reason in skip_reasons:
            continue
        result = verify_snapshot(info.path)
        if result.ok:
            return info.path, failed
        failed.append((info.path, result.problems))
    return None, failed


def _describe(info: SnapshotInfo) -> str:
    source = info.source
    if source is None:
        return f"database {info.database} (source not recorded: an older snapshot)"
    system = source.get("system_identifier") or "?"
    return f"database {source['database']} (oid {source['database_oid']}, system {system})"


def backups_of(settings: Settings, env: str, identity: Any) -> list[SnapshotInfo]:
    """Snapshots of env taken of the database `identity` names (a db.Identity), newest first.

    Only manifests that record this source count (system identifier + database oid); they are
    not verified here (see rollback_target)."""
    return [
        info
        for info in list_snapshots(settings, env)
        if not info.problems and fmt.same_source(info.source, identity)
    ]


def rollback_target(
    settings: Settings,
    identity: Any,
    *,
    env: str = "prod",
    skip_reasons: tuple[str, ...] = (fmt.ROLLBACK_REASON,),
) -> RollbackChoice:
    """The backup rollback would restore into the database `identity` names (RollbackChoice).

    Only verified snapshots whose manifest records that database as their source are
    candidates; those taken by a rollback (skip_reasons) are passed over, as are other
    databases' and unknown-source snapshots, each reported in `skipped`. A snapshot that
    cannot be read is reported in `failed`, never chosen and never a reason to stop looking.
    """
    choice = RollbackChoice(target=None)
    for info in list_snapshots(settings, env):
        if info.problems:  # the manifest itself is unusable: its source cannot be known
            choice.failed.append((info.path, info.problems))
            continue
        if not fmt.same_source(info.source, identity):
            what = "another database's snapshot" if info.source else "not known to be a backup"
            choice.skipped.append((info.path, f"{what}: {_describe(info)}"))
            continue
        if info.reason in skip_reasons:
            choice.skipped.append((info.path, f"taken {info.reason}: the state it replaced"))
            continue
        result = verify_snapshot(info.path)
        if result.ok:
            choice.target = info.path
            return choice
        choice.failed.append((info.path, result.problems))
    return choice


def _leftovers(env_dir: Path) -> list[tuple[Path, str]]:
    out: list[tuple[Path, str]] = []
    if not env_dir.is_dir():
        return out
    for path in sorted(env_dir.iterdir()):
        if path.is_symlink() or not path.is_dir():
            continue
        if path.name.startswith(fmt.TMP_PREFIX):
            pid = fmt.temp_dir_pid(path.name)
            if pid is None or not fmt.pid_alive(pid):
                out.append((path, "leftover of a crashed run"))
        elif not path.name.startswith(".") and not (path / fmt.MANIFEST).exists():
            out.append((path, "incomplete: no manifest.json"))
    return out


def _same_path(a: Path, b: Path) -> bool:
    try:
        return os.path.realpath(a) == os.path.realpath(b)
    except OSError:
        return False


def _source_key(info: SnapshotInfo) -> tuple[Any, ...]:
    if info.source is None:  # older manifests: one group per database name
        return ("unknown", info.database)
    src = info.source
    if src.get("system_identifier") is None:
        return (None, src["database_oid"], src["database"])
    return (src["system_identifier"], src["database_oid"])


def _protected(settings: Settings, env: str, infos: list[SnapshotInfo]) -> dict[Path, list[str]]:
    """Per source database: its newest verified snapshot and, in prod, rollback's target."""
    out: dict[Path, list[str]] = {}
    newest: set[tuple[Any, ...]] = set()
    target: set[tuple[Any, ...]] = set()
    for info in infos:
        if info.problems:
            continue
        key = _source_key(info)
        wants_newest = key not in newest
        wants_target = (
            env == "prod"
            and info.source is not None  # rollback never restores an unknown source
            and key not in target
            and info.reason != fmt.ROLLBACK_REASON
        )
        if not (wants_newest or wants_target) or not verify_snapshot(info.path).ok:
            continue
        who = _describe(info)
        if wants_newest:
            newest.add(key)
            out.setdefault(info.path, []).append(f"newest verified snapshot of {who}")
        if wants_target:
            target.add(key)
            out.setdefault(info.path, []).append(f"rollback's target for {who}")
    return out


def prune(
    settings: Settings,
    *,
    dry_run: bool,
    now: datetime | None = None,
    protect: tuple[Path, ...] | list[Path] = (),
) -> PruneResult:
    """Apply the retention rules (module doc); dry_run only reports what would go.

    `protect`: paths the caller knows must stay (rollback's target from prod's own history);
    they are kept whatever their age. Every kept snapshot is reported with why."""
    now = now or datetime.now(timezone.utc)
    cutoff = now - timedelta(days=settings.retention_days)
    deleted: list[dict[str, str]] = []
    kept: list[dict[str, str]] = []
    doomed: list[Path] = []
    for env in ENVS:
        leftovers = _leftovers(settings.snapshot_dir / env)
        skip = {p for p, _ in leftovers}
        for path, reason in leftovers:
            doomed.append(path)
            deleted.append({"path": str(path), "reason": reason})
        complete = [i for i in list_snapshots(settings, env) if i.path not in skip]
        guarded = _protected(settings, env, complete)
        newest = 0
        for info in complete:
            why: list[str] = []
            # A snapshot whose manifest is unusable never takes one of the keep_min places (a
            # crafted one dated in the future would otherwise push out the real newest).
            if not info.problems and newest < settings.keep_min:
                newest += 1
                why.append(f"among the newest {settings.keep_min}")
            why += guarded.get(info.path, [])
            if any(_same_path(info.path, Path(p)) for p in protect):
                why.append("rollback's target, as prod's history records it")
            if not why:
                if info.created_at is None:
                    why.append("age unknown (no readable created_at or stamp)")
                elif info.created_at >= cutoff:
                    why.append(f"within {settings.retention_days} days")
            if why:
                if info.problems:
                    why.append(f"does not verify: {info.problems[0]}")
                kept.append({"path": str(info.path), "reason": "; ".join(why)})
                continue
            reason = f"older than {settings.retention_days} days"
            if info.problems:
                reason += f"; does not verify: {info.problems[0]}"
            doomed.append(info.path)
            deleted.append({"path": str(info.path), "reason": reason})
    if not dry_run:
        for path in doomed:
            faults.pause("prune.delete")
            try:
                if path.name.startswith(fmt.TMP_PREFIX):
                    fmt.remove_tree(path)  # already a hidden leftover name
                else:
                    fmt.discard(path)
            except OSError as exc:
                raise SnapshotError(
                    f"cannot delete {path}: {exc.strerror or exc}; nothing after it was deleted"
                ) from None
    return PruneResult(dry_run=dry_run, deleted=deleted, kept=kept)
