"""A check is exactly one read-only query: it cannot end, commit or write the load's transaction.

Two layers, each tested on its own against a real server, inside an open transaction that
has already written (as sync-data's load has when it runs the checks):

- static (pglast, at load time): every attack is refused with one line naming file and check,
  and run_checks refuses it too before running anything;
- run time (read-only savepoint, state compared before and after): even without the static
  layer, a write is refused and reported, and the transaction stays open with its writes
  intact and invisible to other sessions; what the run-time layer cannot prevent (a second
  statement that commits) it reports truthfully.

And end to end: `dbtools sync-data --yes` with such a check refuses and prod is unchanged.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import psycopg2.extensions
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dbtools import checks
from dbtools.config import load_settings
from dbtools.errors import ConfigError

from support.db import create_database, drop_database, execute
from support.pipeline import migrate, prod_backups, seed_dev, seed_stale_prod, state
from support.project import REPO, Project

CHECKS_DIR = "mychecks"
INTRANS = psycopg2.extensions.TRANSACTION_STATUS_INTRANS
SYNC_LOCK = 4242  # stands for dbtools' own session-level sync lock on the load's connection

FIXTURE_SQL = """
CREATE TABLE t (id int PRIMARY KEY);
CREATE SEQUENCE s;
CREATE FUNCTION writes() RETURNS int LANGUAGE plpgsql AS
  $$BEGIN INSERT INTO t VALUES (100); RETURN 1; END$$;
CREATE FUNCTION writes_read_write() RETURNS int LANGUAGE plpgsql AS
  $$BEGIN SET LOCAL transaction_read_only = off; INSERT INTO t VALUES (101); RETURN 1; END$$;
CREATE PROCEDURE writes_proc() LANGUAGE plpgsql AS $$BEGIN INSERT INTO t VALUES (102); END$$;
"""

# (sql, what the run-time layer alone does with it when the static layer is bypassed):
#   ends     it ends the savepoint or the transaction: reported, cannot be prevented
#   escapes  it tries to write or to make its transaction read-write: _Unsafe, intact
#   state    it changes session state a rollback does not restore: _Unsafe, writes intact
#   inert    it runs or fails, and the rollback to the savepoint undoes it: intact
ATTACKS: dict[str, tuple[str, str]] = {
    "commit": ("COMMIT", "ends"),
    "select_then_commit": ("SELECT 1; COMMIT", "ends"),
    "rollback": ("ROLLBACK", "ends"),
    "end": ("END", "ends"),
    "abort": ("ABORT", "ends"),
    "commit_after_comment_line": ("SELECT 1 -- hidden\n; COMMIT", "ends"),
    "release_our_savepoint": ("RELEASE SAVEPOINT {savepoint}", "ends"),
    "savepoint": ("SAVEPOINT x", "inert"),
    "rollback_to_our_savepoint": ("ROLLBACK TO SAVEPOINT {savepoint}", "inert"),
    "set_transaction_read_write": ("SET TRANSACTION READ WRITE", "escapes"),
    "set_transaction_isolation": ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", "escapes"),
    "set": ("SET search_path = nowhere", "inert"),
    "reset": ("RESET ALL", "inert"),
    "set_role": ("SET ROLE postgres", "inert"),
    "set_session_authorization": ("SET SESSION AUTHORIZATION DEFAULT", "inert"),
    "data_modifying_cte": (
        "WITH d AS (DELETE FROM t RETURNING *) SELECT count(*) FROM d",
        "escapes",
    ),
    "select_into": ("SELECT 1 AS a INTO copied", "escapes"),
    "for_update": ("SELECT * FROM t FOR UPDATE", "escapes"),
    "for_share_in_subquery": (
        "SELECT (SELECT count(*) FROM (SELECT * FROM t FOR SHARE) x)",
        "escapes",
    ),
    "writing_function": ("SELECT writes()", "escapes"),
    "function_turning_read_write": ("SELECT writes_read_write()", "escapes"),
    "do": ("DO $$BEGIN INSERT INTO t VALUES (9); END$$", "escapes"),
    "call": ("CALL writes_proc()", "escapes"),
    "copy_from": ("COPY t FROM STDIN", "escapes"),
    "copy_to": ("COPY t TO STDOUT", "inert"),
    "lock": ("LOCK t IN ACCESS EXCLUSIVE MODE", "inert"),
    "notify": ("NOTIFY ch", "inert"),
    "listen": ("LISTEN ch", "inert"),
    "prepare": ("PREPARE p AS SELECT 1", "state"),
    "execute": ("EXECUTE p", "inert"),
    "discard_all": ("DISCARD ALL", "escapes"),
    "discard_temp": ("DISCARD TEMP", "inert"),
    "two_selects": ("SELECT 1; SELECT 2", "inert"),
    "select_then_delete": ("SELECT 1; DELETE FROM t", "escapes"),
    "insert": ("INSERT INTO t VALUES (5)", "escapes"),
    "truncate": ("TRUNCATE t", "escapes"),
    "create_table": ("CREATE TABLE x (a int)", "escapes"),
    "explain_analyze": ("EXPLAIN ANALYZE DELETE FROM t", "escapes"),
    "advisory_lock": ("SELECT pg_advisory_lock(1)", "state"),
    "try_advisory_lock": ("SELECT pg_try_advisory_lock(1)", "state"),
    "advisory_unlock_all": ("SELECT pg_advisory_unlock_all()", "state"),
    "advisory_xact_lock": ("SELECT pg_catalog.pg_advisory_xact_lock(1)", "inert"),
    "set_config_read_only": ("SELECT set_config('transaction_read_only', 'off', true)", "escapes"),
    "set_config_session": ("SELECT set_config('search_path', 'nowhere', false)", "inert"),
    "nextval": ("SELECT nextval('s')", "escapes"),
    "pg_notify": ("SELECT pg_notify('ch', 'x')", "inert"),
    "txid_current": ("SELECT txid_current()", "inert"),
}


# What only the run-time layer can see: a function of the database's own that writes.
RUN_TIME_ONLY = frozenset({"writing_function", "function_turning_read_write"})

# --- static layer --------------------------------------------------------------------------


def _check_text(sql: str) -> str:
    return f"-- check: evil\n-- expect: rows >= 0\n{sql};\n"


@pytest.mark.pure
@pytest.mark.parametrize("name", sorted(set(ATTACKS) - RUN_TIME_ONLY))
def test_every_attack_is_refused_at_load_naming_file_and_check(name: str) -> None:
    sql = ATTACKS[name][0].format(savepoint="dbtools_check_1")
    with pytest.raises(ConfigError) as info:
        checks.parse_checks(_check_text(sql), "checks/evil.sql")
    message = info.value.message
    assert message.startswith("checks/evil.sql:1: check 'evil' "), message
    assert "\n" not in message
    assert info.value.exit_code == 2


@pytest.mark.pure
@pytest.mark.parametrize(
    ("sql", "needle"),
    [
        ("SELECT 1; COMMIT", "holds 2 statements (SELECT, COMMIT)"),
        ("END", "is an END statement"),
        ("SELECT 1\x00; COMMIT", "holds a NUL character"),
        ("SET ROLE postgres", "is a SET statement"),
        ("WITH d AS (DELETE FROM t RETURNING *) SELECT 1", "runs DELETE inside its query"),
        ("SELECT 1 AS a INTO copied", "SELECT ... INTO"),
        ("SELECT * FROM t FOR UPDATE", "locks rows"),
        ("SELECT pg_catalog.pg_advisory_unlock_all()", "calls pg_catalog.pg_advisory_unlock_all()"),
        ("SELECT dblink_exec('x', 'y')", "opens another connection"),
        ("SELEC 1", "is not valid SQL: syntax error"),
        ("WITH c AS (SELECT 1) DELETE FROM t", "is a DELETE statement"),
        ("SELECT " + "ARRAY[" * 1000 + "1" + "]" * 1000, "nests too deeply"),
        ("-- nothing but a comment", "has no query"),
    ],
)
def test_refusals_say_why(sql: str, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        checks.parse_checks(_check_text(sql), "checks/evil.sql")
    assert needle in info.value.message


@pytest.mark.pure
@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1 /* ; COMMIT */",
        "SELECT $$; COMMIT$$",
        "SELECT $x$ $$; COMMIT; $$ $x$",
        "SELECT '; COMMIT'",
        "SELECT 'x\\''; COMMIT; --'",  # one string, read as the server reads it at run time
        "VALUES (1)",
        "TABLE t",
        "SELECT 1 UNION ALL SELECT 2",
        "WITH c AS (SELECT 1 AS a) SELECT count(*) FROM c",
        "SELECT count(*) FROM t WHERE id IN (SELECT id FROM t)",
        "SELECT lower('X'), now(), random() >= 0, pg_sleep(0) IS NULL",
    ],
)
def test_harmless_text_that_looks_like_an_attack_is_one_read_only_query(sql: str) -> None:
    (check,) = checks.parse_checks(_check_text(sql), "checks/ok.sql")
    assert checks.read_only_problem(check.query) is None


@pytest.mark.pure
@given(st.text(max_size=300))
@settings(max_examples=300, deadline=None)
def test_any_text_parses_or_is_one_config_error(text: str) -> None:
    try:
        checks.parse_checks(text, "checks/x.sql")
    except ConfigError as exc:
        assert exc.message.startswith("checks/x.sql:")


@pytest.mark.pure
@given(
    st.sampled_from(["SELECT 1", "VALUES (1)", "TABLE t", "SELECT 1 /* c */"]),
    st.sampled_from([s for s, _ in ATTACKS.values() if "{" not in s]),
    st.sampled_from([";", "; ", ";\n", "\n;", "; -- x\n", ";/* ; */"]),
)
@settings(max_examples=200, deadline=None)
def test_a_second_statement_is_always_refused(first: str, second: str, sep: str) -> None:
    problem = checks.read_only_problem(first + sep + second)
    assert problem is not None


# --- both layers against a real transaction that has written --------------------------------


@dataclass
class Loading:
    """A connection in an open transaction that has written, like sync-data's load."""

    conn: psycopg2.extensions.connection
    url: str
    xid: int

    def assert_intact(self, *, lock_held: bool = True) -> None:
        conn = self.conn
        assert conn.get_transaction_status() == INTRANS
        with conn.cursor() as cur:
            cur.execute(
                "SELECT txid_current_if_assigned(), current_setting('transaction_read_only'), "
                "current_user, session_user, (SELECT array_agg(id ORDER BY id) FROM t), "
                "(SELECT count(*) FROM pg_prepared_statements)"
            )
            assert cur.fetchone() == (self.xid, "off", "postgres", "postgres", [1, 2], 0)
            cur.execute(
                "SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid() "
                "AND locktype = 'advisory'"
            )
            assert cur.fetchone() == (1 if lock_held else 0,)
            cur.execute("INSERT INTO t VALUES (3)")  # still the load's, still read-write
            cur.execute("DELETE FROM t WHERE id = 3")
        # Uncommitted: no other session sees the writes.
        assert execute(self.url, "SELECT count(*) FROM t") == [(0,)]


@pytest.fixture(scope="module")
def attack_db() -> Iterator[str]:
    """One database for the module's attacks; each test cleans up what an attack committed."""
    name = f"dbt_{uuid.uuid4().hex[:8]}_ro"
    url = create_database(name)
    try:
        execute(url, FIXTURE_SQL)
        yield url
    finally:
        drop_database(name)


@pytest.fixture(params=["explicit_begin", "implicit"])
def loading(attack_db: str, request: pytest.FixtureRequest) -> Iterator[Loading]:
    conn = psycopg2.connect(attack_db)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", (SYNC_LOCK,))
        conn.commit()
        if request.param == "explicit_begin":  # the loader's way: autocommit + BEGIN
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("BEGIN")
        with conn.cursor() as cur:
            cur.execute("INSERT INTO t VALUES (1), (2)")
            cur.execute("SELECT txid_current()")
            xid = cur.fetchone()[0]
        yield Loading(conn, attack_db, xid)
    finally:
        conn.close()
        execute(attack_db, "TRUNCATE t; DROP TABLE IF EXISTS copied, x")


def _raw_check(sql: str) -> checks.Check:
    """A Check built without parse_checks, as a caller of run_checks could pass one."""
    return checks.Check(
        name="evil",
        source="checks/evil.sql:1",
        query=sql,
        expectations=(checks.parse_expectation("rows >= 0", "checks/evil.sql:2"),),
    )


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_run_checks_refuses_every_attack_and_leaves_the_load_intact(
    loading: Loading, name: str
) -> None:
    sql = ATTACKS[name][0].format(savepoint=f"dbtools_check_{checks.run._savepoint_counter + 2}")
    with pytest.raises(ConfigError) as info:
        checks.run_checks(loading.conn, load_settings(REPO), checks=[_raw_check(sql)])
    assert info.value.message.startswith("checks/evil.sql:1: check 'evil' ")
    if name in RUN_TIME_ONLY:  # refused while running, and the transaction was not ended
        assert isinstance(info.value, checks.UnsafeCheck)
        assert not info.value.transaction_ended
    loading.assert_intact()


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_run_time_layer_alone_contains_every_attack(loading: Loading, name: str) -> None:
    """The static layer bypassed: the read-only savepoint and the state comparison alone."""
    template, kind = ATTACKS[name]
    # The name the next _isolated savepoint will take: an attack aimed at it precisely.
    sql = template.format(savepoint=f"dbtools_check_{checks.run._savepoint_counter + 1}")
    raised: Exception | None = None
    try:
        checks.run._run_query(loading.conn, sql)
    except (checks.run._QueryFailed, checks.run._Unsafe) as exc:
        raised = exc
    if kind == "ends":
        # Beyond any run-time defence: the server ended what it was told to. Reported as it
        # is, never as "rolled back, nothing changed". (The static layer is what prevents it.)
        assert isinstance(raised, checks.run._Unsafe), raised
        assert "ended its savepoint or the transaction it ran in" in raised.message
        assert "may have been committed" in raised.message
        assert raised.ended  # so the caller cannot report "rolled back, nothing changed"
        return
    assert not isinstance(raised, checks.run._Unsafe) or not raised.ended
    if kind == "escapes":
        assert isinstance(raised, checks.run._Unsafe), raised
        assert "tried to write or to change its transaction" in raised.message
    elif kind == "state":
        assert isinstance(raised, checks.run._Unsafe), raised
        assert "changed its connection's" in raised.message
    else:
        assert not isinstance(raised, checks.run._Unsafe), raised
    if name == "prepare":  # detected; the caller rolls back, the session keeps the statement
        with loading.conn.cursor() as cur:
            cur.execute("DEALLOCATE p")
    if name == "advisory_lock" or name == "try_advisory_lock":
        with loading.conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_unlock(1)")
    loading.assert_intact(lock_held=name != "advisory_unlock_all")


def test_read_only_applies_inside_a_savepoint_after_the_outer_transaction_wrote(
    loading: Loading,
) -> None:
    with checks.run._isolated(loading.conn), loading.conn.cursor() as cur:
        cur.execute("SELECT current_setting('transaction_read_only')")
        assert cur.fetchone() == ("on",)
        cur.execute("SELECT txid_current_if_assigned()")
        assert cur.fetchone() == (loading.xid,)  # the same transaction, as a subtransaction
    loading.assert_intact()


def test_server_reading_backslashes_otherwise_cannot_split_a_check(loading: Loading) -> None:
    """With standard_conforming_strings off, the server would read this one string as a
    COMMIT between two statements; the checks run with it on, as the parser reads it."""
    with loading.conn.cursor() as cur:
        cur.execute("SET standard_conforming_strings = off")
    sql = "SELECT 'x\\''; COMMIT; --'"
    assert checks.read_only_problem(sql) is None
    assert checks.run._run_query(loading.conn, sql) == [("x\\'; COMMIT; --",)]
    with loading.conn.cursor() as cur:
        cur.execute("SHOW standard_conforming_strings")
        assert cur.fetchone() == ("off",)  # the session's own setting is back
    loading.assert_intact()


def test_a_failing_and_a_passing_check_leave_the_load_intact(loading: Loading) -> None:
    got = checks.parse_checks(
        "-- check: broken\n-- expect: = 0\nSELECT nope FROM nowhere;\n"
        "-- check: sees_uncommitted\n-- expect: = 2\nSELECT count(*) FROM t;\n"
    )
    report = checks.run_checks(loading.conn, load_settings(REPO), checks=got)
    assert [r.ok for r in report.results] == [False, True]
    loading.assert_intact()


# --- end to end ----------------------------------------------------------------------------


def _use_checks(project: Project, files: dict[str, bytes | str | None]) -> Path:
    """Point the project at a checks dir holding exactly files (None: a directory)."""
    cdir = project.root / CHECKS_DIR
    cdir.mkdir()
    for name, content in files.items():
        path = cdir / name
        if content is None:
            path.mkdir()
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    cfg = project.root / "setup.cfg"
    cfg.write_text(
        cfg.read_text().replace(f"checks_dir = {REPO / 'checks'}", f"checks_dir = {cdir}")
    )
    return Path(CHECKS_DIR)  # as messages show it: relative to the project


@pytest.fixture
def synced(project: Project) -> Project:
    migrate(project.dev_url)
    migrate(project.prod_url)
    seed_dev(project.dev_url)
    seed_stale_prod(project.prod_url)
    return project


def test_sync_data_refuses_a_check_that_commits_and_prod_is_unchanged(synced: Project) -> None:
    cdir = _use_checks(
        synced,
        {"early.sql": "-- check: early_commit\n-- expect: = 1\nSELECT 1; COMMIT;\n"},
    )
    before = state(synced.prod_url)
    result = synced.invoke("sync-data", "--yes")
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines()[-1] == (
        f"error: {cdir / 'early.sql'}:1: check 'early_commit' holds 2 statements "
        "(SELECT, COMMIT); a check must be exactly one read-only query (SELECT, VALUES or TABLE)"
    )
    assert state(synced.prod_url) == before
    assert prod_backups(synced) == []  # refused when the file was read: no lock, no backup


def test_sync_data_refuses_a_check_whose_function_writes_and_prod_is_unchanged(
    synced: Project,
) -> None:
    function = (
        "CREATE FUNCTION sneaky_write() RETURNS int LANGUAGE plpgsql AS $$BEGIN "
        'INSERT INTO "User" (id, name, email, "isDemo", roles, "updatedAt") '
        "VALUES ('sneak', 'S', 'sneak@example.com', false, '{CLIENT}', now()); "
        "RETURN 1; END$$"
    )
    execute(synced.dev_url, function)  # on both sides: the schemas still match
    execute(synced.prod_url, function)
    cdir = _use_checks(
        synced, {"sneaky.sql": "-- check: sneaky\n-- expect: = 1\nSELECT sneaky_write();\n"}
    )
    before = state(synced.prod_url)
    result = synced.invoke("sync-data", "--yes")
    assert result.exit_code == 2, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith(f"error: {cdir / 'sneaky.sql'}:1: check 'sneaky' tried to write"), last
    assert "cannot execute INSERT in a read-only transaction" in last
    assert state(synced.prod_url) == before
    assert execute(synced.prod_url, "SELECT count(*) FROM \"User\" WHERE id = 'sneak'") == [(0,)]


BAD_FILES: dict[str, tuple[bytes | None, str]] = {
    "binary": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "is a binary file"),
    "latin1": ("-- check: café\n-- expect: = 1\nSELECT 1;\n".encode("latin-1"), "is not UTF-8"),
    "empty": (b"", "is empty"),
    "blank": (b"  \n\n", "is empty"),
    "comments_only": (b"-- nothing declared here\n", "declares no check"),
    "no_query": (b"-- check: a\n-- expect: = 1\n-- just a comment\n", "check 'a' has no query"),
    "directory": (None, "cannot read it"),
}


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_unreadable_checks_file_is_one_line_exit_2_naming_it(project: Project, kind: str) -> None:
    content, needle = BAD_FILES[kind]
    ok = "-- check: fine\n-- expect: = 1\nSELECT 1;\n"
    cdir = _use_checks(project, {"a_ok.sql": ok, "bad.sql": content})
    result = project.invoke("check", "--target", "prod")
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"error: {cdir / 'bad.sql'}"), lines
    assert needle in lines[0]
    assert "internal error" not in lines[0]


def test_sync_data_with_a_binary_checks_file_refuses_and_prod_is_unchanged(
    synced: Project,
) -> None:
    cdir = _use_checks(synced, {"bad.sql": b"\x00\x01\x02binary"})
    before = state(synced.prod_url)
    result = synced.invoke("sync-data", "--yes")
    assert result.exit_code == 2, result.output
    assert f"{cdir / 'bad.sql'}: is a binary file" in result.output
    assert state(synced.prod_url) == before
    assert prod_backups(synced) == []
    full = synced.invoke("full-sync", "--yes")
    assert full.exit_code == 2, full.output
    assert f"{cdir / 'bad.sql'}: is a binary file" in full.output
    assert state(synced.prod_url) == before
    assert prod_backups(synced) == []


def test_byte_order_mark_does_not_hide_the_first_check(project: Project) -> None:
    _use_checks(project, {"bom.sql": "\ufeff-- check: first\n-- expect: = 1\nSELECT 1;\n"})
    (check,) = checks.load_checks(load_settings(project.root))
    assert check.name == "first"


@pytest.mark.pure
def test_builtin_check_with_a_query_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        checks.parse_checks(
            "-- check: s\n-- builtin: schema_matches_dev\nDELETE FROM t;\n", "checks/x.sql"
        )
    assert "cannot also have a query" in info.value.message


def test_check_command_refuses_a_writing_function_at_run_time(project: Project) -> None:
    execute(project.prod_url, FIXTURE_SQL)
    cdir = _use_checks(project, {"w.sql": "-- check: w\n-- expect: = 1\nSELECT writes();\n"})
    result = project.invoke("check", "--target", "prod")
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [
        f"error: {cdir / 'w.sql'}:1: check 'w' tried to write or to change its transaction "
        "(cannot execute INSERT in a read-only transaction); a check must be exactly one "
        "read-only query (SELECT, VALUES or TABLE)"
    ]
    assert execute(project.prod_url, "SELECT count(*) FROM t") == [(0,)]


def test_autocommit_connection_outside_a_transaction_is_checked_read_only_too(
    attack_db: str,
) -> None:
    """No transaction to borrow: the checks open one of their own and roll it back."""
    conn = psycopg2.connect(attack_db)
    conn.autocommit = True
    try:
        with pytest.raises(checks.UnsafeCheck) as info:
            checks.run_checks(conn, load_settings(REPO), checks=[_raw_check("SELECT writes()")])
        assert "cannot execute INSERT in a read-only transaction" in info.value.message
        assert conn.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_IDLE
        fine = checks.parse_checks("-- check: n\n-- expect: = 0\nSELECT count(*) FROM t;\n")
        report = checks.run_checks(conn, load_settings(REPO), checks=fine)
        assert report.ok
        assert conn.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_IDLE
    finally:
        conn.close()
    assert execute(attack_db, "SELECT count(*) FROM t") == [(0,)]
