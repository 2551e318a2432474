"""A snapshot written straight into object storage, streamed: no table on local disk.

ParquetWriter writes into `fs.open_output_stream` (a multipart upload whose parts go out
as they fill) through `HashingSink`, which computes each file's sha256 and size from the
bytes as they pass, so nothing is read back to checksum it. The snapshot's prefix is
`<env>/<stamp>/`; it is published by writing manifest.json LAST: until then every reader
ignores the prefix, and a run that dies leaves only objects that prune removes once they
are older than store.LEFTOVER_AGE. After the upload every own object is read back once,
streamed, and checked against what was written, and every Parquet footer against its row
count, before the manifest goes out.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from dbtools.errors import SnapshotError
from dbtools.snapshot import format as fmt
from dbtools.snapshot.store import Remote, reaching

_CHUNK = 1 << 20


class HashingSink:
    """A write-only file object for pyarrow: every byte goes to the upload and the sha256."""

    def __init__(self, stream: Any, on_close: Callable[[int, str], None]) -> None:
        self._stream = stream
        self._on_close = on_close
        self._digest = hashlib.sha256()
        self.size = 0
        self.closed = False

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self._digest.update(view)
        self._stream.write(view)
        self.size += view.nbytes
        return view.nbytes

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        """Nothing to do: the upload sends its parts as they fill."""

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readable(self) -> bool:
        return False

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._stream.close()  # completes the multipart upload
        self._on_close(self.size, self._digest.hexdigest())


class RemoteBuild:
    """The objects of one snapshot being uploaded, and each one's size and sha256."""

    def __init__(self, remote: Remote, env: str, created: datetime) -> None:
        self.remote = remote
        self.env = env
        self.written: dict[str, tuple[int, str]] = {}
        self.published = False
        self.stamp = _free_stamp(remote, env, fmt.stamp_of(created))

    @property
    def shown(self) -> str:
        return f"{self.remote.location.url}/{self.env}/{self.stamp}"

    def key(self, rel: str) -> str:
        return self.remote.key(self.env, self.stamp, rel)

    def open(self, rel: str) -> HashingSink:
        def record(size: int, sha: str) -> None:
            self.written[rel] = (size, sha)

        with reaching(self.remote.location, "write to"):
            return HashingSink(self.remote.fs.open_output_stream(self.key(rel)), record)

    def write_bytes(self, rel: str, data: bytes) -> None:
        sink = self.open(rel)
        with reaching(self.remote.location, "write to"):
            sink.write(data)
            sink.close()

    def move(self, src: str, dst: str) -> None:
        """A server-side copy (part files: the first file moves under the table's folder)."""
        with reaching(self.remote.location, "write to"):
            self.remote.fs.move(self.key(src), self.key(dst))
        self.written[dst] = self.written.pop(src)

    def delete(self, rel: str) -> None:
        self.written.pop(rel, None)
        with contextlib.suppress(OSError):
            self.remote.fs.delete_file(self.key(rel))

    def size(self, rel: str) -> int:
        return self.written[rel][0]

    def sha256(self, rel: str) -> str:
        return self.written[rel][1]

    def bytes_written(self) -> int:
        return sum(size for size, _ in self.written.values())

    def reuse(self, stamp: str, entry: fmt.TableEntry) -> str | None:
        """Where an earlier snapshot's files of an unchanged table live, when every one of them
        is there with the bytes it recorded; None to export the table instead."""
        import pyarrow.fs as pafs

        where = entry.stored_in or stamp
        with reaching(self.remote.location, "read"):
            infos = self.remote.fs.get_file_info(
                [self.remote.key(self.env, where, rel) for rel in entry.files]
            )
        if any(i.type != pafs.FileType.File for i in infos):
            return None
        if sum(int(i.size or 0) for i in infos) != entry.bytes:
            return None
        return where

    def verify(self, manifest: fmt.Manifest) -> list[str]:
        """Read every own object back (streamed) against what was written; row counts from
        the Parquet footers. Reused files were checked to exist with their size."""
        import pyarrow.parquet as pq

        from dbtools.snapshot import encryption

        problems: list[str] = []
        named = Path(self.env) / self.stamp  # how a missing key's line names the snapshot
        fs = self.remote.fs
        with reaching(self.remote.location, "read"):
            for rel, (size, sha) in sorted(self.written.items()):
                digest, got = hashlib.sha256(), 0
                with fs.open_input_stream(self.key(rel)) as src:
                    while chunk := src.read(_CHUNK):
                        digest.update(chunk)
                        got += len(chunk)
                if got != size or digest.hexdigest() != sha:
                    problems.append(f"{rel}: the uploaded object differs from what was written")
            for key, entry in manifest.tables.items():
                if entry.stored_in is not None:
                    continue
                rows = 0
                # An encrypted footer is read with the table's key, as every reader does.
                sealed = encryption.decryption(named, manifest, entry)
                for rel in entry.files:
                    with fs.open_input_file(self.key(rel)) as fh:
                        footer = pq.ParquetFile(fh, decryption_properties=sealed)
                        rows += footer.metadata.num_rows
                if rows != entry.rows:
                    problems.append(
                        f"{key}: the manifest says {entry.rows} rows, files hold {rows}"
                    )
        return problems

    def publish(self, manifest: fmt.Manifest) -> Path:
        """Write manifest.json last (the snapshot appears), and mirror it locally."""
        text = json.dumps(manifest.as_dict(), indent=2, ensure_ascii=False) + "\n"
        self.write_bytes(fmt.MANIFEST, text.encode("utf-8"))
        self.published = True
        local = self.remote.root / self.env / self.stamp
        fmt.make_private_dir(local)
        fmt.write_manifest(local, manifest)
        return local

    def discard(self) -> None:
        """Best effort: the objects of an upload that did not publish (prune removes what a
        dead connection leaves)."""
        if self.published:
            return
        for rel in list(self.written):
            self.delete(rel)


def _free_stamp(remote: Remote, env: str, base: str) -> str:
    """The stamp, or stamp-N, whose prefix holds no object: a prefix any object already uses
    is another run's (published or not), never mixed with ours. (Two hosts starting a backup
    of one archive in the same second could still pick one name; prod's writers hold the
    sync lock, so only manual runs can race.)"""
    for n in range(1000):
        stamp = base if n == 0 else f"{base}-{n}"
        if not remote.objects(env, stamp):
            return stamp
    raise SnapshotError(f"cannot find a free snapshot name for {base} in the archive")
