"""Where the snapshot archive is: a local directory, or `s3://bucket/prefix` in object storage.

An archive in object storage is still seen by the rest of dbtools as a directory
(`Settings.snapshot_dir`): a private local folder (0700, removed when the process ends) that
mirrors the archive's published manifests and, only when a command reads a snapshot's data,
that snapshot's files. Which folders stand for which bucket is recorded here, by path, so
that `dataclasses.replace(settings, snapshot_dir=...)` (a scratch archive of a dry run) is a
local archive again. All I/O with the bucket lives in dbtools/snapshot/store.py.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from dbtools.errors import ConfigError

S3_SCHEME = "s3://"


@dataclass(frozen=True)
class S3Location:
    """A bucket and a key prefix ("" for the bucket's root), never any credential."""

    bucket: str
    prefix: str

    @property
    def url(self) -> str:
        return f"{S3_SCHEME}{self.bucket}/{self.prefix}".rstrip("/")

    def key(self, *parts: str) -> str:
        """The pyarrow path ("bucket/prefix/part/...") of parts below the prefix."""
        return "/".join(p for p in (self.bucket, self.prefix, *parts) if p)


def is_remote(text: str) -> bool:
    return text.strip().lower().startswith(S3_SCHEME)


def parse_s3(text: str) -> S3Location:
    """`s3://bucket[/prefix]` as an S3Location; ConfigError for anything else.

    Credentials are never part of the location (they come from the AWS environment
    variables), so a URL carrying them is refused without echoing it."""
    parts = urlsplit(text.strip())
    if parts.scheme.lower() != "s3":
        raise ConfigError(f"{text!r} is not an s3:// location")
    if "@" in parts.netloc or parts.password is not None:
        raise ConfigError(
            "the s3:// snapshot_dir carries credentials; give them in AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY instead (docs/OPERATIONS.md, the archive in object storage)"
        )
    if parts.query or parts.fragment:
        raise ConfigError(f"the snapshot_dir s3://{parts.netloc}/... has a '?' or '#'")
    bucket = parts.netloc
    prefix = parts.path.strip("/")
    if not bucket or any(p in ("", ".", "..") for p in prefix.split("/") if prefix):
        raise ConfigError(
            f"the snapshot_dir {text!r} is not s3://bucket or s3://bucket/prefix "
            "(no empty, '.' or '..' component)"
        )
    return S3Location(bucket, prefix)


_roots: dict[S3Location, Path] = {}
_locations: dict[Path, S3Location] = {}


def local_root(location: S3Location) -> Path:
    """The private folder that stands for `location` in this process (one per location)."""
    if location not in _roots:
        # mkdtemp makes it 0700 whatever the umask; it holds prod's data while a command runs.
        root = Path(tempfile.mkdtemp(prefix="dbtools-archive-")).resolve()
        atexit.register(shutil.rmtree, root, True)
        _roots[location] = root
        _locations[root] = location
    return _roots[location]


def archives_in_object_storage() -> bool:
    """Whether this process uses any archive in object storage."""
    return bool(_locations)


def local_roots() -> list[Path]:
    """Every folder that stands for an archive in object storage in this process."""
    return list(_locations)


def location_of(directory: Path) -> S3Location | None:
    """The object-storage location a local archive folder stands for, or None (a real one)."""
    return _locations.get(Path(directory))
