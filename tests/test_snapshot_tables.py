"""Tables that are unusual as tables: inheritance parents (#10.4), tables without columns
(#10.6) and names no file system likes (#10.8): each exports its own rows exactly once,
under a safe and unique file name, and loads back with the same content hash."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dbtools import catalog
from dbtools.snapshot import create, hashing
from dbtools.snapshot import export as export_mod
from dbtools.snapshot import format as fmt
from dbtools.snapshot.export import export_table
from dbtools.snapshot.load import load_table
from dbtools.snapshot.parquet_files import file_stem

from support.db import execute
from support.export_load import connect, export, load
from support.project import Project

INHERITANCE = """
CREATE TABLE parent (id int, v text);
CREATE TABLE child (extra int) INHERITS (parent);
CREATE TABLE part (id int, v text) PARTITION BY RANGE (id);
CREATE TABLE part_lo PARTITION OF part FOR VALUES FROM (0) TO (100);
CREATE TABLE part_hi PARTITION OF part FOR VALUES FROM (100) TO (1000);
"""


def _file_rows(dest: Path, files: list[str]) -> int:
    return sum(pq.ParquetFile(dest / f).metadata.num_rows for f in files)


@pytest.fixture
def pair(make_db: Callable[[str], str]) -> tuple[str, str]:
    return make_db("src"), make_db("dst")


def test_an_inheritance_parent_exports_and_hashes_its_own_rows_only(
    pair: tuple[str, str], tmp_path: Path
) -> None:
    src, dst = pair
    for url in pair:
        execute(url, INHERITANCE)
    execute(src, "INSERT INTO parent VALUES (1, 'p1'), (2, 'p2')")
    execute(src, "INSERT INTO child VALUES (3, 'c3', 30), (4, 'c4', 40), (5, 'c5', 50)")
    execute(src, "INSERT INTO part SELECT g, 'x' || g FROM generate_series(1, 300) g")

    parent = export(src, "public.parent", tmp_path)
    child = export(src, "public.child", tmp_path)
    part = export(src, "public.part", tmp_path)
    assert (parent.rows, child.rows, part.rows) == (2, 3, 300)
    assert _file_rows(tmp_path, parent.files) == 2
    assert parent.content_hash.split(":")[1] == "2"
    assert _file_rows(tmp_path, part.files) == 300  # a partitioned table is read whole

    assert load(dst, "public.child", tmp_path, child) == 3
    assert load(dst, "public.parent", tmp_path, parent) == 2
    assert load(dst, "public.part", tmp_path, part) == 300
    # the parent's rows once, the child's once: no row appears twice
    assert execute(dst, "SELECT id FROM parent ORDER BY 1") == [(i,) for i in range(1, 6)]
    assert execute(dst, "SELECT id FROM ONLY parent ORDER BY 1") == [(1,), (2,)]
    assert execute(dst, "SELECT count(*) FROM part") == [(300,)]


def test_a_table_without_columns_keeps_its_row_count(pair: tuple[str, str], tmp_path: Path) -> None:
    src, dst = pair
    for url in pair:
        execute(url, "CREATE TABLE nothing ()")
    execute(src, "INSERT INTO nothing SELECT FROM generate_series(1, 7)")
    conn = connect(src)
    try:
        conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
        oid = execute(src, "SELECT 'nothing'::regclass::oid")[0][0]
        table = catalog.Table("public", "nothing", oid, ())
        ex = export_table(conn, table, tmp_path)
    finally:
        conn.close()
    assert (ex.rows, ex.columns) == (7, [])
    path = tmp_path / ex.files[0]
    # what an analyst's tools read back: 7 rows, one placeholder column of nulls
    assert pq.read_table(path).num_rows == 7
    assert pq.read_table(path).column_names == [export_mod.NO_COLUMNS_FIELD]
    assert duckdb.sql(f"SELECT count(*) FROM '{path}'").fetchall() == [(7,)]

    conn = connect(dst)
    try:
        assert load_table(conn, table, tmp_path, ex.files, ex.columns) == 7
        assert hashing.content_hash(conn, table, []) == ex.content_hash
        conn.commit()
    finally:
        conn.close()
    assert execute(dst, "SELECT count(*) FROM nothing") == [(7,)]


def test_snapshot_create_carries_zero_column_tables_in_the_manifest(project: Project) -> None:
    execute(project.dev_url, "CREATE TABLE nothing (); CREATE TABLE other (id int)")
    execute(project.dev_url, "INSERT INTO nothing SELECT FROM generate_series(1, 4)")
    from dbtools.config import load_settings

    result = create.create_snapshot(load_settings(), "dev")
    entry = result.manifest.tables["public.nothing"]
    assert (entry.rows, entry.columns) == (4, [])
    assert fmt.verify_dir(result.path)[1] == []


# Every character the brief names, plus unicode; '.' inside names is what made collisions.
WEIRD = ["a.b", 'q"uote', "s'ingle", "sp ace", "new\nline", "pct%2F", "sl/ash", "ünï✓", ".hidden"]


@pytest.mark.pure
def test_file_stems_are_safe_and_never_collide() -> None:
    tables = [catalog.Table(s, n, 0, ()) for s in [*WEIRD, "a", "public"] for n in [*WEIRD, "b.c"]]
    tables.append(catalog.Table("a.b", "c", 0, ()))  # and ("a", "b.c") from the list
    stems = [file_stem(t) for t in tables]
    assert len(set(stems)) == len(stems)
    for stem in stems:
        assert "/" not in stem and "\0" not in stem and "\n" not in stem
        assert stem.count(".") == 1 and not stem.startswith(".")
        assert len(stem.encode()) <= 200
    long = [
        catalog.Table("s" * 63, "%" * 63, 0, ()),
        catalog.Table("s" * 63, "%" * 62 + "x", 0, ()),
    ]
    assert len({file_stem(t) for t in long}) == 2
    assert all(len(file_stem(t).encode()) <= 200 for t in long)


@pytest.mark.pure
@settings(max_examples=200, deadline=None)
@given(
    st.tuples(st.text(min_size=1, max_size=20), st.text(min_size=1, max_size=20)).filter(
        lambda p: "\0" not in p[0] + p[1]
    ),
    st.tuples(st.text(min_size=1, max_size=20), st.text(min_size=1, max_size=20)),
)
def test_different_names_never_share_a_stem(a: tuple[str, str], b: tuple[str, str]) -> None:
    if a != b:
        assert file_stem(catalog.Table(*a, 0, ())) != file_stem(catalog.Table(*b, 0, ()))


def test_weird_names_snapshot_and_restore_with_their_real_names(project: Project) -> None:
    for name in WEIRD:
        q = '"' + name.replace('"', '""') + '"'
        execute(project.dev_url, f"CREATE TABLE {q} (id int PRIMARY KEY, v text)")
        execute(project.dev_url, f"INSERT INTO {q.replace('%', '%%')} VALUES (1, %s)", (name,))
    result = project.invoke("snapshot", "create", "--target", "dev", "--json")
    assert result.exit_code == 0, result.output
    path = Path(json.loads(result.output)["path"])
    manifest = fmt.read_manifest(path)
    assert sorted(manifest.tables) == sorted(f"public.{n}" for n in WEIRD)
    for name in WEIRD:
        entry = manifest.tables[f"public.{name}"]
        assert (entry.schema, entry.name, entry.rows) == ("public", name, 1)
        for rel in entry.files:
            assert (path / rel).parent == path  # no file outside the snapshot's own folder
    assert fmt.verify_dir(path)[1] == []
    listed = project.invoke("snapshot", "show", str(path))
    assert listed.exit_code == 0, listed.output

    for name in WEIRD:  # the restore must bring every table's row back
        q = '"' + name.replace('"', '""') + '"'
        execute(project.dev_url, f"DELETE FROM {q}")
    restored = project.invoke("restore", str(path), "--target", "dev", "--yes")
    assert restored.exit_code == 0, restored.output
    for name in WEIRD:
        q = '"' + name.replace('"', '""') + '"'
        assert execute(project.dev_url, f"SELECT id, v FROM {q}") == [(1, name)]


def test_a_sequence_owned_by_nothing_keeps_is_called_false(project: Project) -> None:
    """A fresh free sequence (is_called = false) gives its first value again after a restore,
    not the one after it; a used one continues where it was."""
    execute(project.dev_url, "CREATE SEQUENCE fresh START 5; CREATE SEQUENCE used START 5")
    execute(project.dev_url, "SELECT nextval('used')")
    result = project.invoke("snapshot", "create", "--target", "dev", "--json")
    assert result.exit_code == 0, result.output
    path = json.loads(result.output)["path"]
    free = {s["name"]: s for s in fmt.read_manifest(Path(path)).sequences}
    assert (free["public.fresh"]["last_value"], free["public.fresh"]["is_called"]) == (5, False)
    assert (free["public.used"]["last_value"], free["public.used"]["is_called"]) == (5, True)
    execute(project.dev_url, "SELECT nextval('fresh'), nextval('used')")
    restored = project.invoke("restore", path, "--target", "dev", "--yes")
    assert restored.exit_code == 0, restored.output
    assert execute(project.dev_url, "SELECT nextval('fresh'), nextval('used')") == [(5, 6)]


def test_snapshot_create_refuses_an_unloadable_type_and_writes_nothing(project: Project) -> None:
    execute(project.dev_url, "CREATE TABLE ok (id int); CREATE TABLE tree (e pg_node_tree)")
    result = project.invoke("snapshot", "create", "--target", "dev")
    assert result.exit_code == 1, result.output
    assert "public.tree.e (pg_node_tree)" in result.output
    assert "Traceback" not in result.output
    dev_dir = project.snapshot_dir / "dev"
    assert not dev_dir.exists() or list(dev_dir.iterdir()) == []
