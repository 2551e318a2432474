"""The snapshot format: manifest, layout, stamps, checksums, atomic publish and verification.

A snapshot is a directory `<snapshot_dir>/<env>/<UTC stamp>/` holding one Parquet file (or a
folder of part files) per table, `schema.sql` and `manifest.json`. The manifest is written
last and carries a checksum of its own content, so a directory without one is an incomplete
run and an edited manifest is told apart from a good one. Snapshots are built in a `.tmp-`
sibling directory and renamed into place only once complete and verified: a rename within
one filesystem is atomic, so a reader never sees half a snapshot under a real stamp.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from dbtools.errors import SnapshotError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SCHEMA_SQL = "schema.sql"
TMP_PREFIX = ".tmp-"
STAMP_FORMAT = "%Y%m%dT%H%M%SZ"
_STAMP_RE = re.compile(r"^\d{8}T\d{6}Z(-\d+)?$")
_CHUNK = 1 << 20


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
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


@dataclass
class TableEntry:
    """One table of a snapshot: its files (path relative to the snapshot -> sha256)."""

    schema: str
    name: str
    rows: int
    bytes: int
    files: dict[str, str]
    columns: list[dict[str, Any]]
    content_hash: str
    sequences: list[dict[str, Any]] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.schema}.{self.name}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TableEntry:
        return cls(
            schema=str(data["schema"]),
            name=str(data["name"]),
            rows=int(data["rows"]),
            bytes=int(data["bytes"]),
            files={str(k): str(v) for k, v in dict(data["files"]).items()},
            columns=list(data["columns"]),
            content_hash=str(data["content_hash"]),
            sequences=list(data.get("sequences", [])),
        )


@dataclass
class Manifest:
    """Everything a snapshot says about itself; `manifest.json` is its canonical JSON form."""

    created_at: str
    env: str
    database: str
    server_version: str
    tool_version: str
    schemas: list[str]
    migrations: list[str]
    schema_fingerprint: str
    schema_objects: dict[str, str]
    tables: dict[str, TableEntry]
    excluded_tables: list[str] = field(default_factory=list)
    bookkeeping_tables: list[str] = field(default_factory=list)
    sequences: list[dict[str, Any]] = field(default_factory=list)  # not owned by a table
    schema_sql_sha256: str = ""
    # Why the snapshot was taken: "manual", or "before <command>" for a backup a prod write
    # took first. Rollback uses it to never return to the state a rollback replaced.
    reason: str = "manual"
    format_version: int = FORMAT_VERSION

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.tables.values())

    @property
    def bytes(self) -> int:
        return sum(t.bytes for t in self.tables.values())

    @property
    def migration_head(self) -> str | None:
        return self.migrations[-1] if self.migrations else None

    @property
    def created(self) -> datetime:
        return datetime.fromisoformat(self.created_at.replace("Z", "+00:00"))

    def table(self, name: str) -> TableEntry:
        """A table by key ("public.User") or bare name ("User") when that is unambiguous."""
        if name in self.tables:
            return self.tables[name]
        matches = [t for t in self.tables.values() if t.name == name]
        if len(matches) == 1:
            return matches[0]
        known = ", ".join(sorted(self.tables)) or "none"
        raise SnapshotError(f"the snapshot has no table {name!r} (tables: {known})")

    def body(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "tool_version": self.tool_version,
            "created_at": self.created_at,
            "env": self.env,
            "database": self.database,
            "server_version": self.server_version,
            "schemas": self.schemas,
            "migrations": self.migrations,
            "schema_fingerprint": self.schema_fingerprint,
            "schema_sql_sha256": self.schema_sql_sha256,
            "reason": self.reason,
            "excluded_tables": self.excluded_tables,
            "bookkeeping_tables": self.bookkeeping_tables,
            "sequences": self.sequences,
            "tables": {k: t.as_dict() for k, t in self.tables.items()},
            "schema_objects": self.schema_objects,
        }

    def as_dict(self) -> dict[str, Any]:
        body = self.body()
        return {**body, "manifest_sha256": _body_checksum(body)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        return cls(
            format_version=int(data["format_version"]),
            tool_version=str(data["tool_version"]),
            created_at=str(data["created_at"]),
            env=str(data["env"]),
            database=str(data["database"]),
            server_version=str(data["server_version"]),
            schemas=list(data["schemas"]),
            migrations=list(data["migrations"]),
            schema_fingerprint=str(data["schema_fingerprint"]),
            schema_sql_sha256=str(data.get("schema_sql_sha256", "")),
            reason=str(data.get("reason", "manual")),
            schema_objects=dict(data["schema_objects"]),
            tables={k: TableEntry.from_dict(v) for k, v in dict(data["tables"]).items()},
            excluded_tables=list(data.get("excluded_tables", [])),
            bookkeeping_tables=list(data.get("bookkeeping_tables", [])),
            sequences=list(data.get("sequences", [])),
        )


def _canonical(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _body_checksum(body: dict[str, Any]) -> str:
    return hashlib.sha256(_canonical(body)).hexdigest()


def _fsync_dir(path: Path) -> None:
    # Directory fsync makes the rename durable; not every platform allows opening a directory.
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_manifest(directory: Path, manifest: Manifest) -> Path:
    """Write manifest.json durably: to a side file, fsync, then rename over the final name."""
    target = directory / MANIFEST
    side = directory / f".{MANIFEST}.part"
    text = json.dumps(manifest.as_dict(), indent=2, ensure_ascii=False, sort_keys=False)
    with side.open("w", encoding="utf-8") as fh:
        fh.write(text + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(side, target)
    _fsync_dir(directory)
    return target


def read_manifest(directory: Path) -> Manifest:
    """The manifest of a snapshot directory, or SnapshotError saying why it cannot be used."""
    path = directory / MANIFEST
    if not directory.is_dir():
        raise SnapshotError(f"{directory} is not a snapshot directory")
    if not path.is_file():
        raise SnapshotError(
            f"{directory} has no {MANIFEST}: an incomplete snapshot (a crashed or running "
            "export); it is never loaded"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SnapshotError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise SnapshotError(f"{path} is not a snapshot manifest")
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise SnapshotError(
            f"{path} has format version {version!r}; this dbtools reads version {FORMAT_VERSION}"
        )
    stored = data.pop("manifest_sha256", None)
    if stored != _body_checksum(data):
        raise SnapshotError(
            f"{path} was changed after it was written (its checksum does not match); "
            "the snapshot cannot be trusted"
        )
    try:
        return Manifest.from_dict(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise SnapshotError(f"{path} is missing or has a malformed field: {exc}") from None


def _parquet_problems(path: Path, rel: str) -> tuple[int | None, list[str]]:
    """Read every row group of a Parquet file; return its row count or what is wrong."""
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
        rows = 0
        for i in range(pf.num_row_groups):
            rows += pf.read_row_group(i).num_rows
        return rows, []
    except Exception as exc:  # pyarrow raises several types for damaged files
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return None, [f"{rel}: not a readable Parquet file ({first})"]


def verify_dir(directory: Path, *, read_data: bool = True) -> tuple[Manifest | None, list[str]]:
    """Check a snapshot: manifest intact, every file present with its checksum, Parquet readable
    and holding the manifest's row counts. Returns (manifest or None, problems)."""
    try:
        manifest = read_manifest(directory)
    except SnapshotError as exc:
        return None, [exc.message]
    problems: list[str] = []
    listed: set[str] = {MANIFEST}
    schema_sql = directory / SCHEMA_SQL
    listed.add(SCHEMA_SQL)
    if not schema_sql.is_file():
        problems.append(f"{SCHEMA_SQL} is missing")
    elif manifest.schema_sql_sha256 and sha256_file(schema_sql) != manifest.schema_sql_sha256:
        problems.append(f"{SCHEMA_SQL}: checksum mismatch (the file changed or is damaged)")
    for key, entry in manifest.tables.items():
        if entry.key != key:
            problems.append(f"manifest: table entry {key!r} names {entry.key!r}")
        file_rows = 0
        unreadable = False
        for rel, checksum in entry.files.items():
            listed.add(rel)
            path = directory / rel
            if Path(rel).is_absolute() or ".." in Path(rel).parts:
                problems.append(f"manifest: file {rel!r} of {key} lies outside the snapshot")
                unreadable = True
                continue
            if not path.is_file():
                problems.append(f"{rel}: missing (table {key})")
                unreadable = True
                continue
            if sha256_file(path) != checksum:
                problems.append(f"{rel}: checksum mismatch (table {key}; truncated or damaged)")
            if read_data:
                rows, bad = _parquet_problems(path, rel)
                problems += bad
                if rows is None:
                    unreadable = True
                else:
                    file_rows += rows
        if read_data and not unreadable and file_rows != entry.rows:
            problems.append(
                f"{key}: the manifest says {entry.rows} rows, its files hold {file_rows}"
            )
    for path in sorted(directory.rglob("*.parquet")):
        rel = path.relative_to(directory).as_posix()
        if rel not in listed:
            problems.append(f"{rel}: not listed in the manifest")
    return manifest, problems


def new_temp_dir(env_dir: Path) -> Path:
    """A fresh build directory next to where the snapshot will land (same filesystem)."""
    env_dir.mkdir(parents=True, exist_ok=True)
    path = env_dir / f"{TMP_PREFIX}{stamp_of(utc_now())}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    path.mkdir()
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
    for path in directory.rglob("*"):
        if path.is_file():
            with path.open("rb") as fh:
                os.fsync(fh.fileno())
    for sub in [directory, *(p for p in directory.rglob("*") if p.is_dir())]:
        _fsync_dir(sub)


def publish(temp: Path, env_dir: Path, created: datetime) -> Path:
    """Rename a complete build directory to its stamp (never over an existing snapshot)."""
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
    shutil.rmtree(path, ignore_errors=True)


def snapshot_dirs(env_dir: Path) -> Iterable[Path]:
    """Published snapshot directories of one environment (build directories left out)."""
    if not env_dir.is_dir():
        return []
    return sorted(p for p in env_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
