"""DuckDB over two snapshots with its memory bounded: one place for plan, rollback's dry run
and the staging of sync-data and apply.

DuckDB's joins spill to a temporary directory instead of growing, so a small limit costs
little (1M rows: peak RSS of sync-data 408 MB instead of 524 MB, for +0.2 s;
docs/BENCHMARKS.md). What DuckDB cannot spill is a single value: a 20 MB text needs one
allocation of 32 MB, which the small limit refuses. A comparison only reads Parquet, so it is
then run again on a connection of its own with a larger limit, and the next table goes back
to the small one. Past the largest, DuckDB's error is raised (plan: one line; sync-data: the
full load).

The views of the snapshots lock the connection's configuration (snapshot.query.lock_down),
which is why a larger limit needs a new connection rather than a SET.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from dbtools.changes.rows import TableSources
from dbtools.snapshot import format as fmt

T = TypeVar("T")

MEMORY_LIMITS = ("128MB", "1GB", "4GB")
THREADS = 2


class Comparison:
    """Two snapshots (dev's role, prod's role) opened for comparing, table by table."""

    def __init__(
        self,
        dev_dir: Path,
        dev: fmt.Manifest,
        prod_dir: Path,
        prod: fmt.Manifest,
        *,
        positions: bool = False,
    ):
        self._sides = (dev_dir, dev, prod_dir, prod)
        self._positions = positions
        self._spill = tempfile.TemporaryDirectory(prefix="dbtools-compare-")
        self._con: Any = None
        try:
            self._con, self.sources = self._open(MEMORY_LIMITS[0])
        except BaseException:
            self._spill.cleanup()
            raise

    def _open(self, limit: str) -> tuple[Any, TableSources]:
        import duckdb

        config: dict[str, str | bool | int | float | list[str]] = {
            "memory_limit": limit,
            "threads": THREADS,
            "temp_directory": self._spill.name,
        }
        con = duckdb.connect(":memory:", config=config)
        try:
            dev_dir, dev, prod_dir, prod = self._sides
            return con, TableSources(con, dev_dir, dev, prod_dir, prod, positions=self._positions)
        except BaseException:
            con.close()
            raise

    def run(self, compare: Callable[[TableSources], T]) -> T:
        """compare(sources), again with each larger memory limit while a value does not fit
        (module doc)."""
        import duckdb

        try:
            return compare(self.sources)
        except duckdb.OutOfMemoryException:
            if len(MEMORY_LIMITS) == 1:
                raise
        for limit in MEMORY_LIMITS[1:-1]:
            con, sources = self._open(limit)
            try:
                return compare(sources)
            except duckdb.OutOfMemoryException:
                pass
            finally:
                con.close()
        con, sources = self._open(MEMORY_LIMITS[-1])
        try:
            return compare(sources)
        finally:
            con.close()

    def close(self) -> None:
        con, self._con = self._con, None
        if con is not None:
            con.close()
        self._spill.cleanup()

    def __enter__(self) -> Comparison:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
