"""`snapshot query`: SQL over a snapshot's Parquet files with DuckDB.

Every table becomes a DuckDB view under its bare name ("User") and, for schemas other than
main, also as "schema"."table"; the database is in-memory, so nothing is ever written.

Nothing outside the snapshot is ever read: every file the manifest lists is checked to lie
inside the snapshot directory with no symlink on the way, and DuckDB is then locked to exactly
those files (no other file, no COPY TO, no ATTACH, no extension) before the user's SQL runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dbtools.db import quote_ident
from dbtools.errors import ConfigError, VerificationFailed
from dbtools.snapshot import format as fmt
from dbtools.snapshot.encryption import TableSecret, table_secret


@dataclass
class QueryResult:
    columns: list[str]
    rows: list[list[Any]]
    truncated: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"columns": self.columns, "rows": self.rows, "truncated": self.truncated}


FILE_COLUMN = "__dbtools_file"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _arrow(paths: list[Path], positions: bool = False, secret: TableSecret | None = None) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    parts = []
    for p in paths:
        part = pq.read_table(p, decryption_properties=secret.decryption() if secret else None)
        if positions:  # what read_parquet's file_row_number and filename options add
            at = part.num_columns
            part = part.add_column(at, "__dbtools_row", pa.array(range(part.num_rows), pa.int64()))
            part = part.add_column(at + 1, FILE_COLUMN, pa.array([str(p)] * part.num_rows))
        parts.append(part)
    return pa.concat_tables(parts) if parts else pa.table({})


def _shown(value: Any) -> Any:
    """A BLOB (bytea) as PostgreSQL shows it, `\\x` + hex, in text and in JSON alike."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "\\x" + bytes(value).hex()
    return value


def table_source(
    con: Any,
    label: str,
    paths: list[Path],
    *,
    positions: bool = False,
    columns: Sequence[str] = (),
    secret: TableSecret | None = None,
) -> str:
    """A SELECT over one table's checked Parquet files; with `positions`, each row's number in
    its file and the file's path follow its columns (`columns`, the table's column names, must
    then be given: read_parquet cannot add its row number beside a column of that name).

    A path holding a glob character would be expanded by DuckDB: those files are read with
    pyarrow and registered under `label` instead.

    `secret` decrypts an encrypted snapshot's files (encryption.table_secret). DuckDB scans
    them as a pyarrow dataset that decrypts batch by batch; with `positions`, which only
    read_parquet adds, DuckDB reads them itself with the table's key, or, for a file with a
    list column (which DuckDB cannot decrypt), from memory."""
    names = [str(p) for p in paths]
    clash = positions and any(c.lower() in ("file_row_number", FILE_COLUMN) for c in columns)
    if secret is not None and paths and not positions:
        con.register(label, secret.dataset(paths))
        return f"SELECT * FROM {quote_ident(label)}"
    nested = secret is not None and paths and secret.nested(paths[0])
    if clash or nested or any(c in p for p in names for c in "*?[{"):
        table = _arrow(paths, positions, secret)
        con.register(label, table)
        return f"SELECT * FROM {quote_ident(label)}"
    options = f", file_row_number = true, filename = '{FILE_COLUMN}'" if positions else ""
    if secret is not None:
        options += ", " + secret.duckdb_option(con, f"key_{label}")
    return f"SELECT * FROM read_parquet([{', '.join(map(_literal, names))}]{options})"


def lock_down(con: Any, allowed: list[str]) -> None:
    """From here DuckDB reads exactly `allowed` and nothing else: no other file, no COPY TO,
    no ATTACH, no extension, and the setting itself cannot be changed back."""
    con.execute(f"SET allowed_paths = [{', '.join(map(_literal, allowed))}]")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


def query_snapshot(path: Path, sql: str, *, limit: int | None = 1000) -> QueryResult:
    """Run one SQL statement over the snapshot; at most `limit` rows are returned."""
    try:
        import duckdb
    except ImportError:
        raise ConfigError(
            "snapshot query needs DuckDB, which is not installed",
            hint="reinstall dbtools (pip install duckdb)",
        ) from None
    directory = Path(path)
    manifest = fmt.read_manifest(directory)
    files = {key: fmt.table_files(directory, entry) for key, entry in manifest.tables.items()}
    secrets = {k: table_secret(directory, manifest, e) for k, e in manifest.tables.items()}
    con = duckdb.connect(":memory:")
    try:
        schemas = {t.schema for t in manifest.tables.values()} - {"main"}
        for schema in sorted(schemas):
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}")
        allowed: list[str] = []
        for n, (key, entry) in enumerate(manifest.tables.items()):
            source = table_source(
                con, f"__dbtools_{n}_{entry.name}", files[key], secret=secrets[key]
            )
            allowed += [str(p) for p in files[key]]
            con.execute(f"CREATE VIEW {quote_ident(entry.name)} AS {source}")
            if entry.schema != "main":
                con.execute(
                    f"CREATE VIEW {quote_ident(entry.schema)}.{quote_ident(entry.name)} AS {source}"
                )
        lock_down(con, allowed)
        try:
            cur = con.execute(sql)
        except duckdb.Error as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise VerificationFailed(f"query failed: {first}") from None
        if cur.description is None:
            return QueryResult([], [])
        columns = [d[0] for d in cur.description]
        fetched = cur.fetchmany(limit + 1) if limit is not None else cur.fetchall()
        truncated = limit is not None and len(fetched) > limit
        rows = [[_shown(v) for v in r] for r in (fetched[:limit] if limit is not None else fetched)]
        return QueryResult(columns, rows, truncated)
    finally:
        con.close()
