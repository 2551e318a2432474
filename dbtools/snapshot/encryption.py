"""Encryption at rest of the archive: the one place that decides what is encrypted and how.

With `DBTOOLS_ARCHIVE_KEY` set (base64 of 32 random bytes), every new snapshot is written
encrypted; without it, snapshots are written as before. Old keys
(`DBTOOLS_ARCHIVE_OLD_KEYS`, comma-separated) only ever read.

- Parquet files: Parquet Modular Encryption (pyarrow), uniform AES-GCM of every column and
  of the footer (schema, statistics), under a key of its own per table export: HKDF-SHA256
  of the master key with a random 16-byte salt the manifest records (`key_salt`). One key
  per export keeps AES-GCM's random nonces far from their limit. DuckDB scans the files as
  a decrypting pyarrow dataset (`TableSecret.dataset`), and where it needs its own reader's
  file row numbers (staging) reads them itself with the key (`duckdb_option`), except a
  file with a list column, whose AES tag DuckDB 2.0 computes differently (query.table_source).
  (pyarrow's CryptoFactory wraps per-file keys with a KMS, which DuckDB cannot read.)
- schema.sql (DDL with defaults and comments) and saved plans (rows' keys): an envelope,
  AES-256-GCM in chunks with the STREAM construction (counter nonce, last-chunk flag): a truncated,
  reordered or edited file is refused. Its header holds the key id and the salt.
- The manifest stays readable without the key (table names, row counts, hashes, column
  names and types): it is what decides which key to use. It records the key id, a
  non-secret HMAC of the key, so a reader picks the right key among the current and old
  ones, and a missing or wrong key is refused with one line naming the id needed.

Never a plaintext fallback: configured but unusable (malformed key, no `cryptography`, a
pyarrow without Parquet encryption) is a ConfigError raised by `for_writing` before anything
is written, after a round trip that proves this process encrypts.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import io
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dbtools.config.redaction import register_secret
from dbtools.errors import ConfigError, SnapshotError

if TYPE_CHECKING:
    from dbtools.snapshot.format.manifest import Manifest, TableEntry

KEY_ENV = "DBTOOLS_ARCHIVE_KEY"
OLD_KEYS_ENV = "DBTOOLS_ARCHIVE_OLD_KEYS"
SCHEME = "pme-uniform-aes-gcm/hkdf-sha256+envelope-v1"
KEY_BYTES = 32
SALT_BYTES = 16
GENERATE = (
    'python -c "import secrets,base64;print(base64.b64encode(secrets.token_bytes(32)).decode())"'
)

_PARQUET_INFO = b"dbtools parquet v1"
_ENVELOPE_INFO = b"dbtools envelope v1"
_MAGIC = b"DBTOOLS-ENC1\n"
_CHUNK = 64 << 10
_TAG = 16


class KeyUnavailable(ConfigError):
    """An encrypted snapshot and no key (or the wrong one) to read it: exit 2, one line."""


def key_id(key: bytes) -> str:
    """The key's public name: 16 hex digits of HMAC-SHA256(key, "dbtools key id")."""
    return hmac.new(key, b"dbtools key id", hashlib.sha256).hexdigest()[:16]


def _decode(raw: str, name: str) -> bytes:
    """A key from its base64 text; the error never repeats the value."""
    text = raw.strip()
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        key = b""
        problem = "is not base64"
    else:
        problem = f"decodes to {len(key)} bytes, not {KEY_BYTES}"
    if len(key) != KEY_BYTES:
        raise ConfigError(
            f"{name} {problem}: encryption is configured but cannot be used, nothing was written",
            hint=f"generate a key with: {GENERATE}",
        )
    return key


@dataclass(frozen=True)
class Keyring:
    """The keys of this run: `current` writes and reads, the old ones only read."""

    current: bytes | None = None
    keys: dict[str, bytes] = field(default_factory=dict)  # key id -> key, current included

    @property
    def current_id(self) -> str | None:
        return key_id(self.current) if self.current is not None else None


def keyring(environ: Mapping[str, str] | None = None) -> Keyring:
    """The keys the environment holds, validated; every spelling is registered for
    redaction first, so no error, log or output can show one."""
    env = os.environ if environ is None else environ
    raw_current = env.get(KEY_ENV, "")
    raw_old = [k for k in env.get(OLD_KEYS_ENV, "").split(",") if k.strip()]
    for raw in [raw_current, *raw_old]:
        register_secret(raw.strip())
    if raw_old and not raw_current.strip():
        raise ConfigError(
            f"{OLD_KEYS_ENV} is set but {KEY_ENV} is not: old keys only read; set the current "
            "key too, so that new snapshots are not written unencrypted"
        )
    current = _decode(raw_current, KEY_ENV) if raw_current.strip() else None
    keys: dict[str, bytes] = {}
    for n, raw in enumerate(raw_old):
        old = _decode(raw, f"{OLD_KEYS_ENV} entry {n + 1}")
        keys[key_id(old)] = old
    if current is not None:
        keys[key_id(current)] = current
    return Keyring(current, keys)


def _hkdf(master: bytes, salt: bytes, info: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=salt, info=info).derive(master)


# ---- Parquet -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TableSecret:
    """The key of one table export's files (derived, never the master key)."""

    key: bytes = field(repr=False)

    def decryption(self) -> Any:
        """pyarrow's FileDecryptionProperties (plaintext files refused)."""
        import pyarrow.parquet.encryption as pe

        return pe.create_decryption_properties(self.key)

    def encryption(self) -> Any:
        """pyarrow's FileEncryptionProperties: every column and the footer, AES-GCM."""
        import pyarrow.parquet.encryption as pe

        return pe.create_encryption_properties(self.key, encryption_algorithm="AES_GCM_V1")

    def dataset(self, paths: list[Path]) -> Any:
        """The files as one pyarrow dataset that decrypts as it scans: DuckDB reads it batch
        by batch (projection and filters pushed down), as often as a query needs."""
        import pyarrow.dataset as ds

        options = ds.ParquetFragmentScanOptions(
            pre_buffer=False, decryption_properties=self.decryption()
        )
        return ds.dataset(
            [str(p) for p in paths],
            format=ds.ParquetFileFormat(default_fragment_scan_options=options),
        )

    def nested(self, path: Path) -> bool:
        """Whether the file has a list column: DuckDB 2.0 fails the AES tag of such a column
        in a file pyarrow encrypted (its own reader works for every other column)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pq.ParquetFile(path, decryption_properties=self.decryption()).schema_arrow
        return any(pa.types.is_nested(f.type) for f in schema)

    def duckdb_option(self, con: Any, name: str) -> str:
        """Registers the key with a DuckDB connection; the read_parquet option that uses it.
        (Before `query.lock_down`; DuckDB's error would quote the statement: not shown.)"""
        text = base64.b64encode(self.key).decode()
        register_secret(text)
        name = "dbtools_" + hashlib.sha256(name.encode()).hexdigest()[:16]  # a safe literal
        try:
            con.execute(f"PRAGMA add_parquet_key('{name}', '{text}')")
        except Exception:
            raise SnapshotError("DuckDB refused the snapshot's Parquet key") from None
        return f"encryption_config = {{footer_key: '{name}'}}"


@dataclass(frozen=True)
class TableKey:
    """What a writer needs for one table export: the salt for the manifest and the key."""

    salt: str
    secret: TableSecret


def table_key(ring: Keyring) -> TableKey | None:
    """A fresh key for one table export, or None when snapshots are written unencrypted."""
    if ring.current is None:
        return None
    salt = secrets.token_bytes(SALT_BYTES)
    return TableKey(salt.hex(), TableSecret(_hkdf(ring.current, salt, _PARQUET_INFO)))


def manifest_field(ring: Keyring) -> dict[str, str] | None:
    """The manifest's `encryption` entry (nothing secret in it)."""
    cid = ring.current_id
    return None if cid is None else {"scheme": SCHEME, "key_id": cid}


def snapshot_key_id(manifest: Manifest) -> str | None:
    return None if manifest.encryption is None else str(manifest.encryption["key_id"])


def master_key(directory: Path, manifest: Manifest, ring: Keyring | None = None) -> bytes | None:
    """The master key an encrypted snapshot needs (None for a plaintext one), or one line."""
    wanted = snapshot_key_id(manifest)
    if wanted is None:
        return None
    ring = keyring() if ring is None else ring
    if wanted in ring.keys:
        return ring.keys[wanted]
    name = f"{directory.parent.name}/{directory.name}"
    if not ring.keys:
        raise KeyUnavailable(
            f"snapshot {name} is encrypted (key id {wanted}): set {KEY_ENV} to its key"
        )
    have = ", ".join(sorted(ring.keys))
    raise KeyUnavailable(
        f"snapshot {name} is encrypted with key id {wanted}, not with the configured key(s) "
        f"({have}): set {KEY_ENV} or {OLD_KEYS_ENV} to the key with id {wanted}"
    )


def table_secret(
    directory: Path, manifest: Manifest, entry: TableEntry, ring: Keyring | None = None
) -> TableSecret | None:
    """The key of one table's files, or None when the snapshot is not encrypted."""
    master = master_key(directory, manifest, ring)
    if master is None:
        return None
    return TableSecret(_hkdf(master, bytes.fromhex(entry.key_salt), _PARQUET_INFO))


def decryption(directory: Path, manifest: Manifest, entry: TableEntry) -> Any:
    """pyarrow's decryption_properties for the table's files (None: plaintext)."""
    secret = table_secret(directory, manifest, entry)
    return None if secret is None else secret.decryption()


# ---- schema.sql: the envelope ----------------------------------------------------------------


def _nonce(counter: int, last: bool) -> bytes:
    return counter.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


def seal(data: bytes, master: bytes) -> bytes:
    """data in the envelope: header (magic, key id, salt), then AES-256-GCM chunks."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    salt = secrets.token_bytes(SALT_BYTES)
    header = _MAGIC + key_id(master).encode() + salt
    aead = AESGCM(_hkdf(master, salt, _ENVELOPE_INFO))
    out = io.BytesIO()
    out.write(header)
    chunks = [data[i : i + _CHUNK] for i in range(0, len(data), _CHUNK)] or [b""]
    for n, chunk in enumerate(chunks):
        out.write(aead.encrypt(_nonce(n, n == len(chunks) - 1), chunk, header))
    return out.getvalue()


def unseal(blob: bytes, ring: Keyring, what: str) -> bytes:
    """The envelope's content; a damaged, truncated or edited one is a SnapshotError."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    size = len(_MAGIC) + 16 + SALT_BYTES
    header = blob[:size]
    if len(header) < size or not header.startswith(_MAGIC):
        raise SnapshotError(f"{what} is not an encrypted dbtools file")
    kid = header[len(_MAGIC) : len(_MAGIC) + 16].decode("ascii", "replace")
    if kid not in ring.keys:
        raise KeyUnavailable(f"{what} is encrypted (key id {kid}): set {KEY_ENV} to its key")
    aead = AESGCM(_hkdf(ring.keys[kid], header[-SALT_BYTES:], _ENVELOPE_INFO))
    body, step = blob[size:], _CHUNK + _TAG
    pieces = [body[i : i + step] for i in range(0, len(body), step)] or [b""]
    out = io.BytesIO()
    try:
        for n, piece in enumerate(pieces):
            out.write(aead.decrypt(_nonce(n, n == len(pieces) - 1), piece, header))
    except (InvalidTag, ValueError):
        raise SnapshotError(f"{what} does not decrypt: damaged, truncated or edited") from None
    return out.getvalue()


def read_text(path: Path, directory: Path, manifest: Manifest) -> str:
    """A text file of the snapshot, opened as its manifest says it was written."""
    data = path.read_bytes()
    if manifest.encryption is not None:
        master_key(directory, manifest)  # the one-line refusal when the key is missing
        data = unseal(data, keyring(), f"{directory.name}/{path.name}")
    return data.decode("utf-8")


def protect(text: str, ring: Keyring) -> bytes:
    """A file of the archive that is not a snapshot's but holds row values (a saved plan
    names rows by their keys), as stored: sealed when a key is configured."""
    data = text.encode("utf-8")
    return seal(data, ring.current) if ring.current is not None else data


def unprotect(data: bytes, what: str) -> str:
    """The text of a file `protect` wrote: sealed ones are opened with the configured keys;
    one written without a key reads as it is."""
    if data.startswith(_MAGIC):
        data = unseal(data, keyring(), what)
    return data.decode("utf-8")


# ---- before writing: prove it works -----------------------------------------------------------

_proven: set[str] = set()


def for_writing(environ: Mapping[str, str] | None = None) -> Keyring:
    """The keyring a snapshot is written with. With a key configured, this process must
    encrypt (a Parquet file and an envelope, each round-tripped, the canary absent from the
    bytes) or a ConfigError says why, before anything is written: no plaintext fallback."""
    ring = keyring(environ)
    cid = ring.current_id
    if ring.current is None or cid in _proven:
        return ring
    canary = "dbtools-canary-" + secrets.token_hex(8)
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq

        tk = table_key(ring)
        assert tk is not None
        buf = io.BytesIO()
        pq.write_table(pa.table({"v": [canary]}), buf, encryption_properties=tk.secret.encryption())
        stored = buf.getvalue()
        back = pq.read_table(pa.BufferReader(stored), decryption_properties=tk.secret.decryption())
        sealed = seal(canary.encode(), ring.current)
        ok = (
            canary.encode() not in stored
            and back.column("v").to_pylist() == [canary]
            and canary.encode() not in sealed
            and unseal(sealed, ring, "self-test") == canary.encode()
        )
    except Exception as exc:  # ImportError, pyarrow built without encryption, ...
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(
            f"{KEY_ENV} is set but this installation cannot encrypt ({type(exc).__name__}: "
            f"{first}): nothing was written",
            hint="install dbtools with its dependencies (cryptography, pyarrow with Parquet "
            "encryption)",
        ) from None
    if not ok:
        raise ConfigError(f"{KEY_ENV} is set but encryption failed its self-test: nothing written")
    _proven.add(cid or "")
    return ring
