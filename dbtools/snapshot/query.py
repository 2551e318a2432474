"""`snapshot query`: SQL over a snapshot's Parquet files with DuckDB (an optional extra).

Every table becomes a DuckDB view under its bare name ("User") and, for schemas other than
main, also as "schema"."table"; the database is in-memory, so nothing is ever written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dbtools.errors import ConfigError, VerificationFailed
from dbtools.snapshot import format as fmt


@dataclass
class QueryResult:
    columns: list[str]
    rows: list[list[Any]]
    truncated: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"columns": self.columns, "rows": self.rows, "truncated": self.truncated}


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def query_snapshot(path: Path, sql: str, *, limit: int | None = 1000) -> QueryResult:
    """Run one SQL statement over the snapshot; at most `limit` rows are returned."""
    try:
        import duckdb
    except ImportError:
        raise ConfigError(
            "snapshot query needs DuckDB, which is not installed",
            hint="pip install 'dbtools[query]' (or pip install duckdb)",
        ) from None
    manifest = fmt.read_manifest(Path(path))
    con = duckdb.connect(":memory:")
    try:
        schemas = {t.schema for t in manifest.tables.values()} - {"main"}
        for schema in sorted(schemas):
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {_ident(schema)}")
        for entry in manifest.tables.values():
            files = ", ".join(_literal(str(Path(path) / rel)) for rel in entry.files)
            source = f"SELECT * FROM read_parquet([{files}])"
            con.execute(f"CREATE VIEW {_ident(entry.name)} AS {source}")
            if entry.schema != "main":
                con.execute(f"CREATE VIEW {_ident(entry.schema)}.{_ident(entry.name)} AS {source}")
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
        rows = [list(r) for r in (fetched[:limit] if limit is not None else fetched)]
        return QueryResult(columns, rows, truncated)
    finally:
        con.close()
