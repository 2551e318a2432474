"""Analysts get native types: arrays as Arrow lists, enums as dictionaries (docs/TYPES.md).

A snapshot of a table with text[], int4[], float8[], timestamptz[], an enum and an enum array
is read back with pyarrow, pandas (`read_snapshot`), DuckDB (`snapshot query`) and, where it
is installed, Polars: lists come back as lists, the enum as a categorical of all its labels.
A snapshot written before (arrays as PostgreSQL literals, enums as plain strings) still
verifies, reads the same way and loads; a column stored as a list on one side and as text on
the other is not compared row by row by `plan`; one value a list cannot hold exactly turns
the whole column into text, in every file of the table.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dbtools.changes import compare
from dbtools.changes.model import BY_KEY, REPLACED
from dbtools.snapshot import format as fmt
from dbtools.snapshot import load, read_snapshot
from dbtools.snapshot.create import create_snapshot
from dbtools.snapshot.query import query_snapshot

from support.db import execute
from support.export_load import connect, export
from support.export_load import load as load_export
from support.project import Project
from support.snapshot import settings_for

LABELS = ["CLIENT", "BUILDER", "ADMIN", "with space", "NULL", "unused"]

SCHEMA = (
    'CREATE TYPE "Role" AS ENUM ('
    + ", ".join("'" + label + "'" for label in LABELS)
    + """);
CREATE TABLE profile (
    id int PRIMARY KEY,
    tags text[],
    role "Role",
    roles "Role"[],
    scores int4[],
    ratios float8[],
    seen timestamptz[],
    grid int4[],
    uid uuid,
    doc jsonb
);
"""
)

# Every element PostgreSQL has to quote in a literal, NULL elements and the string 'NULL',
# empty arrays and NULL arrays; `grid` holds one two-dimensional value.
DATA = r"""
INSERT INTO profile VALUES
 (1, ARRAY['a,b', 'q"uote', 'back\slash', '', 'NULL', NULL, '{x}', ' sp ', E'nl\n\ttab', 'é😀'],
  'with space', '{CLIENT,NULL,"with space"}', '{1,NULL,-2147483648}', '{NaN,-Infinity,-0,0.1}',
  '{"2024-05-14 10:21:12.123456+02",NULL}', '{1,2}', 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11',
  '{"k": "line\nbreak \\ \"q\"", "n": [1.50, null]}'),
 (2, '{}', 'NULL', '{}', '{}', '{}', '{}', '{{1,2},{3,4}}',
  '00000000-0000-0000-0000-000000000000', 'null'),
 (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
 (4, '{NULL}', 'CLIENT', '{NULL}', '{NULL}', '{NULL}', '{NULL}', '{}',
  'ffffffff-ffff-ffff-ffff-ffffffffffff', '"é"');
"""

TAGS_1 = ["a,b", 'q"uote', "back\\slash", "", "NULL", None, "{x}", " sp ", "nl\n\ttab", "é😀"]


@pytest.fixture
def filled(project: Project) -> Project:
    execute(project.dev_url, SCHEMA + DATA)
    execute(project.prod_url, SCHEMA)
    return project


def _rows(url: str) -> list[str]:
    return [r[0] for r in execute(url, "SELECT t::text FROM profile t ORDER BY id")]


def _snapshot(project: Project, env: str = "dev") -> Path:
    return create_snapshot(settings_for(project.root), env).path


def test_arrays_and_enums_are_stored_natively_and_read_back_as_such(filled: Project) -> None:
    path = _snapshot(filled)
    entry = fmt.read_manifest(path).table("profile")
    cols = {c["name"]: c for c in entry.columns}
    schema = pq.read_schema(path / "public.profile.parquet")
    expected = {
        "tags": pa.list_(pa.field("element", pa.string())),
        "roles": pa.list_(pa.field("element", pa.string())),
        "scores": pa.list_(pa.field("element", pa.int32())),
        "ratios": pa.list_(pa.field("element", pa.float64())),
        "seen": pa.list_(pa.field("element", pa.timestamp("us", tz="UTC"))),
        "role": pa.dictionary(pa.int32(), pa.string(), ordered=True),
        "grid": pa.string(),  # one 2-D value: the whole column keeps PostgreSQL's literal
        "uid": pa.uuid(),
        "doc": pa.json_(),
    }
    for name, typ in expected.items():
        assert schema.field(name).type == typ, name
        assert cols[name]["arrow_type"] == str(typ), name
    assert cols["tags"]["encoding"] == cols["role"]["encoding"] == "native"
    assert cols["grid"]["encoding"] == "text"
    assert "more than one dimension" in cols["grid"]["fallback"]

    # pyarrow: the values themselves, the enum's dictionary is every label in order
    data = pq.read_table(path / "public.profile.parquet").sort_by("id")
    assert data.column("tags").to_pylist() == [TAGS_1, [], None, [None]]
    assert data.column("scores").to_pylist() == [[1, None, -2147483648], [], None, [None]]
    assert data.column("role").chunk(0).dictionary.to_pylist() == LABELS
    seen = data.column("seen").to_pylist()[0]
    assert seen[0].isoformat() == "2024-05-14T08:21:12.123456+00:00" and seen[1] is None

    # pandas: lists (ArrowDtype, each value a Python list) and an ordered categorical
    frame = read_snapshot(path, "profile").set_index("id").sort_index()
    assert isinstance(frame["tags"].dtype, pd.ArrowDtype)
    assert frame["tags"][1] == TAGS_1 and frame["tags"][2] == [] and frame["tags"][3] is pd.NA
    assert frame["roles"][1] == ["CLIENT", None, "with space"]
    assert str(frame["ratios"][1]) == "[nan, -inf, -0.0, 0.1]"
    assert isinstance(frame["role"].dtype, pd.CategoricalDtype)
    assert list(frame["role"].cat.categories) == LABELS and frame["role"].cat.ordered
    assert frame["role"].tolist()[:2] == ["with space", "NULL"] and pd.isna(frame["role"][3])
    assert frame["grid"][2] == "{{1,2},{3,4}}"
    # uuid and json read as the strings PostgreSQL prints (the file holds uuid's 16 bytes)
    assert [None if pd.isna(v) else v for v in frame["uid"]] == [
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "00000000-0000-0000-0000-000000000000",
        None,
        "ffffffff-ffff-ffff-ffff-ffffffffffff",
    ]
    assert frame["doc"][1] == '{"k": "line\\nbreak \\\\ \\"q\\"", "n": [1.50, null]}'
    assert data.column("uid").to_pylist()[0] == uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")

    # DuckDB (`snapshot query`): a VARCHAR[] it can search, the enum's labels as text
    out = query_snapshot(
        path,
        "SELECT id, typeof(tags), tags, list_contains(tags, 'a,b'), typeof(role), role, "
        "len(scores), typeof(uid), typeof(doc), doc->>'k' FROM profile ORDER BY id",
    )
    assert out.rows[0] == [
        1,
        "VARCHAR[]",
        TAGS_1,
        True,
        "VARCHAR",
        "with space",
        3,
        "UUID",
        "JSON",
        'line\nbreak \\ "q"',
    ]
    assert out.rows[1][2] == [] and out.rows[2][2] is None and out.rows[3][2] == [None]
    result = filled.invoke("snapshot", "query", str(path), "SELECT tags FROM profile WHERE id = 1")
    assert result.exit_code == 0, result.output

    # and the load gives back exactly what was exported
    result = filled.invoke(
        "restore", str(path), "--target", "prod", "--allow-other-source", "--yes", "--json"
    )
    assert result.exit_code == 0, result.output
    assert _rows(filled.prod_url) == _rows(filled.dev_url)


def test_polars_reads_lists_and_categoricals(filled: Project) -> None:
    import polars as pl  # a test extra: analysts' third reader must not be skipped

    path = _snapshot(filled)
    frame = pl.read_parquet(path / "public.profile.parquet").sort("id")
    assert isinstance(frame.schema["tags"], pl.List)
    assert frame["tags"].to_list()[0] == TAGS_1
    assert str(frame.schema["role"]).startswith(("Categorical", "Enum"))
    assert frame["role"].cast(pl.String).to_list()[:2] == ["with space", "NULL"]


def _as_written_before(url: str, path: Path, key: str = "public.profile") -> None:
    """Rewrite a snapshot's table the way dbtools wrote it before arrays, enums, uuid and
    json were native: arrays as PostgreSQL's literal in a string column (encoding "text"),
    enums, uuid and json as their text (a native string); the manifest follows (checksums
    included)."""
    manifest = fmt.read_manifest(path)
    entry = manifest.tables[key]
    (rel,) = entry.files
    old = pq.read_table(path / rel)
    literal = dict(
        execute(
            url,
            "SELECT id, ARRAY[tags::text, roles::text, scores::text, "
            "ratios::text, seen::text] FROM profile",
        )
    )
    arrays = ["tags", "roles", "scores", "ratios", "seen"]
    ids = old.column("id").to_pylist()
    for i, name in enumerate(arrays):
        text = pa.array([literal[k][i] for k in ids], pa.string())
        old = old.set_column(old.schema.get_field_index(name), name, text)
    old = old.set_column(
        old.schema.get_field_index("role"), "role", old.column("role").cast(pa.string())
    )
    uids = dict(execute(url, "SELECT id, uid::text FROM profile"))
    old = old.set_column(
        old.schema.get_field_index("uid"), "uid", pa.array([uids[k] for k in ids], pa.string())
    )
    old = old.set_column(
        old.schema.get_field_index("doc"), "doc", old.column("doc").combine_chunks().storage
    )
    pq.write_table(old, path / rel, compression="zstd")
    for col in entry.columns:
        if col["name"] in arrays:
            col.update(arrow_type="string", encoding="text")
        elif col["name"] in ("role", "uid", "doc"):
            col.update(arrow_type="string", encoding="native")
    entry.files[rel] = fmt.sha256_file(path / rel)
    entry.bytes = (path / rel).stat().st_size
    fmt.write_manifest(path, manifest)
    verified, problems = fmt.verify_dir(path)
    assert verified is not None and problems == []


def test_a_snapshot_written_before_still_reads_and_loads(filled: Project) -> None:
    path = _snapshot(filled)
    new = read_snapshot(path, "profile").set_index("id").sort_index()
    _as_written_before(filled.dev_url, path)
    assert pq.read_schema(path / "public.profile.parquet").field("tags").type == pa.string()

    # read_snapshot turns the literals into the same lists and the labels into the same
    # categorical: an analyst sees no difference
    before = read_snapshot(path, "profile").set_index("id").sort_index()
    for name in ("tags", "roles", "scores", "seen", "grid", "uid", "doc"):
        assert str(before[name].tolist()) == str(new[name].tolist()), name
    assert str(before["ratios"].tolist()) == str(new["ratios"].tolist())
    assert before["role"].dtype == new["role"].dtype

    result = filled.invoke(
        "restore", str(path), "--target", "prod", "--allow-other-source", "--yes", "--json"
    )
    assert result.exit_code == 0, result.output
    assert _rows(filled.prod_url) == _rows(filled.dev_url)


def _plan_of(project: Project) -> tuple[Path, Path]:
    return _snapshot(project, "dev"), _snapshot(project, "prod")


def test_plan_compares_lists_and_enums_but_not_a_list_against_its_text_form(
    filled: Project,
) -> None:
    execute(filled.prod_url, DATA)
    execute(
        filled.dev_url,
        "UPDATE profile SET tags = array_append(tags, 'new') WHERE id = 1;"
        "UPDATE profile SET role = 'ADMIN' WHERE id = 4;"
        "UPDATE profile SET roles = '{NULL,NULL}' WHERE id = 4;"
        'UPDATE profile SET doc = \'{"n": [1.5, null], "k": "x"}\' WHERE id = 1;'
        "UPDATE profile SET uid = 'ffffffff-ffff-ffff-ffff-fffffffffffe' WHERE id = 4;",
    )
    dev, prod = _plan_of(filled)
    table = compare(dev, prod, preserved=set()).tables[0]
    assert table.mode == BY_KEY
    assert (table.inserted, table.updated, table.deleted) == (0, 2, 0)
    assert table.changed_columns == {"tags": 1, "role": 1, "roles": 1, "doc": 1, "uid": 1}

    # prod's snapshot as an older dbtools wrote it: lists against literals are not compared
    _as_written_before(filled.prod_url, prod)
    table = compare(dev, prod, preserved=set()).tables[0]
    assert table.mode == REPLACED
    assert "'tags'" in table.note and "not compared row by row" in table.note


def test_plan_sees_minus_zero_inside_a_float_list(filled: Project) -> None:
    """DuckDB holds [-0.0] = [0.0] (and [NaN] = [NaN]); PostgreSQL keeps -0 and 0 apart, so
    the plan compares float lists by their spelling. Equal lists stay unchanged."""
    execute(filled.prod_url, DATA)
    execute(filled.dev_url, "UPDATE profile SET ratios = '{NaN,-Infinity,0,0.1}' WHERE id = 1")
    dev, prod = _plan_of(filled)
    table = compare(dev, prod, preserved=set()).tables[0]
    assert table.changed_columns == {"ratios": 1}
    assert (table.updated, table.unchanged) == (1, 3)

    # and back: -0 again, NaN, NULL elements, empty and NULL lists all equal their twins
    execute(filled.dev_url, "UPDATE profile SET ratios = '{NaN,-Infinity,-0,0.1}' WHERE id = 1")
    dev = _snapshot(filled, "dev")
    table = compare(dev, prod, preserved=set()).tables[0]
    assert (table.updated, table.changed_columns) == (0, {})


def test_one_value_a_list_cannot_hold_makes_the_column_text_in_every_file(
    make_db: Callable[[str], str], tmp_path: Path
) -> None:
    src, dst = make_db("src"), make_db("dst")
    for url in (src, dst):
        execute(url, "CREATE TABLE wide (id int, tags text[], at date[])")
    # Many rows and small blocks, so the rejected values come far past the first batch and
    # the first part files; the rerun of the table writes them all again as text.
    execute(
        src,
        "INSERT INTO wide SELECT g, ARRAY['t' || g, NULL, 'x,y'], ARRAY[date '2024-01-01' + g] "
        "FROM generate_series(1, 30000) g;"
        "INSERT INTO wide VALUES (30001, '[0:1]={a,b}', '{infinity}')",
    )
    exp = export(src, "public.wide", tmp_path, batch_bytes=64 << 10, max_file_rows=10_000)
    assert len(exp.files) == 4
    cols = {c["name"]: c for c in exp.columns}
    assert sorted(exp.fallbacks) == ["at", "tags"]
    assert "other bounds" in cols["tags"]["fallback"]
    assert cols["at"]["fallback"] == "an array element does not fit date32[day]"
    for rel in exp.files:
        schema = pq.read_schema(tmp_path / rel)
        assert schema.field("tags").type == schema.field("at").type == pa.string()
        assert schema.field("id").type == pa.int32()
    assert load_export(dst, "public.wide", tmp_path, exp) == 30001
    assert execute(dst, "SELECT tags::text, at::text FROM wide WHERE id = 30001") == [
        ("[0:1]={a,b}", "{infinity}")
    ]
    assert _table_text(dst) == _table_text(src)


def _table_text(url: str) -> list[str]:
    return [r[0] for r in execute(url, "SELECT t::text FROM wide t ORDER BY id")]


def test_list_rows_picked_out_of_the_files_load_through_copy_batches(
    make_db: Callable[[str], str], tmp_path: Path
) -> None:
    """What sync staging does: batches read from the Parquet file, some rows taken."""
    src = make_db("src")
    execute(src, SCHEMA + DATA)
    exp = export(src, "public.profile", tmp_path)
    names = [c["name"] for c in exp.columns]
    conn = connect(src)
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE TEMP TABLE picked (LIKE profile)")
        pf = pq.ParquetFile(tmp_path / exp.files[0])
        batches = (b.take(pa.array([3, 0, 1])) for b in pf.iter_batches(columns=names))
        cols = ", ".join(f'"{n}"' for n in names)
        assert load.copy_batches(conn, f"COPY picked ({cols}) FROM STDIN", "profile", batches) == 3
        with conn.cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM picked p JOIN profile t USING (id) "
                "WHERE p::text IS DISTINCT FROM t::text"
            )
            assert cur.fetchone() == (0,)
            cur.execute("SELECT count(*) FROM picked")
            assert cur.fetchone() == (3,)
    finally:
        conn.close()


@pytest.mark.pure
def test_how_a_column_is_stored_in_a_few_words() -> None:
    from dbtools.snapshot.types import stored_as

    def col(arrow: str, encoding: str = "native", **more: object) -> dict[str, object]:
        return {"arrow_type": arrow, "encoding": encoding, **more}

    assert stored_as(col("list<element: timestamp[us, tz=UTC]>")) == "list<timestamp[us, tz=UTC]>"
    enum = col("dictionary<values=string, indices=int32, ordered=1>", enum_labels=["A", "B"])
    assert stored_as(enum) == "categorical (2 labels)"
    assert stored_as(col("extension<arrow.uuid>")) == "uuid"
    assert stored_as(col("extension<arrow.json>")) == "json"
    assert stored_as(col("decimal128(10, 2)")) == "decimal128(10, 2)"
    assert stored_as(col("string", "text")) == "text"
    assert stored_as(col("string", "text", fallback="a value does not fit date32[day]")) == (
        "text (a value does not fit date32[day])"
    )
