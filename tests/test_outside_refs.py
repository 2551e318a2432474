"""Issue #10 item 5: what ties the synced tables to objects no snapshot loads is refused up front.

A foreign key from a table that is not synced into one that is makes every TRUNCATE of the
load fail; a synced column whose default draws from a sequence no snapshot holds would be
left handing out ids the loaded rows already have. verify lists each (exit 1); every load
(sync-data, full-sync, restore, rollback) refuses it before it locks, backs up or writes
anything, in one line naming both ends and the setting that fixes it (exit 3), and the dry
runs stop where the real runs do.

"Before any lock" is observed: an application transaction holds a synced table the whole
time, so a refusal that came after the guard's (or the load's) locks would name that table
instead.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import psycopg2
import pytest
from click.testing import Result

from support.db import digests, execute
from support.pipeline import migrate, prod_backups, seed_dev, seed_stale_prod, state
from support.project import Project, configure

EXT_LOGIN = """
CREATE SCHEMA ext;
CREATE TABLE ext.login (user_id text REFERENCES public."User"(id));
INSERT INTO ext.login VALUES ('liam');
"""
FK_LINE = 'table ext.login references synced table public.User (foreign key "login_user_id_fkey")'
FK_FIX = "add ext to `schemas` or public.User to `excluded_tables` in setup.cfg [dbtools]"


@pytest.fixture
def synced(project: Project) -> Project:
    """dev and prod both at head; dev seeded, prod stale."""
    migrate(project.dev_url)
    migrate(project.prod_url)
    seed_dev(project.dev_url)
    seed_stale_prod(project.prod_url)
    return project


@contextlib.contextmanager
def app_holding(url: str, table: str, mode: str) -> Iterator[None]:
    """An application transaction holding `table` in `mode` until the block ends."""
    holder = psycopg2.connect(url)
    try:
        with holder.cursor() as cur:
            cur.execute(f'LOCK TABLE "{table}" IN {mode} MODE')
        yield
    finally:
        holder.rollback()
        holder.close()


def assert_refused(result: Result, *phrases: str) -> None:
    assert result.exit_code == 3, result.output
    for phrase in phrases:
        assert phrase in result.output, result.output
    # Refused before any lock: the table the application holds was never waited for.
    assert "is locked" not in result.output, result.output
    assert "Traceback" not in result.output


# --- foreign keys from tables that are not synced -------------------------------------------


@pytest.mark.parametrize("command", ["sync-data", "full-sync"])
def test_sync_refuses_before_lock_and_backup_and_its_dry_run_agrees(
    synced: Project, command: str
) -> None:
    execute(synced.prod_url, EXT_LOGIN)
    before = state(synced.prod_url)
    with app_holding(synced.prod_url, "App", "ROW EXCLUSIVE"):  # an application write
        dry = synced.invoke(command, "--dry-run")
        real = synced.invoke(command, "--yes")
    assert_refused(dry, FK_LINE, FK_FIX, "the real run would stop here")
    assert_refused(real, FK_LINE, FK_FIX, "nothing was changed")
    assert state(synced.prod_url) == before
    assert not synced.snapshot_dir.exists()  # no backup of prod, no snapshot of dev


def test_verify_lists_it_and_full_sync_ignores_dev_own(synced: Project) -> None:
    execute(synced.dev_url, EXT_LOGIN)  # dev only: a sync into prod empties nothing in dev
    result = synced.invoke("verify")
    assert result.exit_code == 1, result.output
    assert f"dev: {FK_LINE}" in result.output and FK_FIX in result.output
    assert "prod: table ext.login" not in result.output
    assert synced.invoke("full-sync", "--dry-run").exit_code == 0
    assert synced.invoke("full-sync", "--yes").exit_code == 0


def test_excluded_referrer_names_excluded_tables(synced: Project) -> None:
    configure(synced, "excluded_tables = BuilderProfile\n")
    before = state(synced.prod_url)
    dry = synced.invoke("sync-data", "--dry-run")
    real = synced.invoke("sync-data", "--yes")
    for result in (dry, real):
        assert_refused(
            result,
            "table public.BuilderProfile references synced table public.User",
            "(it is in `excluded_tables`)",
            "remove public.BuilderProfile from `excluded_tables` or add public.User to it",
        )
    assert state(synced.prod_url) == before
    assert prod_backups(synced) == []


def test_rollback_refuses_before_lock_and_backup(synced: Project) -> None:
    assert synced.invoke("sync-data", "--yes").exit_code == 0  # something to roll back
    execute(synced.prod_url, EXT_LOGIN)
    before, backups = state(synced.prod_url), prod_backups(synced)
    with app_holding(synced.prod_url, "App", "ROW EXCLUSIVE"):
        result = synced.invoke("rollback", "--yes")
    assert_refused(result, FK_LINE, FK_FIX)
    assert state(synced.prod_url) == before
    assert prod_backups(synced) == backups


def test_restore_into_prod_refuses_before_lock_and_backup(synced: Project) -> None:
    assert synced.invoke("backup").exit_code == 0
    [backup] = prod_backups(synced)
    execute(synced.prod_url, EXT_LOGIN)
    before = state(synced.prod_url)
    with app_holding(synced.prod_url, "App", "ROW EXCLUSIVE"):
        result = synced.invoke("restore", str(backup), "--target", "prod", "--yes")
    assert_refused(result, FK_LINE, FK_FIX)
    assert state(synced.prod_url) == before
    assert prod_backups(synced) == [backup]


def test_restore_into_dev_refuses_before_the_load_locks(synced: Project) -> None:
    made = synced.invoke("snapshot", "create", "--target", "dev", "--json")
    assert made.exit_code == 0, made.output
    [snap] = list((synced.snapshot_dir / "dev").iterdir())
    execute(synced.dev_url, EXT_LOGIN)
    before = state(synced.dev_url)
    # A reader is enough to hold up the load's ACCESS EXCLUSIVE lock.
    with app_holding(synced.dev_url, "User", "ACCESS SHARE"):
        result = synced.invoke("restore", str(snap), "--target", "dev", "--yes")
    assert_refused(result, FK_LINE, FK_FIX)
    assert state(synced.dev_url) == before


# --- the siblings: partitions, inheritance, sequences ---------------------------------------

PARTITIONED = """
CREATE TABLE ev (id int PRIMARY KEY, kind text) PARTITION BY RANGE (id);
CREATE TABLE ev_1 PARTITION OF ev FOR VALUES FROM (0) TO (100);
CREATE TABLE ev_2 PARTITION OF ev FOR VALUES FROM (100) TO (200);
"""


def test_a_key_into_a_partition_from_outside_names_its_root(synced: Project) -> None:
    execute(synced.dev_url, PARTITIONED)
    execute(synced.prod_url, PARTITIONED)
    execute(
        synced.prod_url,
        "INSERT INTO ev VALUES (5, 'p'); CREATE SCHEMA ext;"
        "CREATE TABLE ext.seen (ev_id int REFERENCES ev_1(id)); INSERT INTO ext.seen VALUES (5)",
    )
    before = state(synced.prod_url)
    line = 'table ext.seen references synced table public.ev (foreign key "seen_ev_id_fkey")'
    fix = "add ext to `schemas` or public.ev to `excluded_tables`"
    assert_refused(synced.invoke("sync-data", "--dry-run"), line, fix)
    assert_refused(synced.invoke("sync-data", "--yes"), line, fix)
    assert state(synced.prod_url) == before
    assert prod_backups(synced) == []


KEYS_INTO_CHILDREN = (
    PARTITIONED
    + """
CREATE TABLE note (id int PRIMARY KEY, ev_id int REFERENCES ev_1(id));
CREATE TABLE city (name text PRIMARY KEY, population int);
CREATE TABLE capital (state text, PRIMARY KEY (name)) INHERITS (city);
CREATE TABLE visit (id int PRIMARY KEY, capital text REFERENCES capital(name));
"""
)


def test_keys_into_a_partition_and_into_a_preserved_parents_child_sync(synced: Project) -> None:
    """A key may name a partition, or a child of a preserved parent: both load in order."""
    execute(synced.dev_url, KEYS_INTO_CHILDREN)
    execute(synced.prod_url, KEYS_INTO_CHILDREN)
    execute(
        synced.dev_url,
        "INSERT INTO ev VALUES (1, 'd'), (150, 'd'); INSERT INTO note VALUES (1, 1);"
        "INSERT INTO city VALUES ('Lyon', 500); INSERT INTO capital VALUES ('Paris', 2100, 'IDF');"
        "INSERT INTO visit VALUES (1, 'Paris')",
    )
    execute(
        synced.prod_url,
        "INSERT INTO ev VALUES (2, 'p'); INSERT INTO note VALUES (9, 2);"
        "INSERT INTO city VALUES ('Nice', 340); INSERT INTO capital VALUES ('Rome', 2800, 'LAZ');"
        "INSERT INTO visit VALUES (7, 'Rome')",
    )
    configure(synced, "preserved_tables = Account, Session, VerificationToken, city\n")
    kept_city = digests(synced.prod_url)["public.city"]
    result = synced.invoke("sync-data", "--yes")
    assert result.exit_code == 0, result.output
    dev, prod = digests(synced.dev_url), digests(synced.prod_url)
    assert prod["public.city"] == kept_city  # its own rows: prod's
    for key in ("public.ev_1", "public.ev_2", "public.note", "public.capital", "public.visit"):
        assert prod[key] == dev[key], key


NOTE_IDS = """
CREATE SCHEMA ids;
CREATE SEQUENCE ids.note_seq;
CREATE TABLE note (id bigint PRIMARY KEY DEFAULT nextval('ids.note_seq'), body text);
"""
SEQ_LINE = (
    "column id of synced table public.note takes its default from sequence ids.note_seq, "
    "which no restore sets (schema ids is not in `schemas`)"
)
SEQ_FIX = "add ids to `schemas` or public.note to `excluded_tables` in setup.cfg [dbtools]"


def test_a_default_from_a_sequence_outside_the_schemas_is_refused_then_synced(
    synced: Project,
) -> None:
    # PostgreSQL keeps an OWNED BY sequence in its table's schema; a default may still call
    # one elsewhere. Loading dev's notes without it would leave prod's at 1: the next insert
    # would collide with a loaded row.
    five = "INSERT INTO note (body) SELECT 'd' FROM generate_series(1, 5)"
    execute(synced.dev_url, NOTE_IDS + five)
    execute(synced.prod_url, NOTE_IDS + "INSERT INTO note (body) VALUES ('p')")
    before = state(synced.prod_url)
    verify = synced.invoke("verify")
    assert verify.exit_code == 1 and f"prod: {SEQ_LINE}" in verify.output, verify.output
    assert_refused(synced.invoke("sync-data", "--dry-run"), SEQ_LINE, SEQ_FIX)
    assert_refused(synced.invoke("sync-data", "--yes"), SEQ_LINE, SEQ_FIX)
    assert state(synced.prod_url) == before
    assert prod_backups(synced) == []
    # The fix the line names works: the sequence is synced with the rows.
    configure(synced, "schemas = public, ids\n")
    result = synced.invoke("sync-data", "--yes")
    assert result.exit_code == 0, result.output
    assert execute(synced.prod_url, "INSERT INTO note (body) VALUES ('app') RETURNING id") == [(6,)]


def test_a_default_from_an_excluded_tables_sequence_is_named(project: Project) -> None:
    schema = (
        "CREATE TABLE counter (id serial PRIMARY KEY);"
        "CREATE TABLE note (id int PRIMARY KEY DEFAULT nextval('counter_id_seq'));"
    )
    execute(project.dev_url, schema)
    execute(project.prod_url, schema)
    configure(project, "preserved_tables =\nexcluded_tables = counter\n")
    result = project.invoke("verify")
    assert result.exit_code == 1, result.output
    assert (
        "prod: column id of synced table public.note takes its default from sequence "
        "public.counter_id_seq, which no restore sets (it belongs to public.counter, which is "
        "in `excluded_tables`)"
    ) in result.output
    assert "remove public.counter from `excluded_tables` or add public.note to it" in result.output
