"""Staging, the first half of a short-lock apply (sync.delta): dev's changed rows are brought
into prod before any table is locked.

The dev snapshot and prod's fresh backup are compared row by row by primary key (DuckDB over
their Parquet files, as `dbtools plan` does); the rows each table inserts or updates (from
dev's files) and deletes (from the backup's files) are picked out of the Parquet files by
their position and COPYed into temporary tables on the guard's connection. Temporary tables
live in the guard's transaction (ON COMMIT DROP) and die with its session: a killed run leaves
nothing behind for the next run to clean up.

A table whose rows cannot be matched by key (no primary key, a column stored differently on
the two sides) is staged whole and replaced whole. Staging returns a reason instead when the
short path cannot serve the run at all (e.g. a table the backup does not hold); the run then
loads in full under the write lock, as before.
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from dbtools import catalog
from dbtools.changes.duck import Comparison
from dbtools.changes.rows import TableSources, changed_rows
from dbtools.db import Conn, Progress, execute, quote_ident
from dbtools.errors import SnapshotError
from dbtools.progress import phase, table_task
from dbtools.snapshot import format as fmt
from dbtools.snapshot import hashing, load
from dbtools.snapshot.encryption import TableSecret, table_secret
from dbtools.snapshot.preflight import LoadPlan

BY_KEY = "by_key"
REPLACE = "replace"
KINDS = ("inserted", "updated", "deleted")
# what is staged: the kinds, and the backup's version of every updated row ("before")
_STAGED = (*KINDS, "before")


@dataclass
class StagedTable:
    table: catalog.Table
    mode: str  # BY_KEY: rows matched by primary key; REPLACE: every row deleted, dev's inserted
    columns: list[str]  # the copied columns (the manifest's), staged and written
    stages: dict[str, str] = field(default_factory=dict)  # kind -> temp table (quoted)
    counts: dict[str, int] = field(default_factory=dict)  # kind -> rows
    prod_rows: int = 0  # rows in the backup
    prod_hash: str = ""  # the backup's content hash of the table (snapshot.hashing)
    prod_columns: list[str] = field(default_factory=list)  # the backup's copied columns
    # The row versions (ctid, xmin) found, when staging ended, for every row the apply will
    # overwrite or delete (REPLACE: every row, and the partition, tableoid), each then equal
    # to its backup copy (`record_versions`)
    versions: str | None = None

    @property
    def key(self) -> list[str]:
        return list(self.table.primary_key)


@dataclass
class Staging:
    tables: list[StagedTable]  # in load order: referenced tables first
    unchanged: list[str]
    rows: int  # rows staged


def _picked(
    directory: Path,
    files: list[str],
    names: list[str],
    wanted: dict[str, list[int]],
    secret: TableSecret | None = None,
) -> Iterator[pa.RecordBatch]:
    """The rows at the wanted positions (file path -> sorted row numbers), only the row groups
    that hold one are decoded."""
    decryption = secret.decryption() if secret else None
    for rel in files:
        path = directory / rel
        rows = wanted.get(str(path))
        if not rows:
            continue
        try:
            pf = pq.ParquetFile(str(path), pre_buffer=False, decryption_properties=decryption)
            start = 0
            for group in range(pf.metadata.num_row_groups):
                end = start + pf.metadata.row_group(group).num_rows
                lo, hi = bisect.bisect_left(rows, start), bisect.bisect_left(rows, end)
                offset = start
                start = end
                if lo == hi:
                    continue
                for batch in pf.iter_batches(
                    row_groups=[group], columns=names, use_threads=False, batch_size=65_536
                ):
                    b_end = offset + batch.num_rows
                    a, b = bisect.bisect_left(rows, offset), bisect.bisect_left(rows, b_end)
                    if a < b:
                        yield batch.take(pa.array([r - offset for r in rows[a:b]], pa.int64()))
                    offset = b_end
        except (OSError, pa.ArrowException) as exc:
            raise SnapshotError(f"snapshot file {rel} is not readable Parquet: {exc}") from None


def _stage(
    conn: Conn,
    table: catalog.Table,
    name: str,
    columns: list[str],
    batches: Iterator[pa.RecordBatch],
) -> int:
    """A temporary table of the copied columns, typed like `table`'s, filled. Only their
    types: no constraint of the table (LIKE would keep NOT NULL, also on a generated or
    identity column, which is not copied), which the apply's writes check anyway."""
    cols = ", ".join(quote_ident(c) for c in columns)
    execute(
        conn,
        f"CREATE TEMP TABLE {name} ON COMMIT DROP AS SELECT {cols} FROM {table.only} WITH NO DATA",
    )
    rows = load.copy_batches(conn, f"COPY {name} ({cols}) FROM STDIN", table.key, batches)
    execute(conn, f"ANALYZE {name}")  # the apply joins it with the table: plan with its size
    return rows


def _positions(
    sources: TableSources, *, key: str, d: fmt.TableEntry, p: fmt.TableEntry
) -> dict[str, list[tuple[str, int]]] | None:
    return changed_rows(sources, key, d, p)


def stage_changes(
    conn: Conn,
    plan: LoadPlan,
    dev_dir: Path,
    dev: fmt.Manifest,
    prod_dir: Path,
    prod: fmt.Manifest,
    progress: Progress,
) -> Staging | str:
    """Stage every changed table of the load plan (module doc); a str says why the short
    path cannot serve this run."""
    import duckdb

    staged: list[StagedTable] = []
    unchanged: list[str] = []
    total = 0
    # The join carries every row's file and row number: DuckDB's memory is bounded and it
    # spills instead of growing (changes.duck).
    comparison = None
    try:
        comparison = Comparison(dev_dir, dev, prod_dir, prod, positions=True)
        with phase(progress, "staging dev's changed rows", len(plan.tables)) as stage_phase:
            for n, table in enumerate(plan.tables):
                if table.key in plan.keep:
                    stage_phase.advance()
                    continue
                d, p = dev.tables.get(table.key), prod.tables.get(table.key)
                if d is None or p is None:
                    return f"{table.key} is not in both snapshots"
                if d.content_hash == p.content_hash and d.columns == p.columns:
                    unchanged.append(table.key)
                    stage_phase.advance()
                    continue
                if not table.columns:
                    return f"{table.key} has no columns"
                with table_task(progress, "staging", table.key, conn=conn) as task:
                    columns = [str(c["name"]) for c in d.columns]
                    positions = (
                        comparison.run(functools.partial(_positions, key=table.key, d=d, p=p))
                        if table.primary_key
                        else None
                    )
                    mode = BY_KEY if positions is not None else REPLACE
                    entry = StagedTable(
                        table,
                        mode,
                        columns,
                        prod_rows=p.rows,
                        prod_hash=p.content_hash,
                        prod_columns=[str(c["name"]) for c in p.columns],
                    )
                    task.set_total(
                        d.rows if positions is None else sum(map(len, positions.values()))
                    )
                    for kind in _STAGED:
                        if mode == REPLACE and kind != "inserted":
                            continue
                        from_prod = kind in ("deleted", "before")
                        directory, man = (prod_dir, p) if from_prod else (dev_dir, d)
                        files = list(man.files)
                        secret = table_secret(directory, prod if from_prod else dev, man)
                        if positions is None:  # replaced whole: every dev row
                            batches = load._batches(directory, files, columns, secret)
                        else:
                            wanted: dict[str, list[int]] = {}
                            for f, r in positions[kind]:
                                wanted.setdefault(f, []).append(r)
                            if not wanted:
                                entry.counts[kind] = 0
                                continue
                            batches = _picked(directory, files, columns, wanted, secret)
                        name = quote_ident(f"__dbtools_stage_{n}_{kind}")
                        entry.counts[kind] = _stage(conn, table, name, columns, batches)
                        task.add(entry.counts[kind])
                        entry.stages[kind] = name
                        total += entry.counts[kind] if kind != "before" else 0
                    if mode == REPLACE:
                        entry.counts["deleted"] = p.rows
                    staged.append(entry)
                    task.done(
                        f"staged {table.key}: "
                        + ", ".join(f"{entry.counts.get(k, 0):,} {k}" for k in KINDS)
                        + (" (replaced whole: no key to match rows on)" if mode == REPLACE else "")
                    )
    except duckdb.Error as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return f"the snapshots could not be compared ({first})"
    finally:
        if comparison is not None:
            comparison.close()
    for n, entry in enumerate(staged):
        changed = record_versions(conn, entry, n)
        if changed:
            return changed
    return Staging(staged, unchanged, total)


_FLOATS = ("float4", "float8", "_float4", "_float8")


def on_key(st: StagedTable, a: str = "t", b: str = "s") -> str:
    """SQL: rows `a` and `b` have the same primary key, stored alike: -0 = 0 for a float, but
    a row keyed -0 is not the row keyed 0 (the comparison of changes.rows matched them by
    spelling too); `=` first, so that the key's index still serves the join."""
    floats = {c.name for c in st.table.columns if c.base_name in _FLOATS}
    out = []
    for k in st.key:
        x, y = f"{a}.{quote_ident(k)}", f"{b}.{quote_ident(k)}"
        out.append(f"{x} = {y}" + (f" AND {x}::text = {y}::text" if k in floats else ""))
    return " AND ".join(out)


def record_versions(conn: Conn, st: StagedTable, n: int) -> str:
    """Prove, in one statement (one view of prod), that every row the apply will overwrite or
    delete is still exactly the backup's copy, and record its version (ctid, xmin): under the
    lock, an unchanged version proves the row unchanged since the backup, with no assumption
    about transactions. '' when it holds, else why not (the run then loads in full).

    A table replaced whole: all its rows, with their row hashes, whose sum must be the
    backup's content hash (the same rows, whatever their versions: the proof needs no
    snapshot xmin, which any transaction of the cluster, in any database, holds back)."""
    if st.mode == REPLACE:
        return _record_all_versions(conn, st, n)
    sources = [st.stages[k] for k in ("before", "deleted") if k in st.stages]
    if st.mode != BY_KEY or not sources:
        return ""
    keys = ", ".join(f"s.{quote_ident(k)}" for k in st.key)
    differs = " OR ".join(
        f"t.{quote_ident(c)}::text IS DISTINCT FROM s.{quote_ident(c)}::text" for c in st.columns
    )
    name = quote_ident(f"__dbtools_versions_{n}")
    select = " UNION ALL ".join(
        f"SELECT {keys}, t.ctid AS __dbtools_ctid, t.xmin::text AS __dbtools_xmin, "
        f"(t.ctid IS NULL OR {differs}) AS __dbtools_differs "
        f"FROM {stage} s LEFT JOIN {st.table.only} t ON {on_key(st)}"
        for stage in sources
    )
    execute(conn, f"CREATE TEMP TABLE {name} ON COMMIT DROP AS {select}")
    (bad,) = execute(conn, f"SELECT count(*) FILTER (WHERE __dbtools_differs) FROM {name}")[0]
    if bad:
        return f"{bad} rows of {st.table.key} that the apply changes changed since the backup"
    st.versions = name
    return ""


def _record_all_versions(conn: Conn, st: StagedTable, n: int) -> str:
    name = quote_ident(f"__dbtools_versions_{n}")
    names = hashing.hashed_columns(st.table, st.prod_columns)
    row_hash = hashing.row_hash_expression(names) if names else "0::bigint"
    execute(
        conn,
        f"CREATE TEMP TABLE {name} ON COMMIT DROP AS SELECT t.tableoid AS __dbtools_rel, "
        f"t.ctid AS __dbtools_ctid, t.xmin::text AS __dbtools_xmin, {row_hash} AS __dbtools_hash "
        f"FROM {st.table.only} t",
    )
    rows, total = execute(
        conn, f"SELECT count(*), coalesce(sum(__dbtools_hash), 0)::text FROM {name}"
    )[0]
    if hashing.format_hash(int(rows), int(total)) != st.prod_hash:
        return f"{st.table.key} was written since the backup"
    st.versions = name
    return ""
