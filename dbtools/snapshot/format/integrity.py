"""Whether a snapshot directory is what its manifest says: files, checksums, Parquet, rows."""

from __future__ import annotations

import contextlib
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dbtools.config.archive import archives_in_object_storage
from dbtools.errors import SnapshotError
from dbtools.snapshot.format.fields import check_relative_name
from dbtools.snapshot.format.layout import MANIFEST, SCHEMA_SQL, _walk, sha256_file
from dbtools.snapshot.format.manifest import Manifest, TableEntry, read_manifest

# A snapshot of an archive in object storage is read through a private local copy whose
# files arrive only when something reads them: snapshot/store.py registers what fetches them
# (returning the problems found on the way), run before any file of a snapshot is read.
_fetchers: list[Callable[[Path], list[str]]] = []


def on_read(fetch: Callable[[Path], list[str]]) -> None:
    if fetch not in _fetchers:
        _fetchers.append(fetch)


def _fetch(directory: Path) -> list[str]:
    if not _fetchers and archives_in_object_storage():
        # Every module that hands out such a snapshot imports store (which registers its
        # hook); this is the safety net. Never at import time: `python -m dbtools` imports
        # the package before its signal handling is in place, so the package stays light.
        import dbtools.snapshot.store  # noqa: F401
    return [problem for fetch in _fetchers for problem in fetch(directory)]


def file_problem(directory: Path, rel: str) -> str | None:
    """Why `rel` (a name the manifest lists) is not a regular file inside the snapshot, or None.

    Every component is checked with lstat: a symlink anywhere on the way (a part folder, the
    file itself) is refused, so no file outside the snapshot is ever read.
    """
    why = check_relative_name(rel)
    if why:
        return f"{rel}: {why}"
    current = directory
    parts = rel.split("/")
    for n, part in enumerate(parts):
        current = current / part
        try:
            st = current.lstat()
        except FileNotFoundError:
            return f"{rel}: missing"
        except OSError as exc:
            return f"{rel}: cannot be read ({exc.strerror or exc})"
        if stat.S_ISLNK(st.st_mode):
            shown = "/".join(parts[: n + 1])
            return f"{rel}: {shown} is a symbolic link; a snapshot holds only its own files"
        last = n == len(parts) - 1
        if last and not stat.S_ISREG(st.st_mode):
            return f"{rel}: not a regular file"
        if not last and not stat.S_ISDIR(st.st_mode):
            return f"{rel}: {'/'.join(parts[: n + 1])} is not a directory"
    with contextlib.suppress(OSError, ValueError):
        current.resolve().relative_to(directory.resolve())
        return None
    return f"{rel}: lies outside the snapshot"


def table_files(directory: Path, entry: TableEntry) -> list[Path]:
    """The files of one table, each checked to lie inside the snapshot (SnapshotError if not).

    For readers that do not verify the whole snapshot first (query, read_snapshot)."""
    for fetched in _fetch(directory):  # a download that did not match: never read
        if fetched.split(":", 1)[0] in entry.files:
            raise SnapshotError(f"snapshot {directory}: table {entry.key}: {fetched}")
    out: list[Path] = []
    for rel in entry.files:
        problem = file_problem(directory, rel)
        if problem:
            raise SnapshotError(f"snapshot {directory}: table {entry.key}: {problem}")
        out.append(directory / rel)
    return out


def _parquet_problems(path: Path, rel: str, decryption: Any) -> tuple[int | None, list[str]]:
    """Read every row group of a Parquet file; return its row count or what is wrong."""
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path, decryption_properties=decryption)
        rows = 0
        for i in range(pf.num_row_groups):
            rows += pf.read_row_group(i).num_rows
        return rows, []
    except Exception as exc:  # pyarrow raises several types for damaged files
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return None, [f"{rel}: not a readable Parquet file ({first})"]


def verify_dir(directory: Path, *, read_data: bool = True) -> tuple[Manifest | None, list[str]]:
    """Check a snapshot: manifest intact and valid, every file present inside the directory
    (no symlink anywhere) with its checksum, Parquet readable and holding the manifest's row
    counts. Returns (manifest or None, problems). An encrypted snapshot whose key is not
    configured raises encryption.KeyUnavailable (one line naming the key id needed)."""
    from dbtools.snapshot import encryption

    _fetch(directory)  # what it finds is found again below, in this function's words
    try:
        manifest = read_manifest(directory)
    except SnapshotError as exc:
        return None, [exc.message]
    if read_data:
        encryption.master_key(directory, manifest)
    problems: list[str] = []
    for entry_path, st in _walk(directory):
        if stat.S_ISLNK(st.st_mode):
            rel = entry_path.relative_to(directory).as_posix()
            problems.append(f"{rel}: a symbolic link; a snapshot holds only its own files")
    listed: set[str] = {MANIFEST, SCHEMA_SQL}
    schema_sql = directory / SCHEMA_SQL
    if schema_sql.is_symlink():
        pass  # reported by the walk above; never read
    elif not schema_sql.is_file():
        problems.append(f"{SCHEMA_SQL} is missing")
    elif manifest.schema_sql_sha256 and sha256_file(schema_sql) != manifest.schema_sql_sha256:
        problems.append(f"{SCHEMA_SQL}: checksum mismatch (the file changed or is damaged)")
    for key, entry in manifest.tables.items():
        file_rows = 0
        unreadable = False
        for rel, checksum in entry.files.items():
            listed.add(rel)
            path = directory / rel
            problem = file_problem(directory, rel)
            if problem:
                if problem.endswith(": missing"):
                    problem = f"{problem} (table {key})"
                if "symbolic link" not in problem:  # the walk reported it already
                    problems.append(problem)
                unreadable = True
                continue
            if sha256_file(path) != checksum:
                problems.append(f"{rel}: checksum mismatch (table {key}; truncated or damaged)")
            if read_data:
                rows, bad = _parquet_problems(
                    path, rel, encryption.decryption(directory, manifest, entry)
                )
                problems += bad
                if rows is None:
                    unreadable = True
                else:
                    file_rows += rows
        if read_data and not unreadable and file_rows != entry.rows:
            problems.append(
                f"{key}: the manifest says {entry.rows} rows, its files hold {file_rows}"
            )
    for path, st in _walk(directory):
        rel = path.relative_to(directory).as_posix()
        if rel.endswith(".parquet") and stat.S_ISREG(st.st_mode) and rel not in listed:
            problems.append(f"{rel}: not listed in the manifest")
    return manifest, problems
