"""Issue #10: real-world schemas round-trip exactly, on the path an operator takes.

Three corpora (tests/corpus/: e-commerce, multi-tenant SaaS over two schemas, media with
large values) are created with plain SQL in a dev and a prod database, filled with different
deterministic rows on each side, and configured in a project's setup.cfg as an operator
would (schemas, excluded and preserved tables, an empty migrations directory so both sides
have the same applied migrations). Then, through the CLI:

- `dbtools sync-data --yes` exits 0, and afterwards every relation of prod (tables,
  partitions, inheritance children, the materialized view; each read with ONLY) has dev's
  rows exactly (md5 of the ordered row text), except preserved tables, which keep prod's
  rows, and excluded ones, which are untouched; sequences hold dev's last_value/is_called;
  pg_dump --schema-only of prod is what it was (trigger states, deferrability...); no
  trigger fired during the load (the audit table holds dev's rows, nothing more);
- `dbtools rollback --yes` then returns prod exactly to its state before the sync;
- `dbtools snapshot create --target dev` + `dbtools.read_snapshot` gives an analyst the rows
  of odd-named tables.

The helpers' own soundness (the schemas create cleanly, the generators are deterministic,
the state of a pg_dump | psql copy equals its source's) is tested here too, so that a failure
of the round trips is the product's, not the corpus's.
"""

from __future__ import annotations

import difflib
import json
import math
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from corpus import (
    CORPORA,
    Corpus,
    copy_database,
    create_schema,
    execute,
    fill,
    schema_dump,
    sequence_owners,
    sequence_states,
    table_states,
)

import dbtools

from support.db import create_database, drop_database
from support.project import Project

Build = Callable[..., Project]


@pytest.fixture
def corpus_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Build]:
    """Factory: build(corpus, scale=1) -> a Project whose dev and prod hold the corpus.

    Like conftest's `project`: databases named as setup.cfg expects, URLs in the environment,
    the working directory at the project root; setup.cfg is the corpus's own.
    """
    created: list[str] = []

    def build(c: Corpus, scale: int = 1) -> Project:
        tag = uuid.uuid4().hex[:8]
        dev_name, prod_name = f"dbt_{tag}_dev", f"dbt_{tag}_prod"
        created.extend([dev_name, prod_name])
        dev_url, prod_url = create_database(dev_name), create_database(prod_name)
        for url, side in ((dev_url, "dev"), (prod_url, "prod")):
            create_schema(url, c)
            fill(url, c, side, scale)
        root = tmp_path / f"proj-{c.name}"
        (root / "migrations").mkdir(parents=True)
        (root / "setup.cfg").write_text(
            c.setup_cfg(dev_name, prod_name, root / "migrations"), encoding="utf-8"
        )
        snapshot_dir = root / "snapshots"
        env = {
            "DEV_DATABASE_URL": dev_url,
            "PROD_DATABASE_URL": prod_url,
            "DBTOOLS_SNAPSHOT_DIR": str(snapshot_dir),
            "DBTOOLS_DEV_DATABASE": "",
            "DBTOOLS_PROD_DATABASE": "",
        }
        for key, value in env.items():
            if value:
                monkeypatch.setenv(key, value)
            else:
                monkeypatch.delenv(key, raising=False)
        monkeypatch.chdir(root)
        return Project(root, dev_url, prod_url, dev_name, prod_name, snapshot_dir, env)

    try:
        yield build
    finally:
        for name in created:
            drop_database(name)


# --- what "exactly" means ------------------------------------------------------------------


def _state_lines(
    got: dict[str, Any], want: dict[str, Any], whose: Callable[[str], str]
) -> list[str]:
    out = []
    for key in sorted(set(got) | set(want)):
        if got.get(key) != want.get(key):
            out.append(f"{key}: prod has {got.get(key)}, expected {whose(key)} {want.get(key)}")
    return out


def _dump_diff(before: list[str], after: list[str]) -> str:
    diff = difflib.unified_diff(before, after, "prod before", "prod after", lineterm="", n=1)
    return "\n".join(list(diff)[:60])


def _expected_after_sync(
    dev: dict[str, Any],
    prod_before: dict[str, Any],
    keep: Callable[[str], bool],
) -> tuple[dict[str, Any], Callable[[str], str]]:
    want = {k: (prod_before[k] if keep(k) else v) for k, v in dev.items()}

    def whose(key: str) -> str:
        return "prod's own" if keep(key) else "dev's"

    return want, whose


def _round_trip(build: Build, c: Corpus, scale: int = 1, *, lock: str = "short lock") -> None:
    """`lock`: what the run must say of how it wrote prod ("short lock": only the changes,
    under a write lock; or the reason it loaded in full)."""
    proj = build(c, scale)
    dev_tables = table_states(proj.dev_url, c.schemas)
    dev_seqs = sequence_states(proj.dev_url, c.schemas)
    before_tables = table_states(proj.prod_url, c.schemas)
    before_seqs = sequence_states(proj.prod_url, c.schemas)
    before_dump = schema_dump(proj.prod_url)
    owners = sequence_owners(proj.prod_url, c.schemas)
    kept_tables = set(c.preserved_keys) | set(c.excluded_keys)

    result = proj.invoke("sync-data", "--yes")
    assert result.exit_code == 0, f"sync-data exited {result.exit_code}: {result.output}"
    assert lock in result.output, result.output

    after_tables = table_states(proj.prod_url, c.schemas)
    after_seqs = sequence_states(proj.prod_url, c.schemas)
    after_dump = schema_dump(proj.prod_url)
    problems: list[str] = []
    if "public.audit_log" in dev_tables:
        got, want = after_tables["public.audit_log"][1], dev_tables["public.audit_log"][1]
        if got != want:
            problems.append(
                f"audit_log has {got} rows, dev has {want}: triggers fired during the load"
            )
    view = "public.monthly_sales"
    if view in dev_tables and after_tables.get(view) != dev_tables[view]:
        problems.append("the materialized view monthly_sales does not show dev's data")
    want_tables, whose_table = _expected_after_sync(
        dev_tables, before_tables, lambda k: k in kept_tables
    )
    problems += _state_lines(after_tables, want_tables, whose_table)
    want_seqs, whose_seq = _expected_after_sync(
        dev_seqs, before_seqs, lambda k: owners.get(k) in kept_tables
    )
    problems += _state_lines(after_seqs, want_seqs, whose_seq)
    assert not problems, f"{len(problems)} differences after sync-data:\n" + "\n".join(problems)
    assert table_states(proj.dev_url, c.schemas) == dev_tables, "sync-data changed dev"
    assert after_dump == before_dump, "sync-data changed prod's schema:\n" + _dump_diff(
        before_dump, after_dump
    )

    result = proj.invoke("rollback", "--yes")
    assert result.exit_code == 0, f"rollback exited {result.exit_code}: {result.output}"
    problems = _state_lines(
        table_states(proj.prod_url, c.schemas), before_tables, lambda k: "before the sync"
    )
    problems += _state_lines(
        sequence_states(proj.prod_url, c.schemas), before_seqs, lambda k: "before the sync"
    )
    assert not problems, f"{len(problems)} differences after rollback:\n" + "\n".join(problems)
    rolled_dump = schema_dump(proj.prod_url)
    assert rolled_dump == before_dump, "rollback changed prod's schema:\n" + _dump_diff(
        before_dump, rolled_dump
    )


# --- the corpora round-trip -----------------------------------------------------------------


def test_ecommerce_round_trips_through_sync_data_and_rollback(corpus_project: Build) -> None:
    """Partitions (DEFAULT, sub-partitioned, FKs on partitions), triggers, identity, generated
    column, materialized view, inheritance."""
    _round_trip(corpus_project, CORPORA["ecommerce"])


def test_saas_round_trips_through_sync_data_and_rollback(corpus_project: Build) -> None:
    """Two schemas, a quoted-name FK cycle, odd table/column names in setup.cfg, composite,
    domain, range, multirange, citext, hstore, "char", xid8, unlogged, zero-column and
    dropped-column tables, a free sequence with is_called = false."""
    # A table without columns has no row to match by key: the short path cannot prove it.
    _round_trip(corpus_project, CORPORA["saas"], lock="app.heartbeat has no columns")


def test_media_round_trips_through_sync_data_and_rollback(corpus_project: Build) -> None:
    """Rows of several MB (bytea and escaped text) and a self-referencing folder tree."""
    _round_trip(corpus_project, CORPORA["media"])


@pytest.mark.slow
def test_media_with_a_20mb_value_round_trips(corpus_project: Build) -> None:
    """The media corpus plus a 24 MB bytea and a 21 MB text in dev."""
    _round_trip(corpus_project, CORPORA["media"], scale=2)


@pytest.mark.slow
def test_ecommerce_at_five_times_the_size_round_trips(corpus_project: Build) -> None:
    _round_trip(corpus_project, CORPORA["ecommerce"], scale=5)


# --- the analyst's path ---------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """A DataFrame cell as the Python value psycopg2 would give (None for any missing)."""
    if value is None or value is pd.NA:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):
        return value.item()
    return value


def test_saas_snapshot_of_odd_names_reads_back_in_pandas(corpus_project: Build) -> None:
    proj = corpus_project(CORPORA["saas"])
    result = proj.invoke("snapshot", "create", "--target", "dev", "--json")
    assert result.exit_code == 0, f"snapshot create exited {result.exit_code}: {result.output}"
    path = json.loads(result.stdout)["path"]

    for table, sql in (
        ("app.it's/a.table", 'SELECT * FROM app."it\'s/a.table" ORDER BY "id"'),
        ("billing.50% off", 'SELECT * FROM billing."50% off" ORDER BY "code/name"'),
    ):
        frame = dbtools.read_snapshot(path, table)
        rows = execute(proj.dev_url, sql)
        order = frame.columns[0]
        got = [
            tuple(_plain(v) for v in row)
            for row in frame.sort_values(order).itertuples(index=False, name=None)
        ]
        want = [tuple(Decimal(v) if isinstance(v, Decimal) else v for v in r) for r in rows]
        want = [tuple(str(v) if isinstance(v, uuid.UUID) else v for v in r) for r in want]
        got = [tuple(str(v) if isinstance(v, uuid.UUID) else v for v in r) for r in got]
        assert len(got) == len(want) > 0, table
        assert got == want, f"{table}: the snapshot's rows differ from dev's"

    # The zero-column table: an analyst still sees how many rows it has.
    heartbeat = dbtools.read_snapshot(path, "app.heartbeat")
    assert len(heartbeat) == execute(proj.dev_url, "SELECT count(*) FROM app.heartbeat")[0][0]


# --- the corpus itself is sound ------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CORPORA))
def test_corpus_is_deterministic_and_the_state_helpers_agree_on_a_copy(
    name: str, make_db: Callable[[str], str]
) -> None:
    """Same seed, same rows: two fills of dev are identical, prod's differ, and a pg_dump |
    psql copy of dev has the same per-relation md5s, sequences and schema dump as dev."""
    c = CORPORA[name]
    first, second, prod, copy = (make_db(s) for s in ("one", "two", "prod", "copy"))
    for url, side in ((first, "dev"), (second, "dev"), (prod, "prod")):
        create_schema(url, c)
        fill(url, c, side)
    copy_database(first, copy)

    states = table_states(first, c.schemas)
    assert states == table_states(second, c.schemas)
    assert states == table_states(copy, c.schemas)
    assert sequence_states(first, c.schemas) == sequence_states(second, c.schemas)
    assert sequence_states(first, c.schemas) == sequence_states(copy, c.schemas)
    assert schema_dump(first) == schema_dump(second)
    # Every relation holds rows on both sides, and different ones: a sync has work to do.
    prod_states = table_states(prod, c.schemas)
    assert set(prod_states) == set(states)
    empty = [
        f"{side} {k}"
        for side, st in (("dev", states), ("prod", prod_states))
        for k, (_, rows) in st.items()
        if rows == 0
    ]
    assert not empty, f"relations without rows: {empty}"
    same = [k for k in states if states[k] == prod_states[k]]
    assert not same, f"relations with the same rows in dev and prod: {same}"
    for key in c.preserved_keys + c.excluded_keys:
        assert key in states, key
