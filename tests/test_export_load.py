"""export_table / load_table / content_hash against real databases: files, parts, fallbacks,
the caller's transaction, and clear errors that leave the target unchanged."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import psycopg2
import psycopg2.extensions
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dbtools.errors import EXIT_CHECK_FAILED, SnapshotError
from dbtools.snapshot.export import export_table
from dbtools.snapshot.hashing import content_hash
from dbtools.snapshot.load import load_table

from support.db import execute
from support.export_load import connect, export, load, table_of

PRISMA_DDL = """
CREATE TYPE "UserRole" AS ENUM ('CLIENT', 'BUILDER', 'ADMIN', 'SUBSCRIBER');
CREATE TABLE "User" (
  id text PRIMARY KEY, email text NOT NULL, "emailVerified" timestamp(3),
  roles "UserRole"[] NOT NULL DEFAULT ARRAY['CLIENT']::"UserRole"[],
  "isDemo" boolean NOT NULL DEFAULT false, "hourlyRate" numeric(10,2),
  "createdAt" timestamp(3) NOT NULL DEFAULT CURRENT_TIMESTAMP
);
"""


def rows_text(url: str, table: str) -> list[str]:
    return [r[0] for r in execute(url, f"SELECT t::text FROM {table} t ORDER BY 1")]


@pytest.fixture
def src_dst(make_db: Callable[[str], str]) -> tuple[str, str]:
    src, dst = make_db("src"), make_db("dst")
    for url in (src, dst):
        execute(url, PRISMA_DDL)
    execute(
        src,
        """INSERT INTO "User" (id, email, "emailVerified", roles, "isDemo", "hourlyRate")
           SELECT 'u' || g, 'user' || g || '@example.com',
                  CASE WHEN g % 3 = 0 THEN NULL
                       ELSE timestamp '2024-01-01' + g * interval '1 s' END,
                  CASE WHEN g % 2 = 0 THEN ARRAY['CLIENT', 'ADMIN']::"UserRole"[]
                       ELSE '{}'::"UserRole"[] END,
                  g % 5 = 0, CASE WHEN g % 7 = 0 THEN NULL ELSE g * 1.25 END
           FROM generate_series(1, 2500) g""",
    )
    return src, dst


def test_prisma_table_roundtrip_native_types_and_manifest_columns(
    src_dst: tuple[str, str], tmp_path: Path
) -> None:
    src, dst = src_dst
    exp = export(src, "public.User", tmp_path)
    assert exp.table == "public.User"
    assert exp.rows == 2500
    assert exp.files == ["public.User.parquet"]
    assert exp.bytes == (tmp_path / "public.User.parquet").stat().st_size > 0
    assert exp.content_hash.startswith("v1:2500:")
    cols = {c["name"]: c for c in exp.columns}
    assert cols["roles"]["pg_type"] == '"UserRole"[]'
    assert cols["roles"]["encoding"] == "native"  # an enum[] is a list of dictionary strings
    assert cols["roles"]["enum_labels"] == ["CLIENT", "BUILDER", "ADMIN", "SUBSCRIBER"]
    assert cols["hourlyRate"]["arrow_type"] == "decimal128(10, 2)"
    assert cols["createdAt"]["encoding"] == "native"
    assert load(dst, "public.User", tmp_path, exp) == 2500
    assert rows_text(dst, '"User"') == rows_text(src, '"User"')
    # The file is what an analyst opens: real timestamps, booleans and decimals.
    data = pq.read_table(tmp_path / "public.User.parquet")
    assert data.schema.field("emailVerified").type == pa.timestamp("us")
    assert data.schema.field("isDemo").type == pa.bool_()
    assert pa.types.is_list(data.schema.field("roles").type)


def test_max_file_rows_writes_part_files_that_load_back(
    src_dst: tuple[str, str], tmp_path: Path
) -> None:
    src, dst = src_dst
    exp = export(src, "public.User", tmp_path, max_file_rows=1000, batch_bytes=16 << 10)
    assert exp.files == [f"public.User/part-{i:05d}.parquet" for i in range(3)]
    assert not (tmp_path / "public.User.parquet").exists()
    assert [pq.ParquetFile(tmp_path / f).metadata.num_rows for f in exp.files] == [1000, 1000, 500]
    assert load(dst, "public.User", tmp_path, exp, freeze=True) == 2500
    assert rows_text(dst, '"User"') == rows_text(src, '"User"')


def test_empty_table_exports_a_readable_file_and_loads_nothing(
    make_db: Callable[[str], str], tmp_path: Path
) -> None:
    src, dst = make_db("src"), make_db("dst")
    for url in (src, dst):
        execute(url, "CREATE TABLE e (id int, at timestamptz)")
    exp = export(src, "public.e", tmp_path)
    assert exp.rows == 0
    assert exp.content_hash == "v1:0:0"
    assert pq.read_table(tmp_path / "public.e.parquet").schema.names == ["id", "at"]
    assert load(dst, "public.e", tmp_path, exp) == 0


def test_out_of_range_values_switch_the_column_to_text_not_an_error(
    make_db: Callable[[str], str], tmp_path: Path
) -> None:
    src, dst = make_db("src"), make_db("dst")
    for url in (src, dst):
        execute(url, "CREATE TABLE ev (id int, at timestamptz, d date, price numeric(8,2))")
    # 50k rows so the bad value sits far past the first Arrow block.
    execute(
        src,
        "INSERT INTO ev SELECT g, now(), current_date, 1.5 FROM generate_series(1, 50000) g;"
        "INSERT INTO ev VALUES (0, 'infinity', '0044-03-15 BC', 'NaN')",
    )
    exp = export(src, "public.ev", tmp_path, batch_bytes=64 << 10)
    cols = {c["name"]: c for c in exp.columns}
    for name in ("at", "d", "price"):
        assert cols[name]["encoding"] == "text"
        assert cols[name]["fallback"].startswith("a value does not fit")
    assert cols["id"]["encoding"] == "native"
    assert sorted(exp.fallbacks) == ["at", "d", "price"]
    assert pq.read_schema(tmp_path / "public.ev.parquet").field("at").type == pa.string()
    load(dst, "public.ev", tmp_path, exp)
    assert execute(dst, "SELECT at::text, d::text, price::text FROM ev WHERE id = 0") == [
        ("infinity", "0044-03-15 BC", "NaN")
    ]
    assert rows_text(dst, "ev") == rows_text(src, "ev")


def test_export_stays_in_the_callers_snapshot_and_transaction(
    src_dst: tuple[str, str], tmp_path: Path
) -> None:
    src, _ = src_dst
    conn = connect(src)
    try:
        conn.set_session(isolation_level="REPEATABLE READ")
        table = table_of(conn, "public.User")  # the snapshot is taken here
        with conn.cursor() as cur:
            cur.execute("SELECT txid_current()")
            txid = cur.fetchone()
        execute(src, "DELETE FROM \"User\" WHERE id <> 'u1'")  # committed by another session
        exp = export_table(conn, table, tmp_path)
        assert exp.rows == 2500
        with conn.cursor() as cur:
            cur.execute("SELECT txid_current()")
            assert cur.fetchone() == txid
        assert conn.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_INTRANS
    finally:
        conn.close()


def test_content_hash_ignores_order_but_sees_one_changed_value(
    make_db: Callable[[str], str],
) -> None:
    a, b = make_db("a"), make_db("b")
    for url in (a, b):
        execute(url, "CREATE TABLE h (id int, v text)")
    execute(a, "INSERT INTO h VALUES (1, 'x'), (2, ''), (3, NULL)")
    execute(b, "INSERT INTO h VALUES (3, NULL), (1, 'x'), (2, '')")

    def digest(url: str) -> str:
        conn = connect(url)
        try:
            return content_hash(conn, table_of(conn, "public.h"), ["id", "v"])
        finally:
            conn.close()

    assert digest(a) == digest(b)
    execute(b, "UPDATE h SET v = NULL WHERE id = 2")  # '' -> NULL must be noticed
    assert digest(a) != digest(b)


def test_load_into_a_table_lacking_a_column_is_a_clear_error(
    src_dst: tuple[str, str], make_db: Callable[[str], str], tmp_path: Path
) -> None:
    src, _ = src_dst
    exp = export(src, "public.User", tmp_path)
    other = make_db("other")
    execute(other, 'CREATE TABLE "User" (id text PRIMARY KEY, email text)')
    conn = connect(other)
    try:
        with pytest.raises(SnapshotError) as err:
            load_table(conn, table_of(conn, "public.User"), tmp_path, exp.files, exp.columns)
    finally:
        conn.close()
    assert "public.User" in err.value.message
    assert "emailVerified" in err.value.message
    assert err.value.exit_code == EXIT_CHECK_FAILED


def test_data_that_does_not_fit_fails_cleanly_and_the_target_is_unchanged(
    make_db: Callable[[str], str], tmp_path: Path
) -> None:
    src, dst = make_db("src"), make_db("dst")
    execute(src, "CREATE TABLE n (id int, v int8)")
    execute(
        src,
        "INSERT INTO n SELECT g, g FROM generate_series(1, 10) g; INSERT INTO n VALUES (11, 99999)",
    )
    execute(dst, "CREATE TABLE n (id int, v int2)")
    execute(dst, "INSERT INTO n VALUES (100, 1)")
    exp = export(src, "public.n", tmp_path)
    conn = connect(dst)
    try:
        with pytest.raises(SnapshotError) as err:
            load_table(conn, table_of(conn, "public.n"), tmp_path, exp.files, exp.columns)
        conn.rollback()
    finally:
        conn.close()
    assert err.value.message.startswith("cannot load public.n: ")
    assert "out of range" in err.value.message
    assert "\n" not in err.value.message
    assert execute(dst, "SELECT id, v FROM n") == [(100, 1)]


def test_missing_or_corrupt_file_is_a_snapshot_error(
    src_dst: tuple[str, str], tmp_path: Path
) -> None:
    src, dst = src_dst
    exp = export(src, "public.User", tmp_path)
    conn = connect(dst)
    try:
        table = table_of(conn, "public.User")
        with pytest.raises(SnapshotError, match="missing"):
            load_table(conn, table, tmp_path, ["nope.parquet"], exp.columns)
        conn.rollback()
        path = tmp_path / exp.files[0]
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        with pytest.raises(SnapshotError, match=r"public\.User\.parquet"):
            load_table(conn, table, tmp_path, exp.files, exp.columns)
        conn.rollback()
    finally:
        conn.close()
    assert execute(dst, 'SELECT count(*) FROM "User"') == [(0,)]


def test_freeze_outside_a_fresh_truncate_is_refused_with_a_clear_error(
    src_dst: tuple[str, str], tmp_path: Path
) -> None:
    src, dst = src_dst
    exp = export(src, "public.User", tmp_path)
    conn = connect(dst)
    try:
        with pytest.raises(SnapshotError, match="FREEZE"):
            load_table(
                conn, table_of(conn, "public.User"), tmp_path, exp.files, exp.columns, freeze=True
            )
        conn.rollback()
    finally:
        conn.close()


# --- the content hash on a second connection in the same snapshot (hash_conn) ----------------


def snapshot_pair(
    url: str,
) -> tuple[psycopg2.extensions.connection, psycopg2.extensions.connection]:
    """conn and hash_conn as `snapshot create` sets them up: the second imports the first's
    exported snapshot."""
    conn, hash_conn = connect(url), connect(url)
    for c in (conn, hash_conn):
        c.set_session(isolation_level="REPEATABLE READ", readonly=True)
    with conn.cursor() as cur:
        cur.execute("SELECT pg_export_snapshot()")
        row = cur.fetchone()
    assert row is not None
    with hash_conn.cursor() as cur:
        cur.execute("SET TRANSACTION SNAPSHOT %s", (row[0],))
    return conn, hash_conn


def test_concurrent_hash_describes_the_exported_snapshot_and_loads_back(
    src_dst: tuple[str, str], tmp_path: Path
) -> None:
    src, dst = src_dst
    for sub in ("serial", "concurrent"):
        (tmp_path / sub).mkdir()
    serial = export(src, "public.User", tmp_path / "serial")
    conn, hash_conn = snapshot_pair(src)
    try:
        table = table_of(conn, "public.User")
        # Committed after the snapshot was taken: neither the rows nor the hash may see it.
        execute(src, "DELETE FROM \"User\" WHERE id <> 'u1'")
        exp = export_table(conn, table, tmp_path / "concurrent", hash_conn=hash_conn)
        assert hash_conn.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_INTRANS
    finally:
        conn.close()
        hash_conn.close()
    assert exp.rows == 2500
    assert exp.content_hash == serial.content_hash
    execute(src, 'TRUNCATE "User"')  # the source is gone; the snapshot alone restores it
    assert load(dst, "public.User", tmp_path / "concurrent", exp) == 2500


@pytest.mark.parametrize("case", ["own snapshot", "read committed"])
def test_hash_conn_outside_the_snapshot_is_refused_before_anything_is_written(
    src_dst: tuple[str, str], tmp_path: Path, case: str
) -> None:
    src, _ = src_dst
    conn, _unused = snapshot_pair(src)
    _unused.close()
    other = connect(src)
    try:
        table = table_of(conn, "public.User")
        execute(src, "DELETE FROM \"User\" WHERE id = 'u2'")
        if case == "own snapshot":
            other.set_session(isolation_level="REPEATABLE READ", readonly=True)
        with pytest.raises(SnapshotError, match="not in the export's snapshot") as err:
            export_table(conn, table, tmp_path, hash_conn=other)
    finally:
        conn.close()
        other.close()
    assert err.value.message.startswith("cannot export public.User: ")
    assert list(tmp_path.iterdir()) == []


def test_failed_export_cancels_the_concurrent_hash_and_says_why(
    make_db: Callable[[str], str], tmp_path: Path
) -> None:
    src = make_db("src")
    execute(src, "CREATE TABLE big (id int8, v text)")
    execute(src, "INSERT INTO big SELECT g, repeat('x', 50) FROM generate_series(1, 200000) g")
    conn, hash_conn = snapshot_pair(src)
    try:
        table = table_of(conn, "public.big")
        with pytest.raises(SnapshotError, match=r"cannot write the snapshot of public\.big"):
            export_table(conn, table, tmp_path / "missing-dir", hash_conn=hash_conn)
        # The hash connection is not stuck in a query: a rollback makes it usable again.
        hash_conn.rollback()
        with hash_conn.cursor() as cur:
            cur.execute("SELECT 1")
            assert cur.fetchone() == (1,)
    finally:
        conn.close()
        hash_conn.close()


def test_text_copy_escapes_and_null_markers_load_back_exactly(
    make_db: Callable[[str], str], tmp_path: Path
) -> None:
    src, dst = make_db("src"), make_db("dst")
    for url in (src, dst):
        execute(url, "CREATE TABLE esc (id int, v text, at timestamptz, tags text[])")
    execute(
        src,
        r"""INSERT INTO esc VALUES
           (1, E'\\N', '2024-05-14 10:21:12.5+02', ARRAY[E'\\N', NULL]),
           (2, E'a\tb\nc\rd\\e', NULL, ARRAY[E'tab\there']),
           (3, E'\\.', '0001-01-01 00:00:00+00', '{}'),
           (4, '', '9999-12-31 23:59:59.999999+00', NULL),
           (5, NULL, NULL, ARRAY[''])""",
    )
    exp = export(src, "public.esc", tmp_path)
    assert {c["name"]: c["encoding"] for c in exp.columns}["at"] == "native"
    assert load(dst, "public.esc", tmp_path, exp) == 5
    assert rows_text(dst, "esc") == rows_text(src, "esc")
    assert execute(dst, "SELECT id FROM esc WHERE v IS NULL") == [(5,)]
    assert execute(dst, "SELECT v FROM esc WHERE id = 1") == [("\\N",)]


@pytest.mark.parametrize("rows", [3, 500])  # value by value, and the whole-array decode
def test_bytea_is_stored_as_its_bytes_and_loads_back_exactly(
    make_db: Callable[[str], str], tmp_path: Path, rows: int
) -> None:
    src, dst = make_db("src"), make_db("dst")
    for url in (src, dst):
        execute(url, "CREATE DOMAIN blob AS bytea CHECK (octet_length(VALUE) < 100)")
        execute(url, "CREATE TABLE b (id int PRIMARY KEY, v bytea, d blob)")
    execute(
        src,
        "INSERT INTO b SELECT g, CASE g %% 4 WHEN 0 THEN NULL WHEN 1 THEN ''::bytea "
        "ELSE decode(md5(g::text) || '005c0a09', 'hex') END, "
        "CASE WHEN g %% 3 = 0 THEN NULL ELSE int4send(g) END FROM generate_series(1, %s) g",
        (rows,),
    )
    exp = export(src, "public.b", tmp_path)
    cols = {c["name"]: c for c in exp.columns}
    assert (cols["v"]["arrow_type"], cols["v"]["encoding"]) == ("binary", "native")
    assert cols["d"]["arrow_type"] == "binary" and cols["d"]["domain"] is True
    # The analyst's file holds the raw bytes, NULL and empty kept apart.
    data = pq.read_table(tmp_path / exp.files[0]).sort_by("id").to_pylist()
    expected = execute(src, "SELECT id, v, d FROM b ORDER BY id")
    assert [(r["id"], r["v"], r["d"]) for r in data] == [
        (i, None if v is None else bytes(v), None if d is None else bytes(d))
        for i, v, d in expected
    ]
    assert load(dst, "public.b", tmp_path, exp) == rows
    assert rows_text(dst, "b") == rows_text(src, "b")


def test_a_snapshot_holding_bytea_as_hex_text_still_loads(
    make_db: Callable[[str], str], tmp_path: Path
) -> None:
    """Snapshots written before bytea became binary keep its `\\x` text; they still restore."""
    dst = make_db("dst")
    execute(dst, "CREATE TABLE b (id int PRIMARY KEY, v bytea)")
    table = pa.table({"id": pa.array([1, 2, 3], pa.int32()), "v": ["\\x00ff5c", None, "\\x"]})
    pq.write_table(table, tmp_path / "public.b.parquet")
    conn = connect(dst)
    try:
        cols = [{"name": "id"}, {"name": "v"}]
        files = ["public.b.parquet"]
        assert load_table(conn, table_of(conn, "public.b"), tmp_path, files, cols) == 3
        conn.commit()
    finally:
        conn.close()
    assert execute(dst, "SELECT id, encode(v, 'hex') FROM b ORDER BY id") == [
        (1, "00ff5c"),
        (2, None),
        (3, ""),
    ]
