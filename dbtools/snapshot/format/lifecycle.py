"""A snapshot's life on disk: a private temp directory, fsync, atomic publish, discard."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from dbtools.errors import SnapshotError
from dbtools.snapshot.format.layout import DIR_MODE, FILE_MODE, TMP_PREFIX, _walk, stamp_of, utc_now


def _fsync_dir(path: Path) -> None:
    # Directory fsync makes the rename durable; not every platform allows opening a directory.
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _private_file(path: Path) -> Any:
    """A new file open for writing, mode 0600 whatever the umask."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o600)
    os.fchmod(fd, FILE_MODE)
    return os.fdopen(fd, "w", encoding="utf-8")


def make_private_dir(path: Path) -> None:
    """Create path (and missing parents) mode 0700 whatever the umask; an existing directory
    is left as its owner made it (`exposure` reports it)."""
    if path.is_dir():
        return
    if not path.parent.exists():
        make_private_dir(path.parent)
    try:
        path.mkdir(mode=DIR_MODE)
    except FileExistsError:
        if not path.is_dir():
            raise
        return
    os.chmod(path, DIR_MODE)


def new_temp_dir(env_dir: Path) -> Path:
    """A fresh, private build directory next to where the snapshot will land (same
    filesystem); it is 0700 before any file is written in it."""
    make_private_dir(env_dir)
    path = env_dir / f"{TMP_PREFIX}{stamp_of(utc_now())}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    path.mkdir(mode=DIR_MODE)
    os.chmod(path, DIR_MODE)
    return path


def temp_dir_pid(name: str) -> int | None:
    """The pid that owns a build directory, from its name."""
    parts = name[len(TMP_PREFIX) :].split("-") if name.startswith(TMP_PREFIX) else []
    if len(parts) >= 2 and parts[1].isdigit():
        return int(parts[1])
    return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fsync_tree(directory: Path) -> None:
    for path, st in _walk(directory):
        if stat.S_ISREG(st.st_mode):
            with path.open("rb") as fh:
                os.fsync(fh.fileno())
    for sub in [directory, *(p for p, st in _walk(directory) if stat.S_ISDIR(st.st_mode))]:
        _fsync_dir(sub)


def make_private(directory: Path) -> None:
    """Every directory 0700 and every file 0600 below (and including) directory."""
    os.chmod(directory, DIR_MODE)
    for path, st in _walk(directory):
        if stat.S_ISDIR(st.st_mode):
            os.chmod(path, DIR_MODE)
        elif stat.S_ISREG(st.st_mode):
            os.chmod(path, FILE_MODE)


def publish(temp: Path, env_dir: Path, created: datetime) -> Path:
    """Rename a complete build directory to its stamp (never over an existing snapshot).

    Files written by others into the build directory (Parquet, schema.sql) are made 0600
    here, before the snapshot appears under its stamp."""
    make_private(temp)
    fsync_tree(temp)
    base = stamp_of(created)
    for n in range(1000):
        final = env_dir / (base if n == 0 else f"{base}-{n}")
        if final.exists():
            continue
        try:
            # os.rename onto a missing name is atomic; a racing run that took the name makes
            # it fail (non-empty target), and we try the next suffix.
            os.rename(temp, final)
        except OSError:
            if final.exists():
                continue
            raise
        _fsync_dir(env_dir)
        return final
    raise SnapshotError(f"cannot find a free snapshot name for {base} in {env_dir}")


def remove_tree(path: Path) -> None:
    if path.is_symlink():
        with contextlib.suppress(OSError):
            path.unlink()
        return
    shutil.rmtree(path, ignore_errors=True)


def discard(path: Path) -> None:
    """Delete a snapshot directory crash-safely: first rename it to a hidden build-leftover
    name (atomic), then remove it. A run killed midway leaves a `.tmp-` directory that the
    next prune removes, never a half-deleted directory under a snapshot's stamp."""
    leftover = path.parent / f"{TMP_PREFIX}pruned-{os.getpid()}-{path.name}"
    os.rename(path, leftover)
    _fsync_dir(path.parent)
    remove_tree(leftover)
