"""The snapshot archive: resolving a PATH, exposure warnings, and the archive's operations.

This module resolves a snapshot argument (a path or a bare stamp) and warns about an archive or
snapshot that other users can read or write; it is also where callers reach the archive's
operations, each held by the module named for it: `listing` (list, show, verify), `backups`
(which snapshots are backups of a database, rollback's choice, newest verified) and
`retention` (prune).
"""

from __future__ import annotations

import stat
from pathlib import Path

from dbtools.config import ENVS, Settings
from dbtools.errors import ConfigError
from dbtools.snapshot import format as fmt
from dbtools.snapshot.backups import backups_of, newest_verified, rollback_target
from dbtools.snapshot.listing import list_snapshots, show_snapshot, verify_snapshot
from dbtools.snapshot.retention import PruneResult, prune

__all__ = [
    "PruneResult",
    "backups_of",
    "exposure_warnings",
    "list_snapshots",
    "newest_verified",
    "prune",
    "resolve_path",
    "rollback_target",
    "show_snapshot",
    "verify_snapshot",
]


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
