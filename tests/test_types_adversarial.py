"""Hostile values for the native types (docs/TYPES.md): each case is exported, loaded into a
second database and must come back byte-identical (`row::text`, content hash), stored either
natively or, when a value has no exact native form, as the documented per-column text
fallback, with its reason. Never a silent change, never a traceback.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import psycopg2.extensions
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dbtools.changes import compare
from dbtools.changes.model import BY_KEY
from dbtools.snapshot import read_snapshot
from dbtools.snapshot.create import create_snapshot
from dbtools.snapshot.export import TableExport, export_table
from dbtools.snapshot.hashing import content_hash
from dbtools.snapshot.load import load_table

from support.db import execute
from support.project import Project
from support.snapshot import settings_for
from support.types_pair import (
    create_both,
    roundtrip,
    rows_text,
    table_of,
)

Conn = psycopg2.extensions.connection
TEXT = "string"
_ENUM = "dictionary<values=string, indices=int32, ordered=1>"


def _list(element: str) -> str:
    return f"list<element: {element}>"


SETUP = r"""
CREATE EXTENSION IF NOT EXISTS citext;
DROP TYPE IF EXISTS "Odd" CASCADE;
CREATE TYPE "Odd" AS ENUM ('with space', 'q"uote', 'it''s', 'a,b', 'é😀', 'NULL', '',
                           'back\slash', '{x}');
DROP DOMAIN IF EXISTS posint CASCADE; CREATE DOMAIN posint AS int4 CHECK (VALUE > 0);
DROP DOMAIN IF EXISTS short_tags CASCADE;
CREATE DOMAIN short_tags AS text[] CHECK (coalesce(array_length(VALUE, 1), 0) < 100);
DROP DOMAIN IF EXISTS money2 CASCADE; CREATE DOMAIN money2 AS numeric(10,2)[];
DROP TYPE IF EXISTS public."int4", public."bytea", public."uuid", public."json" CASCADE;
CREATE TYPE public."int4" AS (a int); CREATE TYPE public."bytea" AS (a text);
CREATE TYPE public."uuid" AS (a int); CREATE TYPE public."json" AS (a int);
DROP DOMAIN IF EXISTS odd_domain CASCADE; CREATE DOMAIN odd_domain AS "Odd";
DROP TYPE IF EXISTS no_labels CASCADE; CREATE TYPE no_labels AS ENUM ();
DROP DOMAIN IF EXISTS price CASCADE; CREATE DOMAIN price AS numeric(10,2) CHECK (VALUE > 0);
"""
# Labels added later, around the existing ones: the enum's order is not the order of creation.
LATER = [
    """ALTER TYPE "Odd" ADD VALUE 'first' BEFORE 'with space'""",
    """ALTER TYPE "Odd" ADD VALUE 'between' AFTER 'with space'""",
    """ALTER TYPE "Odd" ADD VALUE 'last'""",
]
ODD_ORDER = [
    "first",
    "with space",
    "between",
    'q"uote',
    "it's",
    "a,b",
    "é😀",
    "NULL",
    "",
    "back\\slash",
    "{x}",
    "last",
]

# name -> (column type, values as SQL, how the column must be stored)
CASES: dict[str, tuple[str, list[str], str]] = {
    "text[] hostile elements": (
        "text[]",
        [
            "'{}'",
            "'{NULL}'",
            """'{""}'""",
            """'{"NULL","null","Null",NULL}'""",
            "ARRAY['', '', '']",
            r"""ARRAY['a"b', E'c\\d', 'x,y', '{z}', ' lead', 'trail ', 'mid dle', E'\\',
                     E'\\"', '"', E'end\\', '\N', '\.', 'é😀', E'\x01\x1f\x7f ctl']""",
            r"""ARRAY[E'tab\t', E'nl\n', E'cr\r', E'\r\n', '', NULL, 'NULL']""",
            "ARRAY[NULL, NULL]::text[]",
            "NULL",
        ],
        _list("string"),
    ),
    "text[] with other lower bounds": (
        "text[]",
        ["'{a,b}'", "'[0:1]={a,b}'", "'[-3:-3]={\"x,y\"}'", "'{}'", "NULL"],
        TEXT,
    ),
    "int4[] 1-D and 2-D mixed": (
        "int4[]",
        ["'{1,2}'", "'{{1,2},{3,4}}'", "'{{{1}}}'", "'{}'", "NULL"],
        TEXT,
    ),
    "enum with labels added later": (
        '"Odd"',
        [f"$q${label}$q$" for label in ODD_ORDER] + ["NULL"],
        _ENUM,
    ),
    "enum[]": (
        '"Odd"[]',
        [
            "ARRAY[" + ", ".join(f"$q${label}$q$" for label in ODD_ORDER) + ']::"Odd"[]',
            """'{NULL}'""",
            """'{}'""",
            "NULL",
        ],
        _list("string"),
    ),
    "domain over text[]": (
        "short_tags",
        ["'{a,\"b c\"}'", "'{}'", "'{NULL,\"\"}'", "NULL"],
        _list("string"),
    ),
    "array of a domain": ("posint[]", ["'{1,NULL,2147483647}'", "'{}'", "NULL"], _list("int32")),
    "domain over numeric(10,2)[]": (
        "money2",
        ["'{1.5,-99999999.99,NULL}'", "'{}'", "NULL"],
        _list("decimal128(10, 2)"),
    ),
    "numeric[] NaN, Infinity, huge scale": (
        "numeric[]",
        [
            "'{NaN,Infinity,-Infinity,-0.000}'",
            "ARRAY['1e-1000'::numeric, '1e1000'::numeric]",
            "'{}'",
            "NULL",
        ],
        TEXT,
    ),
    "numeric(10,2)[] with NaN": (
        "numeric(10,2)[]",
        ["'{1.50,NULL}'", "'{NaN}'"],
        TEXT,
    ),
    "numeric(38,38)[]": (
        "numeric(38,38)[]",
        ["'{0.12345678901234567890123456789012345678,-0.99999999999999999999999999999999999999}'"],
        _list("decimal128(38, 38)"),
    ),
    "float4[] specials": (
        "float4[]",
        [
            "'{-0,0,NaN,Infinity,-Infinity,NULL}'",
            "'{1.4e-45,1.17549435e-38,3.4028235e38,0.1,16777217}'",
            "'{}'",
        ],
        _list("float"),
    ),
    "float8[] specials": (
        "float8[]",
        [
            "'{-0,0,NaN,Infinity,-Infinity,NULL}'",
            "'{4.9e-324,2.2250738585072014e-308,1.7976931348623157e308,0.1,1e23}'",
            "'{0.30000000000000004,123456789012345680000}'",
        ],
        _list("double"),
    ),
    "timestamp[] with infinity": (
        "timestamp[]",
        ["'{\"2024-01-01 00:00:00\"}'", "'{infinity,-infinity}'"],
        TEXT,
    ),
    "timestamp[] that fit": (
        "timestamp[]",
        [
            '\'{"0001-01-01 00:00:00","1999-12-31 23:59:59.999999",NULL}\'',
            "'{\"0500-06-15 12:00:00.5\"}'",
        ],
        _list("timestamp[us]"),
    ),
    "timestamptz[] with -infinity": (
        "timestamptz[]",
        ["'{\"2024-01-01 00:00:00+05\"}'", "'{-infinity}'"],
        TEXT,
    ),
    "timestamptz[] that fit": (
        "timestamptz[]",
        ['\'{"2024-05-14 10:21:12.123456+02","1900-01-01 00:00:00-03:30"}\''],
        _list("timestamp[us, tz=UTC]"),
    ),
    "date[] with BC": ("date[]", ["'{2024-02-29}'", "'{\"0044-03-15 BC\"}'"], TEXT),
    "date[] with infinity": ("date[]", ["'{2024-02-29,infinity}'"], TEXT),
    "bytea[]": (
        "bytea[]",
        [r"""'{"\\x00ff",NULL,"\\x",""}'""", "ARRAY['\\x5c22'::bytea]"],
        TEXT,
    ),
    "uuid[]": (
        "uuid[]",
        ["'{A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11,NULL}'", "'{}'", "NULL"],
        _list("string"),
    ),
    "uuid with NULLs": (
        "uuid",
        ["NULL", "'00000000-0000-0000-0000-000000000000'", "NULL"],
        "extension<arrow.uuid>",
    ),
    "uuid all NULL": ("uuid", ["NULL", "NULL"], "extension<arrow.uuid>"),
    "text[] all NULL": ("text[]", ["NULL", "NULL"], _list("string")),
    "date[] all NULL": ("date[]", ["NULL"], _list("date32[day]")),
    "json keeps spelling": (
        "json",
        [
            """'{"b": 1,   "a": 2, "b": 3}'""",
            """'  [1, 2.50 , {"é": "\\u00e9\\n"}]  '""",
            """E'{\\n\\t"k" : null\\n}'""",
            "'\"\"'",
            "'null'",
            """'{"nul": "\\u0000", "\\ud83d\\ude00": 1}'""",
        ],
        "extension<arrow.json>",
    ),
    "jsonb": (
        "jsonb",
        ["""'{"b": 1, "a": 2, "b": 3}'""", "'[]'", "'\"\\\\\"'"],
        "extension<arrow.json>",
    ),
    "jsonb[]": (
        "jsonb[]",
        [
            """ARRAY['{"a": "q\\"b\\\\c"}'::jsonb, 'null', '"NULL"', '{}']""",
            "'{NULL}'",
        ],
        _list("string"),
    ),
    "json[]": (
        "json[]",
        ["""ARRAY['{"b":1,  "b":2}'::json, ' [ ] ']"""],
        _list("string"),
    ),
    "interval[]": ("interval[]", ["'{\"1 year -2 days 00:00:00.000001\",NULL}'"], TEXT),
    "int2vector": ("int2vector", ["'1 2 3'", "''", "NULL"], TEXT),
    "oidvector": ("oidvector", ["'1 2 4294967295'", "''"], TEXT),
    "citext[]": ("citext[]", ["ARRAY['MiXeD', 'a b', '']::citext[]", "'{NULL}'"], _list("string")),
    "char(5)[] trailing spaces": (
        "char(5)[]",
        ["ARRAY['a', '', 'ab  ', ' x']::char(5)[]", "'{NULL}'"],
        _list("string"),
    ),
    "varbit[]": ("varbit[]", ["'{101,\"\",NULL}'", "ARRAY[B'1'::varbit]"], TEXT),
    "bool[]": ("bool[]", ["'{t,f,NULL}'", "'{}'"], _list("bool")),
    '"char"[]': (
        '"char"[]',
        ["ARRAY['a', '\\', '\"', ' ']::\"char\"[]", "'{NULL}'"],
        _list("string"),
    ),
    # User types named like built-ins (the name alone does not make an int4): their text.
    'composite "int4"': ('public."int4"', ["'(1)'", "'()'", "NULL"], TEXT),
    'composite "bytea"': ('public."bytea"', ["'(x)'", "'(\"\\\\x00\")'"], TEXT),
    'composite "uuid"': ('public."uuid"', ["'(1)'"], TEXT),
    'composite "json"': ('public."json"', ["'(1)'"], TEXT),
    'composite "int4"[]': ('public."int4"[]', ["'{\"(1)\",NULL}'"], TEXT),
    "domain over an enum": ("odd_domain", ["'a,b'", "''", "NULL"], _ENUM),
    "array of a domain over an enum": ("odd_domain[]", ['\'{"a,b","",NULL}\''], _list("string")),
    "an enum without labels": ("no_labels", ["NULL", "NULL"], _ENUM),
    "array of an enum without labels": (
        "no_labels[]",
        ["'{}'", "'{NULL}'", "NULL"],
        _list("string"),
    ),
    "timestamp[] BC": ("timestamp[]", ["'{\"0044-03-15 12:00:00 BC\"}'"], TEXT),
    "date extremes": ("date", ["'5874897-12-31'", "'4713-01-01 BC'"], TEXT),
    "date[] extremes": ("date[]", ["'{5874897-12-31}'"], TEXT),
    "timestamp extremes": ("timestamp", ["'294276-12-31 23:59:59.999999'"], TEXT),
    "timestamptz[] extremes": ("timestamptz[]", ["'{\"294276-12-31 23:59:59.999999+00\"}'"], TEXT),
    "timestamp[] at Arrow's edge": (
        "timestamp[]",
        ['\'{"9999-12-31 23:59:59.999999","0001-01-01 00:00:00"}\''],
        _list("timestamp[us]"),
    ),
    "numeric(38,0)[] 38 nines": (
        "numeric(38,0)[]",
        ["ARRAY[repeat('9', 38)::numeric, -repeat('9', 38)::numeric]"],
        _list("decimal128(38, 0)"),
    ),
    "int8[] extremes": (
        "int8[]",
        ["'{-9223372036854775808,9223372036854775807,0}'"],
        _list("int64"),
    ),
    '"char" zero byte': ('"char"', ["''", "'\\000'", "NULL"], "string"),
    '"char"[] zero byte': ('"char"[]', ["ARRAY['', 'x', NULL]::\"char\"[]"], _list("string")),
    # (docs/TYPES.md, known limitations: the domain's typmod is not the array column's)
    "array of a domain over numeric(10,2)": ("price[]", ["'{1.50,NULL}'", "'{}'"], TEXT),
    "int2vector[]": ("int2vector[]", ["ARRAY['1 2'::int2vector, '']"], TEXT),
    "box[] (';' between elements)": ("box[]", ["'{(1,1),(0,0);(2,2),(1,1)}'"], TEXT),
    "numeric(5,-2)[]": ("numeric(5,-2)[]", ["'{1234567,-50}'"], TEXT),
    "name[]": ("name[]", ["ARRAY['pg_class', 'with space']::name[]"], _list("string")),
}


def _setup(src: Conn, dst: Conn) -> None:
    create_both(src, dst, SETUP)
    for sql in LATER:
        create_both(src, dst, sql)


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_values_roundtrip_exactly(pair: tuple, tmp_path: Path, case: str) -> None:
    src, dst = pair
    pg_type, values, stored = CASES[case]
    _setup(src, dst)
    create_both(src, dst, f"DROP TABLE IF EXISTS adv; CREATE TABLE adv (id serial, v {pg_type})")
    with src.cursor() as cur:
        for value in values:
            cur.execute(f"INSERT INTO adv (v) VALUES ({value}::{pg_type})")
    src.commit()
    before, after, cols = roundtrip(src, dst, "adv", tmp_path)
    assert len(before) == len(values)
    assert after == before
    col = cols["v"]
    assert col["arrow_type"] == stored
    if stored == TEXT and pg_type.endswith("[]"):
        assert col["encoding"] == "text"
    if "without labels" in case:
        assert col["enum_labels"] == []
    elif "enum" in case:
        assert col["enum_labels"] == ODD_ORDER
    if case == "enum with labels added later":
        data = pq.read_table(tmp_path / "public.adv.parquet")
        assert data.column("v").chunk(0).dictionary.to_pylist() == ODD_ORDER


def _fill(src: Conn, sql: str) -> None:
    with src.cursor() as cur:
        cur.execute(sql)
    src.commit()


def _export(src: Conn, name: str, dest: Path, **options: int) -> TableExport:
    src.set_session(isolation_level="REPEATABLE READ")
    try:
        return export_table(src, table_of(src, name), dest, **options)  # type: ignore[arg-type]
    finally:
        src.rollback()
        src.set_session(isolation_level="READ COMMITTED")


def test_a_batch_of_only_null_arrays_and_uuids_keeps_the_columns_native(
    pair: tuple,
    tmp_path: Path,
) -> None:
    """A reader batch whose array or uuid values are all NULL fits the list and uuid types
    (it used to turn the column into text, "more than one dimension")."""
    src, dst = pair
    create_both(
        src,
        dst,
        "DROP TABLE IF EXISTS sparse; "
        "CREATE TABLE sparse (id int, tags text[], at date[], u uuid, pad text)",
    )
    _fill(
        src,
        "INSERT INTO sparse SELECT g, "
        "CASE WHEN g < 100 OR g > 9900 THEN ARRAY['t' || g, NULL] END, "
        "CASE WHEN g < 100 THEN ARRAY[date '2024-01-01' + g] END, "
        "CASE WHEN g > 9900 THEN md5(g::text)::uuid END, repeat('x', 40) "
        "FROM generate_series(1, 10000) g",
    )
    exp = _export(src, "sparse", tmp_path, batch_bytes=32 << 10)
    cols = {c["name"]: c for c in exp.columns}
    assert exp.fallbacks == []
    assert cols["tags"]["arrow_type"] == _list("string")
    assert cols["at"]["arrow_type"] == _list("date32[day]")
    assert cols["u"]["arrow_type"] == "extension<arrow.uuid>"
    (tmp_path / "again").mkdir()
    before, after, _ = roundtrip(src, dst, "sparse", tmp_path / "again")
    assert after == before


def test_huge_arrays_in_one_value(pair: tuple, tmp_path: Path) -> None:
    """100,000 elements in one array value: hostile text, ints, floats with specials."""
    src, dst = pair
    create_both(
        src,
        dst,
        "DROP TABLE IF EXISTS huge; "
        "CREATE TABLE huge (id int, t text[], i int4[], f float8[], d date[])",
    )
    _fill(
        src,
        "INSERT INTO huge SELECT 1, "
        "array_agg(CASE g % 5 WHEN 0 THEN NULL WHEN 1 THEN 'a,\"b\\' || g WHEN 2 THEN '' "
        "WHEN 3 THEN 'NULL' ELSE '{' || g || '}' END), "
        "array_agg(CASE WHEN g % 7 = 0 THEN NULL WHEN g % 2 = 0 THEN -g ELSE g END), "
        "array_agg(CASE g % 4 WHEN 0 THEN '-0'::float8 WHEN 1 THEN 'NaN' WHEN 2 THEN g / 3.0 "
        "ELSE '-Infinity' END), "
        "array_agg(date '2000-01-01' + g) "
        "FROM generate_series(1, 100000) g; "
        "INSERT INTO huge VALUES (2, '{}', '{}', '{}', '{}'), (3, NULL, NULL, NULL, NULL)",
    )
    before, after, cols = roundtrip(src, dst, "huge", tmp_path)
    assert after == before
    assert cols["t"]["arrow_type"] == _list("string")
    assert cols["i"]["arrow_type"] == _list("int32")
    assert cols["f"]["arrow_type"] == _list("double")
    assert cols["d"]["arrow_type"] == _list("date32[day]")
    data = pq.read_table(tmp_path / "public.huge.parquet").sort_by("id")
    assert len(data.column("t")[0]) == 100_000
    assert data.column("t")[0].as_py()[:5] == ['a,"b\\1', "", "NULL", "{4}", None]


def test_a_late_value_that_does_not_fit_turns_every_file_of_the_column_into_text(
    pair: tuple,
    tmp_path: Path,
) -> None:
    """100,000 rows fit as lists; the last one does not (2-D float array, a BC date): both
    columns are text in every part file, the other columns stay native, the load is exact."""
    src, dst = pair
    create_both(
        src,
        dst,
        "DROP TABLE IF EXISTS late; CREATE TABLE late (id int, f float8[], d date[], ok int4[])",
    )
    _fill(
        src,
        "INSERT INTO late SELECT g, ARRAY[g, -0.0, 'NaN'], ARRAY[date '2024-01-01' + g % 1000], "
        "ARRAY[g] FROM generate_series(1, 100000) g; "
        "INSERT INTO late VALUES (100001, '{{1,2},{3,4}}', '{\"0044-03-15 BC\"}', '{1}')",
    )
    exp = _export(src, "late", tmp_path, batch_bytes=256 << 10, max_file_rows=40_000)
    assert sorted(exp.fallbacks) == ["d", "f"]
    assert len(exp.files) == 3
    for rel in exp.files:
        schema = pq.read_schema(tmp_path / rel)
        assert schema.field("f").type == schema.field("d").type == pa.string()
        assert schema.field("ok").type == pa.list_(pa.field("element", pa.int32()))
    cols = {c["name"]: c for c in exp.columns}
    assert "more than one dimension" in cols["f"]["fallback"]
    assert cols["d"]["fallback"] == "an array element does not fit date32[day]"
    target = table_of(dst, "late")
    assert load_table(dst, target, tmp_path, exp.files, exp.columns) == 100_001
    assert content_hash(dst, target, [c["name"] for c in exp.columns]) == exp.content_hash
    dst.commit()
    assert rows_text(dst, "late") == rows_text(src, "late")


@pytest.mark.pure
def test_conversions_of_only_nulls_and_of_text_that_is_not_the_type() -> None:
    """Only NULLs (or no values) fit every type; text that is not the type's output form is
    DoesNotFit (the column then becomes text), never another error and never other bytes."""
    from dbtools.snapshot import types

    nulls = pa.array([None, None], pa.string())
    ints = pa.list_(pa.field("element", pa.int32()))
    for arr in (nulls, pa.array([], pa.string())):
        assert types.list_from_literal(arr, ints).to_pylist() == [None] * len(arr)
        assert types.uuid_from_text(arr).to_pylist() == [None] * len(arr)
        assert types.bytes_from_hex(arr).to_pylist() == [None] * len(arr)
    for bad in (["ab12"], ["\\x0"], ["\\xzz"] * 100, ["\\x0", "\\x0ff"] * 50, ["\\x0g"]):
        with pytest.raises(types.DoesNotFit, match="hex form"):
            types.bytes_from_hex(pa.array(bad))
    assert types.bytes_from_hex(pa.array(["\\x00ff", None] * 50)).to_pylist()[:2] == [
        b"\x00\xff",
        None,
    ]


PLAN_ENUM = "CREATE TYPE mood AS ENUM ('sad', 'ok')"
PLAN_SCHEMA = """
CREATE TABLE cmp (
    id int PRIMARY KEY, f4 float4[], f8 float8[], t text[], j json, jb jsonb, u uuid,
    m mood, ms mood[], n numeric(10,2)[], ts timestamptz[], x int DEFAULT 0
);
INSERT INTO cmp VALUES
 (1, '{-0,NaN,Infinity}', '{-0,NaN,NULL}', '{"",NULL,NULL}', '{"a": 1, "a": 2}', '{"a": 1}',
  NULL, 'happy', '{happy,NULL}', '{1.50,NULL}', '{"2024-01-01 00:00:00+00",NULL}'),
 (2, '{}', '{}', '{}', '[]', '[]', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', NULL, '{}', '{}', '{}'),
 (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
"""
# One change per column, each one PostgreSQL tells apart and a careless comparison would not.
PLAN_CHANGES = {
    "f4": "UPDATE cmp SET f4 = '{0,NaN,Infinity}' WHERE id = 1",
    "f8": "UPDATE cmp SET f8 = '{-0,NaN}' WHERE id = 1",
    "t": "UPDATE cmp SET t = '{NULL,\"\",NULL}' WHERE id = 1",
    "j": 'UPDATE cmp SET j = \'{"a": 1,  "a": 2}\' WHERE id = 1',
    "jb": "UPDATE cmp SET jb = '{}' WHERE id = 2",
    "u": "UPDATE cmp SET u = '00000000-0000-0000-0000-000000000000' WHERE id = 3",
    "m": "UPDATE cmp SET m = 'sad' WHERE id = 1",
    "ms": "UPDATE cmp SET ms = '{NULL}' WHERE id = 2",
    "n": "UPDATE cmp SET n = '{1.50}' WHERE id = 1",
    "ts": "UPDATE cmp SET ts = NULL WHERE id = 2",
}


def test_plan_tells_apart_what_postgresql_tells_apart(project: Project) -> None:
    """Equal lists, json and enums are unchanged; each hostile one-column change is seen
    (float lists by spelling, json by its text, [] against NULL, '' against NULL)."""
    for url in (project.dev_url, project.prod_url):
        execute(url, PLAN_ENUM)
        execute(url, "ALTER TYPE mood ADD VALUE 'happy' BEFORE 'sad'")
        execute(url, PLAN_SCHEMA)
    prod = create_snapshot(settings_for(project.root), "prod").path
    # the label added BEFORE 'sad' comes first, in the file and for pandas
    frame = read_snapshot(prod, "cmp")
    assert list(frame["m"].cat.categories) == ["happy", "sad", "ok"] and frame["m"].cat.ordered
    # every row changed in x alone: all other columns are compared, and all are equal
    execute(project.dev_url, "UPDATE cmp SET x = 1")
    dev = create_snapshot(settings_for(project.root), "dev").path
    table = compare(dev, prod, preserved=set()).tables[0]
    assert (table.mode, table.updated, table.changed_columns) == (BY_KEY, 3, {"x": 3})
    execute(project.dev_url, "UPDATE cmp SET x = 0")
    for sql in PLAN_CHANGES.values():
        execute(project.dev_url, sql)
    dev = create_snapshot(settings_for(project.root), "dev").path
    table = compare(dev, prod, preserved=set()).tables[0]
    assert table.mode == BY_KEY
    assert table.changed_columns == {c: 1 for c in PLAN_CHANGES}


def test_read_snapshot_keeps_null_apart_from_nan(project: Project) -> None:
    """Unconstrained numeric is text in the file and Decimal in pandas: NULL stays missing,
    'NaN' is Decimal('NaN') (pandas' string dtype hands NULL over as NaN, once made it one)."""
    execute(
        project.dev_url,
        "CREATE TABLE num (id int PRIMARY KEY, n numeric, f float8[]);"
        "INSERT INTO num VALUES (1, 'NaN', '{NaN,NULL}'), (2, NULL, NULL), (3, '1.50', '{}'),"
        "(4, '-Infinity', '{-0}')",
    )
    path = create_snapshot(settings_for(project.root), "dev").path
    frame = read_snapshot(path, "num").set_index("id").sort_index()
    n = frame["n"].tolist()
    assert str(n[0]) == "NaN" and n[1] is None and str(n[2]) == "1.50"
    assert str(n[3]) == "-Infinity"
    f = frame["f"].tolist()
    assert str(f[0]) == "[nan, None]" and f[1] is pd.NA and f[2] == []
    assert str(f[3]) == "[-0.0]"


def test_a_row_wider_than_the_block_and_a_value_a_list_cannot_hold(
    pair: tuple,
    tmp_path: Path,
) -> None:
    """Both retries in one export: the block is widened for a 300 kB array value, and the
    column with a 2-D value becomes text; the wide list column stays a list."""
    src, dst = pair
    create_both(
        src,
        dst,
        "DROP TABLE IF EXISTS wide_mix; CREATE TABLE wide_mix (id int, big text[], grid int4[])",
    )
    _fill(
        src,
        "INSERT INTO wide_mix SELECT g, ARRAY['s' || g], ARRAY[g] FROM generate_series(1, 500) g;"
        "INSERT INTO wide_mix SELECT 501, array_agg(repeat('x,\"y', 10) || g), '{{1},{2}}' "
        "FROM generate_series(1, 5000) g",
    )
    exp = _export(src, "wide_mix", tmp_path, batch_bytes=64 << 10)
    cols = {c["name"]: c for c in exp.columns}
    assert exp.fallbacks == ["grid"]
    assert cols["big"]["arrow_type"] == _list("string")
    # written with the widened block: no statistics for variable-width columns then
    meta = pq.ParquetFile(tmp_path / exp.files[0]).metadata.row_group(0)
    assert meta.column(0).is_stats_set and not meta.column(1).is_stats_set
    target = table_of(dst, "wide_mix")
    assert load_table(dst, target, tmp_path, exp.files, exp.columns) == 501
    assert content_hash(dst, target, [c["name"] for c in exp.columns]) == exp.content_hash
    dst.commit()
    assert rows_text(dst, "wide_mix") == rows_text(src, "wide_mix")


@pytest.mark.pure
def test_differs_tells_apart_adjacent_floats_and_not_equal_ones() -> None:
    """The plan's float comparison (by DuckDB's spelling) over what a file holds: adjacent
    doubles and floats, -0 and 0, NaN, subnormals, NULL elements; equal lists are equal."""
    import math

    import duckdb
    import numpy as np

    from dbtools.changes.rows import _differs

    def pairs(dtype: type) -> list[tuple[list[float | None] | None, list[float | None] | None]]:
        one = float(dtype(0.1))
        up = float(np.nextafter(dtype(0.1), dtype(1)))
        tiny = float(np.finfo(dtype).smallest_subnormal)
        return [
            ([one], [up]),
            ([-0.0], [0.0]),
            ([math.nan], [0.0]),
            ([tiny], [0.0]),
            ([None], [math.nan]),
            ([], None),
            ([1.0, None], [1.0]),
        ]

    for dtype, arrow in ((np.float64, pa.float64()), (np.float32, pa.float32())):
        typ = pa.list_(pa.field("element", arrow))
        spelled = str(typ)
        different = pairs(dtype)
        same = [(a, a) for a, _ in different] + [(b, b) for _, b in different]
        table = pa.table(
            {
                "a": pa.array([a for a, _ in different + same], typ),
                "b": pa.array([b for _, b in different + same], typ),
            }
        )
        con = duckdb.connect()
        con.register("t", table)
        rows = con.execute(f"SELECT {_differs('a', 'b', spelled)} FROM t").fetchall()
        assert [r[0] for r in rows] == [True] * len(different) + [False] * len(same), spelled
        # and the plain float columns, as before
        plain = pa.table(
            {"a": pa.array([-0.0, math.nan], arrow), "b": pa.array([0.0, math.nan], arrow)}
        )
        con.register("p", plain)
        rows = con.execute(f"SELECT {_differs('a', 'b', str(arrow))} FROM p").fetchall()
        assert [r[0] for r in rows] == [True, False]


def _array_out(items: list[str | None]) -> str:
    """PostgreSQL's array_out for text elements: quoted when empty, NULL in any case, or
    holding a quote, backslash, brace, comma or white space; `\\` and `"` escaped inside."""

    def element(s: str | None) -> str:
        if s is None:
            return "NULL"
        if s and s.lower() != "null" and not any(c in s for c in '"\\{},  \t\n\r\v\f'):
            return s
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'

    return "{" + ",".join(element(i) for i in items) + "}"


_PARSER_ELEMENT = st.text(alphabet=st.sampled_from(list('ab"\\,{} \tN\nUL\x01é😀')), max_size=6)
_PARSER_ROWS = st.lists(
    st.none()
    | st.lists(
        st.none() | _PARSER_ELEMENT | st.sampled_from(["NULL", "null", "", '","', '\\"', '"\\']),
        max_size=5,
    ),
    max_size=8,
)


@pytest.mark.pure
@settings(max_examples=400, deadline=None)
@given(_PARSER_ROWS)
def test_array_literal_parser_inverts_array_out(rows: list[list[str | None] | None]) -> None:
    """types.list_from_literal gives back exactly the elements array_out printed, for any
    mix of rows in one batch, and for a slice of the batch."""
    from dbtools.snapshot import types

    typ = pa.list_(pa.field("element", pa.string()))
    arr = pa.array([None if r is None else _array_out(r) for r in rows], pa.string())
    assert types.list_from_literal(arr, typ).to_pylist() == rows
    if len(rows) > 2:
        assert types.list_from_literal(arr.slice(1, len(rows) - 2), typ).to_pylist() == rows[1:-1]


def test_bytea_printed_in_escape_form_falls_back_instead_of_being_misread(
    pair: tuple,
    tmp_path: Path,
) -> None:
    """dbtools sessions print bytea as hex; a connection that prints the escape form (`abc`,
    `\\001`) must not have its text decoded as hex digits (`ab12` was once read as 0x12):
    the column falls back to text, which PostgreSQL reads back to the same bytes."""
    src, dst = pair
    create_both(src, dst, "DROP TABLE IF EXISTS esc; CREATE TABLE esc (id int, b bytea)")
    _fill(
        src,
        "INSERT INTO esc SELECT g, CASE WHEN g % 3 = 0 THEN NULL ELSE convert_to('ab' || g, "
        "'UTF8') END FROM generate_series(1, 200) g; INSERT INTO esc VALUES (0, '\\x0001ff')",
    )
    with src.cursor() as cur:
        cur.execute("SET bytea_output = 'escape'")
    src.commit()
    try:
        exp = _export(src, "esc", tmp_path)
    finally:
        with src.cursor() as cur:
            cur.execute("SET bytea_output = 'hex'")
        src.commit()
    cols = {c["name"]: c for c in exp.columns}
    assert exp.fallbacks == ["b"] and cols["b"]["fallback"] == "a value is not bytea's hex form"
    target = table_of(dst, "esc")
    assert load_table(dst, target, tmp_path, exp.files, exp.columns) == 201
    dst.commit()
    assert rows_text(dst, "esc") == rows_text(src, "esc")
