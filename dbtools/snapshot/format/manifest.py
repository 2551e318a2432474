"""The manifest: every field validated on read, self-checksummed, the source identity."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from dbtools.config import ENVS
from dbtools.errors import SnapshotError
from dbtools.snapshot.format.fields import (
    _columns,
    _count,
    _created,
    _dict,
    _encryption,
    _hex,
    _key,
    _Malformed,
    _need,
    _sequences,
    _sha256,
    _show,
    _source,
    _str,
    _strings,
    check_relative_name,
)
from dbtools.snapshot.format.layout import FORMAT_VERSION, MANIFEST, is_stamp, stamp_of
from dbtools.snapshot.format.lifecycle import _fsync_dir, _private_file


def source_of(identity: Any) -> dict[str, Any]:
    """The manifest's `source` for a db.Identity (or an equivalent mapping)."""

    def get(key: str) -> Any:
        return identity[key] if isinstance(identity, dict) else getattr(identity, key)

    return {
        "system_identifier": get("system_identifier"),
        "database_oid": int(get("database_oid")),
        "database": str(get("database")),
    }


def same_source(source: dict[str, Any] | None, identity: Any) -> bool:
    """Whether a manifest's source is the database `identity` names: same cluster (system
    identifier) and same database oid. Where the server hides its system identifier (a
    managed service may revoke pg_control_system), the database name must match as well."""
    if source is None:
        return False
    want = source_of(identity)
    if source.get("database_oid") != want["database_oid"]:
        return False
    if source.get("system_identifier") is None or want["system_identifier"] is None:
        return (
            source.get("system_identifier") == want["system_identifier"]
            and source.get("database") == want["database"]
        )
    return bool(source.get("system_identifier") == want["system_identifier"])


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
    # The primary key's columns, in key order; empty for a table without one (and in
    # snapshots written before dbtools recorded it). `dbtools plan` matches rows on it.
    primary_key: list[str] = field(default_factory=list)
    # Only in an archive in object storage (snapshot/store.py): the stamp of the earlier
    # snapshot of the same env folder whose prefix holds these files, for a table reused
    # unchanged (snapshot.dedup). Absent: the files are the snapshot's own.
    stored_in: str | None = None
    # An encrypted snapshot's files: the salt their key is derived with (snapshot.encryption);
    # "" in a plaintext snapshot, where it is left out of the manifest.
    key_salt: str = ""

    @property
    def key(self) -> str:
        return f"{self.schema}.{self.name}"

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if self.stored_in is None:  # manifests without it read and checksum as before
            del out["stored_in"]
        if not self.key_salt:
            del out["key_salt"]
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str = "table") -> TableEntry:
        """A validated entry; _Malformed names the first field that is wrong."""
        data = _dict(data, where)
        files: dict[str, str] = {}
        for rel, checksum in _dict(_need(data, "files", where), f"{where}.files").items():
            why = check_relative_name(rel)
            if why:
                raise _Malformed(_key(f"{where}.files", rel), why)
            files[rel] = _sha256(checksum, _key(f"{where}.files", rel))
        return cls(
            schema=_str(_need(data, "schema", where), f"{where}.schema", empty=False),
            name=_str(_need(data, "name", where), f"{where}.name", empty=False),
            rows=_count(_need(data, "rows", where), f"{where}.rows"),
            bytes=_count(_need(data, "bytes", where), f"{where}.bytes"),
            files=files,
            columns=_columns(_need(data, "columns", where), f"{where}.columns"),
            content_hash=_str(_need(data, "content_hash", where), f"{where}.content_hash"),
            sequences=_sequences(data.get("sequences", []), f"{where}.sequences"),
            primary_key=_strings(data.get("primary_key", []), f"{where}.primary_key", empty=False),
            stored_in=_stored_in(data.get("stored_in"), f"{where}.stored_in"),
            key_salt=_hex(data["key_salt"], f"{where}.key_salt", 32) if "key_salt" in data else "",
        )


def _stored_in(value: Any, where: str) -> str | None:
    """A sibling snapshot's stamp: one name, never a path (nothing outside the env folder)."""
    if value is None:
        return None
    if not is_stamp(_str(value, where, empty=False)):
        raise _Malformed(where, f"expected a snapshot stamp, got {_show(value)}")
    return str(value)


# A backup taken by a rollback holds the state that rollback replaced: never a rollback target.
ROLLBACK_REASON = "before rollback"


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
    # Which database was snapshotted: {"system_identifier", "database_oid", "database"} from
    # db.identity. None in manifests written before it was recorded ("unknown source"): such
    # a snapshot is never taken for a backup of a given database.
    source: dict[str, Any] | None = None
    # The xmin of the snapshot the rows were read in (dbtools.xid): the next snapshot of the
    # same source proves a table unchanged against it and reuses its files (snapshot.dedup).
    snapshot_xmin: int | None = None
    # {"scheme", "key_id"} when the files are encrypted (snapshot.encryption); None: plaintext.
    encryption: dict[str, str] | None = None
    format_version: int = FORMAT_VERSION

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.tables.values())

    @property
    def bytes(self) -> int:
        return sum(t.bytes for t in self.tables.values())

    def sequence_values(self, skip: set[str] | frozenset[str] = frozenset()) -> dict[str, Any]:
        """sequence -> [last_value, is_called], those owned by a table and the free ones,
        leaving out the sequences of the `skip` tables."""
        out: dict[str, Any] = {}
        owned = [s for key, e in self.tables.items() if key not in skip for s in e.sequences]
        for seq in [*owned, *self.sequences]:
            out[str(seq["name"])] = [seq.get("last_value"), seq.get("is_called")]
        return out

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
        body: dict[str, Any] = {
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
        if self.source is not None:
            body["source"] = self.source
        if self.snapshot_xmin is not None:
            body["snapshot_xmin"] = self.snapshot_xmin
        if self.encryption is not None:
            body["encryption"] = self.encryption
        return body

    def as_dict(self) -> dict[str, Any]:
        body = self.body()
        return {**body, "manifest_sha256": _body_checksum(body)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        """A validated manifest; _Malformed names the first field that is wrong (see _validate
        for the rules that tie fields together)."""
        data = _dict(data, "manifest")
        version = _need(data, "format_version", "")
        if version != FORMAT_VERSION or isinstance(version, bool):
            raise _Malformed("format_version", f"expected {FORMAT_VERSION}, got {_show(version)}")
        tables = {
            _str(k, "tables", empty=False): TableEntry.from_dict(v, _key("tables", k))
            for k, v in _dict(_need(data, "tables", ""), "tables").items()
        }
        objects = _dict(_need(data, "schema_objects", ""), "schema_objects")
        for k, v in objects.items():
            _str(v, _key("schema_objects", k))
        created_at = _str(_need(data, "created_at", ""), "created_at", empty=False)
        _created(created_at, "created_at")
        manifest = cls(
            format_version=FORMAT_VERSION,
            tool_version=_str(_need(data, "tool_version", ""), "tool_version"),
            created_at=created_at,
            env=_str(_need(data, "env", ""), "env", empty=False),
            database=_str(_need(data, "database", ""), "database", empty=False),
            server_version=_str(_need(data, "server_version", ""), "server_version"),
            schemas=_strings(_need(data, "schemas", ""), "schemas", empty=False),
            migrations=_strings(_need(data, "migrations", ""), "migrations", empty=False),
            schema_fingerprint=_str(_need(data, "schema_fingerprint", ""), "schema_fingerprint"),
            schema_sql_sha256=_sha256(
                data.get("schema_sql_sha256", ""), "schema_sql_sha256", empty=True
            ),
            reason=_str(data.get("reason", "manual"), "reason", empty=False),
            schema_objects=dict(objects),
            tables=tables,
            excluded_tables=_strings(data.get("excluded_tables", []), "excluded_tables"),
            bookkeeping_tables=_strings(data.get("bookkeeping_tables", []), "bookkeeping_tables"),
            sequences=_sequences(data.get("sequences", []), "sequences"),
            source=_source(data.get("source"), "source"),
            snapshot_xmin=(
                None
                if data.get("snapshot_xmin") is None
                else _count(data["snapshot_xmin"], "snapshot_xmin")
            ),
            encryption=_encryption(data.get("encryption"), "encryption"),
        )
        manifest._validate()
        return manifest

    def _validate(self) -> None:
        """Rules across fields: what a restore touches lies in the schemas the snapshot covers."""
        if self.env not in ENVS:
            raise _Malformed("env", f"expected one of {', '.join(ENVS)}, got {_show(self.env)}")
        schemas = set(self.schemas)
        seen_files: set[str] = set()
        seen_seqs: set[str] = set()

        def sequence_in_schemas(seq: dict[str, Any], where: str) -> None:
            schema = seq["name"].split(".", 1)[0]
            if schema not in schemas:
                raise _Malformed(
                    f"{where}.name",
                    f"sequence {_show(seq['name'])} lies outside the snapshot's schemas "
                    f"({', '.join(self.schemas)})",
                )
            if seq["name"] in seen_seqs:
                raise _Malformed(f"{where}.name", f"sequence {_show(seq['name'])} is listed twice")
            seen_seqs.add(seq["name"])

        for key, entry in self.tables.items():
            where = _key("tables", key)
            if entry.key != key:
                raise _Malformed(where, f"the entry names table {_show(entry.key)}")
            if entry.schema not in schemas:
                raise _Malformed(
                    f"{where}.schema",
                    f"{_show(entry.schema)} is not one of the snapshot's schemas "
                    f"({', '.join(self.schemas)})",
                )
            if entry.key_salt and self.encryption is None:
                raise _Malformed(f"{where}.key_salt", "present in a plaintext snapshot")
            if entry.files and not entry.key_salt and self.encryption is not None:
                raise _Malformed(f"{where}.key_salt", "missing (the snapshot is encrypted)")
            for rel in entry.files:
                if rel in seen_files:
                    raise _Malformed(_key(f"{where}.files", rel), "is listed by two tables")
                seen_files.add(rel)
            for i, seq in enumerate(entry.sequences):
                w = f"{where}.sequences[{i}]"
                sequence_in_schemas(seq, w)
                owner = seq["owned_by"]
                if owner is None or not owner.startswith(f"{key}."):
                    raise _Malformed(
                        f"{w}.owned_by", f"{_show(owner)} is not a column of table {key}"
                    )
        for i, seq in enumerate(self.sequences):
            w = f"sequences[{i}]"
            sequence_in_schemas(seq, w)
            owner = seq["owned_by"]
            if owner is not None and owner.rsplit(".", 1)[0] in self.tables:
                raise _Malformed(
                    f"{w}.owned_by", f"{_show(owner)} belongs to a table of the snapshot"
                )


def _canonical(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _body_checksum(body: dict[str, Any]) -> str:
    return hashlib.sha256(_canonical(body)).hexdigest()


def write_manifest(directory: Path, manifest: Manifest) -> Path:
    """Write manifest.json durably: to a side file, fsync, then rename over the final name."""
    target = directory / MANIFEST
    side = directory / f".{MANIFEST}.part"
    text = json.dumps(manifest.as_dict(), indent=2, ensure_ascii=False, sort_keys=False)
    with _private_file(side) as fh:
        fh.write(text + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(side, target)
    _fsync_dir(directory)
    return target


def _symlink_problem(directory: Path) -> str | None:
    if directory.is_symlink():
        return (
            f"{directory} is a symbolic link; a snapshot is read only from a real directory "
            "(pass the directory it points to)"
        )
    return None


def manifest_sha256(path: Path) -> str | None:
    """The checksum a snapshot's manifest carries of itself (what prod's history records)."""
    try:
        data = json.loads((Path(path) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = data.get("manifest_sha256") if isinstance(data, dict) else None
    return str(value) if value else None


def read_manifest(directory: Path) -> Manifest:
    """The manifest of a snapshot directory, or SnapshotError saying why it cannot be used.

    Every field is validated (types, required keys, file names inside the snapshot, tables
    and sequences inside the recorded schemas, created_at sane and matching the stamp), so
    callers may index it freely.
    """
    path = directory / MANIFEST
    link = _symlink_problem(directory)
    if link:
        raise SnapshotError(link)
    if not directory.is_dir():
        raise SnapshotError(f"{directory} is not a snapshot directory")
    if path.is_symlink():
        raise SnapshotError(f"{path} is a symbolic link; the snapshot cannot be trusted")
    if not path.is_file():
        raise SnapshotError(
            f"{directory} has no {MANIFEST}: an incomplete snapshot (a crashed or running "
            "export); it is never loaded"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise SnapshotError(f"{path} is not valid JSON: {first}") from None
    if not isinstance(data, dict):
        raise SnapshotError(f"{path} is not a snapshot manifest")
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise SnapshotError(
            f"{path} has format version {_show(version)}; this dbtools reads version "
            f"{FORMAT_VERSION}"
        )
    stored = data.pop("manifest_sha256", None)
    if stored != _body_checksum(data):
        raise SnapshotError(
            f"{path} was changed after it was written (its checksum does not match); "
            "the snapshot cannot be trusted"
        )
    try:
        manifest = Manifest.from_dict(data)
    except _Malformed as exc:
        raise SnapshotError(f"{path}: malformed field {exc.where}: {exc.problem}") from None
    if is_stamp(directory.name) and directory.name.split("-")[0] != stamp_of(manifest.created):
        raise SnapshotError(
            f"{path}: malformed field created_at: {_show(manifest.created_at)} does not match "
            f"the directory's stamp {directory.name}"
        )
    return manifest
