"""The row comparison behind `dbtools plan`, against a model: for any two versions of a keyed
table, inserted/updated/deleted/unchanged and the per-column counts are exactly what set
arithmetic over the rows says. NULLs, empty sides, and composite keys included.

Pure: the two sides are Parquet files written here, as a snapshot stores them; DuckDB joins
them as plan does. No server.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dbtools.changes.rows import TableSources, compare_table
from dbtools.snapshot import format as fmt

pytestmark = pytest.mark.pure

KEY = ("k1", "k2")
COLUMNS = ("a", "b")
ARROW = {"k1": pa.int64(), "k2": pa.string(), "a": pa.int64(), "b": pa.string()}

values = st.tuples(st.none() | st.integers(-3, 3), st.none() | st.sampled_from(["x", "y", ""]))
keys = st.tuples(st.integers(0, 6), st.sampled_from(["p", "q", "ü #"]))
tables = st.dictionaries(keys, values, max_size=25)


def _side(
    root: Path, env: str, rows: dict[tuple[int, str], tuple[Any, Any]]
) -> tuple[Path, fmt.Manifest]:
    directory = root / env
    directory.mkdir()
    files: dict[str, str] = {}
    if rows:  # an empty table may have no file at all
        data = {
            "k1": [k[0] for k in rows],
            "k2": [k[1] for k in rows],
            "a": [v[0] for v in rows.values()],
            "b": [v[1] for v in rows.values()],
        }
        table = pa.table({n: pa.array(data[n], ARROW[n]) for n in (*KEY, *COLUMNS)})
        pq.write_table(table, directory / "public.t.parquet")
        files["public.t.parquet"] = fmt.sha256_file(directory / "public.t.parquet")
    entry = fmt.TableEntry(
        schema="public",
        name="t",
        rows=len(rows),
        bytes=0,
        files=files,
        columns=[
            {"name": n, "arrow_type": str(ARROW[n]), "encoding": "native"} for n in (*KEY, *COLUMNS)
        ],
        content_hash=f"{env}:{len(rows)}",
        primary_key=list(KEY),
    )
    manifest = fmt.Manifest(
        created_at="2026-12-04T00:00:00Z",
        env=env,
        database=env,
        server_version="16",
        tool_version="test",
        schemas=["public"],
        migrations=[],
        schema_fingerprint="",
        schema_objects={},
        tables={"public.t": entry},
    )
    return directory, manifest


@settings(max_examples=60, deadline=None)
@given(dev=tables, prod=tables)
def test_counts_match_set_arithmetic(tmp_path_factory: Any, dev: dict, prod: dict) -> None:
    root = tmp_path_factory.mktemp("sides")
    (dev_dir, dev_m), (prod_dir, prod_m) = _side(root, "dev", dev), _side(root, "prod", prod)
    con = duckdb.connect(":memory:")
    try:
        sources = TableSources(con, dev_dir, dev_m, prod_dir, prod_m)
        got = compare_table(
            sources, "public.t", dev_m.tables["public.t"], prod_m.tables["public.t"]
        )
    finally:
        con.close()

    both = dev.keys() & prod.keys()
    updated = {k for k in both if dev[k] != prod[k]}
    assert got.inserted == len(dev.keys() - prod.keys())
    assert got.deleted == len(prod.keys() - dev.keys())
    assert got.updated == len(updated)
    assert got.unchanged == len(both) - len(updated)
    expected_columns = {
        c: n
        for i, c in enumerate(COLUMNS)
        if (n := sum(1 for k in updated if dev[k][i] != prod[k][i]))
    }
    assert got.changed_columns == expected_columns
    # samples are the smallest keys of each kind, at most three
    smallest = sorted(dev.keys() - prod.keys())[:3]
    assert [(s["k1"], s["k2"]) for s in got.samples.get("inserted", [])] == smallest
