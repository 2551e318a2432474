"""The snapshot archive: resolving a reference, exposure warnings, and the archive's operations.

This module resolves a snapshot reference (`resolve_path`: a path, `prod/STAMP`, `prod:latest`,
a stamp only one side holds) and warns about an archive or snapshot that other users can read
or write; it is also where callers reach the archive's operations, each held by the module
named for it: `listing` (list, show, verify), `backups` (which snapshots are backups of a
database, rollback's choice, newest verified) and `retention` (prune).
"""

from __future__ import annotations

import stat
from pathlib import Path

from dbtools.config import ENVS, Settings, load_settings
from dbtools.config.archive import is_remote
from dbtools.errors import ConfigError
from dbtools.snapshot import format as fmt
from dbtools.snapshot import store
from dbtools.snapshot.backups import backups_of, newest_verified, rollback_target
from dbtools.snapshot.listing import SnapshotInfo, list_snapshots, show_snapshot, verify_snapshot
from dbtools.snapshot.retention import PruneResult, prune

__all__ = [
    "LATEST",
    "REF_FORMS",
    "PruneResult",
    "SnapshotInfo",
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


# Snapshot references (docs: README "Snapshots for analysts"; `dbtools snapshot list` prints
# each snapshot's `ref`). A stamp alone can name two snapshots: a sync's prod backup and its
# dev snapshot are often taken in the same second, so a bare stamp is accepted only when one
# side holds it.
LATEST = "latest"
REF_FORMS = "dev/STAMP, prod/STAMP, dev:latest, prod:latest or a STAMP"


def resolve_path(settings: Settings | None, arg: str, env: str | None = None) -> Path:
    """The snapshot directory a reference names; the one resolver of every command and of
    `read_snapshot`.

    In order: a path that exists (a snapshot directory or its manifest.json); `dev:latest` /
    `prod:latest`, the newest snapshot of that side that verifies; `dev/STAMP` / `prod/STAMP`
    in the archive; a bare STAMP that exactly one side of the archive holds. A stamp both
    sides hold is refused, naming both references; anything else is refused naming what was
    looked for and where (ConfigError, exit 2). `settings` None: read from the current
    project, and only when the archive is needed (a path never needs it). `env` is accepted
    from callers that load into one side; it never picks a side for an ambiguous stamp.

    A symlink is never resolved to what it points to: the snapshot is then refused by name
    (reading happens only inside a real snapshot directory)."""
    del env  # which side a stamp belongs to is the operator's to say, never guessed
    if is_remote(arg):  # s3://bucket/prefix/<env>/<stamp>, as list and create show it
        settings = settings or load_settings()
        found = store.from_url(settings.snapshot_dir, arg)
        if found is None:
            where = store.shown(settings.snapshot_dir)
            raise _unknown(arg, f"not a snapshot of the archive {where}")
        return found
    on_disk = _on_disk(arg)
    if on_disk is not None:
        return on_disk
    settings = settings or load_settings()
    side, sep, rest = arg.partition(":")
    if sep and side in ENVS and rest == LATEST:
        return _latest(settings, side)
    side, sep, name = arg.partition("/")
    if sep and side in ENVS and _is_name(name):
        found = _in_archive(settings, side, name)
        if found is None:
            where = store.shown(settings.snapshot_dir / side)
            raise _unknown(arg, f"no snapshot {name} in {where}")
        return found
    if not sep and _is_name(arg):
        return _by_stamp(settings, arg)
    raise _unknown(arg, f"and it is not a snapshot reference ({REF_FORMS})")


def _on_disk(arg: str) -> Path | None:
    """The directory a path names, or None when nothing is there (a reference, then)."""
    given = Path(arg).expanduser()
    if given.is_file() and not given.is_symlink() and given.name == fmt.MANIFEST:
        given = given.parent
    if given.is_symlink():
        return _absolute(given)
    if given.is_dir():
        return given.resolve()
    if given.exists():
        raise ConfigError(f"{arg} is not a snapshot directory")
    return None


def _is_name(name: str) -> bool:
    """A name the archive could hold: one path component, not hidden (build directories and
    `.`/`..` are never snapshots)."""
    return bool(name) and "/" not in name and not name.startswith(".")


def _in_archive(settings: Settings, env: str, name: str) -> Path | None:
    remote = store.remote_for(settings.snapshot_dir)
    if remote is not None:
        remote.refresh(env)
    candidate = settings.snapshot_dir / env / name
    if candidate.is_symlink():
        return _absolute(candidate)
    if candidate.is_dir():
        return candidate.resolve()
    return None


def _by_stamp(settings: Settings, stamp: str) -> Path:
    found = {e: p for e in ENVS if (p := _in_archive(settings, e, stamp)) is not None}
    if len(found) > 1:
        refs = " and ".join(f"{e}/{stamp}" for e in found)
        raise ConfigError(f"snapshot {stamp} is ambiguous: it names {refs}; give one of them")
    if not found:
        where = " or ".join(store.shown(settings.snapshot_dir / e) for e in ENVS)
        raise _unknown(stamp, f"no snapshot {stamp} in {where}")
    return next(iter(found.values()))


def _latest(settings: Settings, env: str) -> Path:
    path, failed = newest_verified(settings, env)
    if path is None:
        where = store.shown(settings.snapshot_dir / env)
        why = f"none in {where} verifies ({len(failed)} found)" if failed else f"none in {where}"
        raise ConfigError(
            f"snapshot {env}:{LATEST} does not exist: {why}",
            hint="dbtools snapshot list shows the snapshots in the archive",
        )
    return path.resolve()


def _unknown(arg: str, looked: str) -> ConfigError:
    return ConfigError(
        f"snapshot {arg} does not exist: no directory {arg}, {looked}",
        hint="dbtools snapshot list shows the snapshots in the archive and their references",
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
