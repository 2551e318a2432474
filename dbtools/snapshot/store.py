"""The archive in object storage (`snapshot_dir = s3://bucket/prefix`), through pyarrow.fs.

The layout in the bucket is the local one: `<prefix>/<env>/<stamp>/manifest.json`,
`schema.sql` and the Parquet files. Every reader sees the archive as a directory
(`Settings.snapshot_dir`, config/archive.py): a private local folder (0700, removed when the
process ends) where `refresh` mirrors each published manifest, and where a snapshot's
`schema.sql` and Parquet files arrive only when something reads them (`fill`, called by
fmt.verify_dir and fmt.table_files), each checked against the manifest's sha256 as it is
downloaded. So list, show, verify, restore, rollback, query, plan and read_snapshot run the
same code on both kinds of archive. Writing never goes through that folder: snapshot/upload.py
streams a new snapshot straight into the bucket.

A prefix is published once its manifest.json exists (written last); a prefix without one is
an upload in progress or one that crashed, ignored by every reader and removed by prune once
its newest object is older than LEFTOVER_AGE (no pid can be checked remotely). A table reused
unchanged refers to an earlier snapshot's files (TableEntry.stored_in): prune deletes an
object only when no kept manifest refers to it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from dbtools.config import redact, register_secret
from dbtools.config.archive import S3Location, is_remote, local_roots, location_of, parse_s3
from dbtools.errors import ConfigError, SnapshotError
from dbtools.snapshot import format as fmt

if TYPE_CHECKING:
    import pyarrow.fs as pafs

# A prefix without a manifest younger than this may be an upload still running elsewhere.
LEFTOVER_AGE = timedelta(hours=1)
_CHUNK = 1 << 20
_ENDPOINT_VARS = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")


class ArchiveUnreachable(ConfigError):
    """The bucket could not be reached or refused the credentials (exit 2, as a database
    that cannot be reached)."""


@contextlib.contextmanager
def reaching(location: S3Location, what: str) -> Iterator[None]:
    """pyarrow's S3 errors (OSError) as one line naming the archive, never a traceback."""
    try:
        yield
    except OSError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()] or [type(exc).__name__]
        raise ArchiveUnreachable(
            f"cannot {what} the snapshot archive {location.url}: {redact(lines[0])}",
            hint="check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_REGION and, for an "
            "S3-compatible service, AWS_ENDPOINT_URL_S3 (docs/OPERATIONS.md)",
        ) from None


def s3_filesystem(environ: dict[str, str] | None = None) -> pafs.S3FileSystem:
    """An S3FileSystem from the standard AWS variables, the endpoint passed explicitly (so
    R2, MinIO and Backblaze work whatever pyarrow's own defaults read)."""
    import pyarrow.fs as pafs

    env = dict(os.environ if environ is None else environ)
    kwargs: dict[str, Any] = {
        "region": env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
        "connect_timeout": 5.0,
        "request_timeout": 60.0,
        "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=3),
    }
    key, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
    if bool(key) != bool(secret):
        raise ConfigError("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set together")
    if key and secret:
        register_secret(secret)  # never shown, whatever error text carries it
        kwargs.update(access_key=key, secret_key=secret)
        if token := env.get("AWS_SESSION_TOKEN"):
            register_secret(token)
            kwargs["session_token"] = token
    endpoint = next((env[v] for v in _ENDPOINT_VARS if env.get(v)), None)
    if endpoint:
        parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        if parts.scheme not in ("http", "https") or not parts.netloc or "@" in parts.netloc:
            raise ConfigError(
                f"AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL is not an http(s)://host[:port] URL "
                f"({parts.scheme}://{parts.hostname or ''})"
            )
        kwargs.update(endpoint_override=parts.netloc, scheme=parts.scheme)
    return pafs.S3FileSystem(**kwargs)


@dataclass
class Object:
    """One object of an env folder: which snapshot prefix, its name inside, size, age."""

    stamp: str
    rel: str
    size: int
    mtime: datetime | None


class Remote:
    """One archive in object storage and the local folder that stands for it."""

    def __init__(self, location: S3Location, root: Path) -> None:
        self.location = location
        self.root = root
        self._fs: pafs.S3FileSystem | None = None
        self._filled: dict[Path, list[str]] = {}

    @property
    def fs(self) -> pafs.S3FileSystem:
        if self._fs is None:
            fs = s3_filesystem()
            _bucket_exists(fs, self.location)
            self._fs = fs
        return self._fs

    def key(self, env: str, *parts: str) -> str:
        return self.location.key(env, *parts)

    def objects(self, env: str, stamp: str = "") -> list[Object]:
        """Every object below <env>/ (or one snapshot's prefix), as the bucket lists them."""
        import pyarrow.fs as pafs

        base = self.key(env, stamp)
        with reaching(self.location, "list"):
            infos = self.fs.get_file_info(
                pafs.FileSelector(base, recursive=True, allow_not_found=True)
            )
        out: list[Object] = []
        for info in infos:
            if info.type != pafs.FileType.File or not info.path.startswith(base + "/"):
                continue
            rest = info.path[len(base) + 1 :]
            if stamp:
                out.append(Object(stamp, rest, int(info.size or 0), _utc(info.mtime)))
            elif "/" in rest:
                top, rel = rest.split("/", 1)
                out.append(Object(top, rel, int(info.size or 0), _utc(info.mtime)))
        return out

    def refresh(self, env: str) -> list[Object]:
        """Mirror env's published manifests into the local folder (and forget snapshots the
        bucket no longer holds); returns the objects listed, for callers that need them."""
        objects = self.objects(env)
        published = {o.stamp for o in objects if o.rel == fmt.MANIFEST and fmt.is_stamp(o.stamp)}
        env_dir = self.root / env
        fmt.make_private_dir(env_dir)
        # Hidden names are this process's own build or scratch folders (rollback --dry-run's).
        gone = [p for p in env_dir.iterdir() if p.name not in published and p.name[:1] != "."]
        for stale in gone:
            fmt.remove_tree(stale)
            self._filled.pop(stale, None)
        for stamp in sorted(published):
            target = env_dir / stamp / fmt.MANIFEST
            if not target.exists():
                fmt.make_private_dir(target.parent)
                self.download(self.key(env, stamp, fmt.MANIFEST), target)
        return objects

    def download(self, key: str, target: Path) -> str | None:
        """Copy one object into a new private file; its sha256, or None when it is missing."""
        fd = os.open(
            target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600
        )
        digest = hashlib.sha256()
        try:
            with os.fdopen(fd, "wb") as out, reaching(self.location, "read"):
                try:
                    src = self.fs.open_input_stream(key)
                except FileNotFoundError:
                    target.unlink()
                    return None
                with src:
                    while chunk := src.read(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
        except BaseException:
            target.unlink(missing_ok=True)
            raise
        return digest.hexdigest()

    def fill(self, directory: Path) -> list[str]:
        """Download a mirrored snapshot's schema.sql and data files (once per process); the
        problems found on the way (missing, checksum). Unlisted Parquet objects of its own
        prefix are downloaded too, so that `verify` names them as it does on disk."""
        if directory in self._filled:
            return self._filled[directory]
        env, stamp = directory.parent.name, directory.name
        try:
            manifest = fmt.read_manifest(directory)
        except SnapshotError:
            return []  # verify_dir reports the manifest itself
        want: dict[str, tuple[str, str]] = {fmt.SCHEMA_SQL: (stamp, manifest.schema_sql_sha256)}
        for entry in manifest.tables.values():
            for rel, sha in entry.files.items():
                want[rel] = (entry.stored_in or stamp, sha)
        for obj in self.objects(env, stamp):
            if obj.rel not in want and fmt.check_relative_name(obj.rel) is None:
                want[obj.rel] = (stamp, "")  # a .parquet file, inside the snapshot
        problems: list[str] = []
        for rel, (where, sha) in want.items():
            target = directory / rel
            if target.exists():
                continue
            fmt.make_private_dir(target.parent)
            got = self.download(self.key(env, where, rel), target)
            if got is None:
                problems.append(f"{rel}: missing")
            elif sha and got != sha:
                problems.append(f"{rel}: checksum mismatch (truncated or damaged)")
        self._filled[directory] = problems
        return problems

    def leftovers(self, env: str, kept: list[Path], now: datetime) -> list[str]:
        """Prefixes without a manifest (crashed or running uploads, or what a pruned
        snapshot left for the kept ones) whose newest object is older than LEFTOVER_AGE and
        that hold an object no kept snapshot refers to."""
        refs = set().union(*(references(p) for p in kept))
        by_stamp: dict[str, list[Object]] = {}
        for obj in self.objects(env):
            by_stamp.setdefault(obj.stamp, []).append(obj)
        out: list[str] = []
        for stamp, objs in sorted(by_stamp.items()):
            if any(o.rel == fmt.MANIFEST for o in objs):
                continue
            newest = max((o.mtime for o in objs if o.mtime), default=None)
            if newest is not None and now - newest < LEFTOVER_AGE:
                continue  # perhaps an upload still running on another host
            if any((stamp, o.rel) not in refs for o in objs):
                out.append(stamp)
        return out

    def remove(self, env: str, stamps: list[str], kept: list[Path]) -> None:
        """Delete snapshots (manifest first: from then on no reader sees them) and then every
        object of theirs that no kept snapshot refers to."""
        refs = set().union(*(references(p) for p in kept))
        with reaching(self.location, "delete from"):
            for stamp in stamps:
                with contextlib.suppress(FileNotFoundError):
                    self.fs.delete_file(self.key(env, stamp, fmt.MANIFEST))
                local = self.root / env / stamp
                self._filled.pop(local, None)
                fmt.remove_tree(local)
            for stamp in stamps:
                for obj in self.objects(env, stamp):
                    if (stamp, obj.rel) not in refs:
                        with contextlib.suppress(FileNotFoundError):
                            self.fs.delete_file(self.key(env, stamp, obj.rel))


def _bucket_exists(fs: pafs.S3FileSystem, location: S3Location) -> None:
    """A bucket that is not there lists as empty: say so instead of showing no snapshots."""
    import pyarrow.fs as pafs

    with reaching(location, "list"):
        found = fs.get_file_info(location.bucket).type != pafs.FileType.NotFound
    if not found:
        raise ArchiveUnreachable(
            f"cannot list the snapshot archive {location.url}: the bucket {location.bucket} "
            "does not exist (or these credentials cannot see it)",
            hint="create the bucket first (docs/OPERATIONS.md, the archive in object storage)",
        )


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


_remotes: dict[Path, Remote] = {}


def remote_for(snapshot_dir: Path) -> Remote | None:
    """The archive in object storage that `snapshot_dir` stands for; None for a local one."""
    location = location_of(snapshot_dir)
    if location is None:
        return None
    if snapshot_dir not in _remotes:
        _remotes[snapshot_dir] = Remote(location, snapshot_dir)
    return _remotes[snapshot_dir]


def _owner(path: Path) -> Remote | None:
    """The remote whose local folder holds `path` as <root>/<env>/<stamp>[/...]."""
    for root in local_roots():
        if path.is_relative_to(root):
            return remote_for(root)
    return None


def fill(directory: Path) -> list[str]:
    """fmt's read hook: a mirrored snapshot's files, fetched before they are read."""
    directory = Path(directory)
    remote = _owner(directory)
    if remote is None or directory.parent.parent != remote.root:
        return []
    return remote.fill(directory)


def shown(path: Path | str) -> str:
    """How a path is shown to people: a mirrored snapshot as its s3:// URL (no credential is
    ever part of it), anything else as it is."""
    path = Path(path)
    remote = _owner(path)
    if remote is None:
        return str(path)
    rel = path.relative_to(remote.root).as_posix()
    return remote.location.url if rel == "." else f"{remote.location.url}/{rel}"


def from_url(snapshot_dir: Path, url: str) -> Path | None:
    """An s3:// reference to a snapshot of this archive as its local stand-in (refreshed)."""
    remote = remote_for(snapshot_dir)
    if remote is None or not is_remote(url):
        return None
    given = parse_s3(url)
    base = remote.location
    if given.bucket != base.bucket:
        return None
    rest = given.prefix[len(base.prefix) :].strip("/") if base.prefix else given.prefix
    if base.prefix and not (given.prefix + "/").startswith(base.prefix + "/"):
        return None
    if rest.endswith("/" + fmt.MANIFEST):
        rest = rest[: -len(fmt.MANIFEST) - 1]
    env, _, stamp = rest.partition("/")
    if not env or not fmt.is_stamp(stamp):
        return None
    remote.refresh(env)
    path = remote.root / env / stamp
    return path if path.is_dir() else None


def references(manifest_dir: Path) -> set[tuple[str, str]]:
    """(stamp, name) of every object a mirrored snapshot's manifest refers to; read loosely,
    so that even a manifest that no longer validates keeps what it names."""
    stamp = manifest_dir.name
    try:
        data = json.loads((manifest_dir / fmt.MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    out = {(stamp, fmt.MANIFEST), (stamp, fmt.SCHEMA_SQL)}
    tables = data.get("tables") if isinstance(data, dict) else None
    for entry in (tables or {}).values():
        if not isinstance(entry, dict) or not isinstance(entry.get("files"), dict):
            continue
        where = entry.get("stored_in")
        where = where if isinstance(where, str) and fmt.is_stamp(where) else stamp
        out |= {(where, str(rel)) for rel in entry["files"]}
    return out


fmt.on_read(fill)
