"""The archive's layout on disk: names and stamps, modes, checksums of files, listing."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import stat
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from pathlib import Path

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SCHEMA_SQL = "schema.sql"
TMP_PREFIX = ".tmp-"
STAMP_FORMAT = "%Y%m%dT%H%M%SZ"
_STAMP_RE = re.compile(r"^\d{8}T\d{6}Z(-\d+)?$")
_CHUNK = 1 << 20
# Backups hold prod's data, tokens included: the archive is for its owner only, whatever the
# umask.
DIR_MODE = 0o700
FILE_MODE = 0o600
# How far in the future a created_at may lie (clocks of two hosts disagree a little); beyond
# it a snapshot would sort above every real one and become rollback's target.
CLOCK_SKEW = timedelta(minutes=5)


def utc_now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def stamp_of(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime(STAMP_FORMAT)


def is_stamp(name: str) -> bool:
    return bool(_STAMP_RE.match(name))


def parse_stamp(name: str) -> datetime | None:
    if not is_stamp(name):
        return None
    return datetime.strptime(name.split("-")[0], STAMP_FORMAT).replace(tzinfo=timezone.utc)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    # O_NOFOLLOW: a symlink swapped in for a snapshot file is never followed.
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _walk(path: Path) -> Iterable[tuple[Path, os.stat_result]]:
    """Every entry below path with its lstat, never following a symlink."""
    for root, dirs, files in os.walk(path, followlinks=False):
        for name in sorted(dirs) + sorted(files):
            entry = Path(root) / name
            with contextlib.suppress(OSError):
                yield entry, entry.lstat()


def dir_bytes(path: Path) -> int:
    if path.is_symlink():
        return 0
    return sum(st.st_size for _, st in _walk(path) if stat.S_ISREG(st.st_mode))


_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def snapshot_dirs(env_dir: Path) -> Iterable[Path]:
    """Published snapshot directories of one environment (build directories left out); a
    symlink is listed too, so that it is reported as bad rather than silently followed."""
    if not env_dir.is_dir():
        return []
    return sorted(
        p
        for p in env_dir.iterdir()
        if (p.is_dir() or p.is_symlink()) and not p.name.startswith(".")
    )


def exposure(root: Path, *, recursive: bool = True) -> list[Path]:
    """Entries at or below root that users other than the owner can read or write."""
    out: list[Path] = []
    with contextlib.suppress(OSError):
        if root.lstat().st_mode & 0o077 and not root.is_symlink():
            out.append(root)
    if recursive and root.is_dir() and not root.is_symlink():
        out += [p for p, st in _walk(root) if not stat.S_ISLNK(st.st_mode) and st.st_mode & 0o077]
    return out
