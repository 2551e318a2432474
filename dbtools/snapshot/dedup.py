"""An unchanged table is not written again: its files are the previous snapshot's.

Every sync takes two full snapshots; without this the archive grows with the number of syncs,
not with what changed. When a snapshot is taken, the newest earlier snapshot of the same
database (same source identity, same env directory, a manifest that reads and records its
snapshot's xmin) is the candidate. A table is reused from it when, in the new snapshot's own
consistent view,

- its columns are planned exactly as the previous snapshot stored them (name, PostgreSQL
  type, Arrow type and encoding; a column the previous export had to keep as text because a
  value did not fit its native type may still be reused: the same values still do not fit),
- it holds the same number of rows, and none of them is newer than the previous snapshot's
  xmin (dbtools.xid: a row never changes without a new version; a delete changes the count).

Its files are then hard-linked into the new snapshot (no byte is written or copied; each
linked file is checked against the sha256 the previous manifest recorded), and the new
manifest takes the previous entry's row count, columns and content hash. Snapshot files are
never modified once published, so a link is as good as a copy, and deleting a snapshot
(prune) only removes its names: a file lives as long as one kept snapshot refers to it.
Anything unexpected (no hard links on this filesystem, a file that does not match) and the
table is exported as usual: reuse only ever saves work.

In an archive in object storage (snapshot/store.py) there are no hard links, and no byte is
copied either: the new manifest's entry names the snapshot whose prefix holds the files
(`stored_in`, the previous entry's own or the previous snapshot's stamp), each file checked to
be there with the size recorded; prune deletes an object only when no kept manifest names it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2

from dbtools import catalog, db
from dbtools.errors import SnapshotError
from dbtools.snapshot import format as fmt
from dbtools.snapshot import types
from dbtools.snapshot.encryption import snapshot_key_id
from dbtools.snapshot.export import TableExport
from dbtools.snapshot.parquet_files import Dest
from dbtools.snapshot.upload import RemoteBuild
from dbtools.xid import newer_than

_STORAGE = ("arrow_type", "encoding", "fallback")  # how a column is stored, beside what it is


@dataclass
class Reused(TableExport):
    """An export that wrote nothing: the previous snapshot's files, linked (same fields);
    in object storage, the stamp whose prefix holds them (TableEntry.stored_in)."""

    stored_in: str | None = field(default=None)


@dataclass
class Previous:
    path: Path
    manifest: fmt.Manifest


def previous(env_dir: Path, identity: db.Identity, key_id: str | None) -> Previous | None:
    """The newest snapshot in env_dir of the database `identity` names that can serve: its
    files encrypted under the key the new snapshot is written with (`key_id`; None for
    plaintext), so that a snapshot never holds a file of another key (or none when it should)."""
    for path in reversed(list(fmt.snapshot_dirs(env_dir))):
        if path.is_symlink() or not fmt.is_stamp(path.name):
            continue
        try:
            manifest = fmt.read_manifest(path)
        except (SnapshotError, OSError, ValueError):  # `snapshot verify` reports a broken one
            continue
        if (
            manifest.snapshot_xmin is not None
            and fmt.same_source(manifest.source, identity)
            and snapshot_key_id(manifest) == key_id
        ):
            return Previous(path, manifest)
    return None


def _same_columns(planned: list[dict[str, Any]], stored: list[dict[str, Any]]) -> bool:
    if len(planned) != len(stored):
        return False
    for want, have in zip(planned, stored, strict=True):
        if want == have:
            continue
        if not have.get("fallback"):
            return False
        if {k: v for k, v in want.items() if k not in _STORAGE} != {
            k: v for k, v in have.items() if k not in _STORAGE
        }:
            return False
    return True


def _link(source: Path, target: Path, sha256: str) -> bool:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        return False
    if fmt.sha256_file(target) != sha256:
        target.unlink()
        return False
    return True


def reuse(
    conn: psycopg2.extensions.connection, table: catalog.Table, prev: Previous, dest: Dest
) -> Reused | None:
    """The table's files linked from `prev` into `dest` when it is unchanged (module doc);
    None when it must be exported. conn is inside the new snapshot's transaction."""
    entry = prev.manifest.tables.get(table.key)
    xmin = prev.manifest.snapshot_xmin
    if entry is None or xmin is None or not entry.files:
        return None
    planned = [p.as_manifest() for p in types.plan_table(table)]
    if not _same_columns(planned, list(entry.columns)):
        return None
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT count(*), count(*) FILTER (WHERE {newer_than('t', xmin)}) FROM {table.only} t"
        )
        row = cur.fetchone()
    if row is None or row[0] != entry.rows or row[1]:
        return None
    stored_in = None
    if isinstance(dest, RemoteBuild):
        stored_in = dest.reuse(prev.path.name, entry)
        if stored_in is None:
            return None
    else:
        linked: list[Path] = []
        for rel, sha in entry.files.items():
            target = dest / rel
            if not _link(prev.path / rel, target, sha):
                for done in linked:
                    done.unlink(missing_ok=True)
                return None
            linked.append(target)
    return Reused(
        table=table.key,
        rows=entry.rows,
        files=list(entry.files),
        bytes=entry.bytes,
        columns=list(entry.columns),
        content_hash=entry.content_hash,
        fallbacks=[str(c["name"]) for c in entry.columns if c.get("fallback")],
        stored_in=stored_in,
        key_salt=entry.key_salt,
    )
