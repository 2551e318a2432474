"""The short-lock apply (sync.delta) at the edges of what PostgreSQL does with a row: keys
that are equal to `=` but stored differently, columns the server computes, foreign-key
actions and rules that write rows the apply does not own, constraints checked at COMMIT,
sequences that a rollback would not set back, and the proof for tables replaced whole.

Each test runs a real sync-data between two real databases. The promise checked is always
the same: after a success prod's synced tables equal dev's (row count and md5 of the ordered
rows), and a fallback or a failure leaves prod as it was or equal to dev, never half-applied.
"""

from __future__ import annotations

import json

import psycopg2
import pytest

from support.db import SERVER_URL, digests, execute
from support.processes import start_cli, wait_marker
from support.project import Project, configure


def _checks(project: Project, failing: bool = False) -> None:
    checks = project.root / "checks"
    checks.mkdir(exist_ok=True)
    (checks / "up.sql").write_text(
        "-- check: up\n-- description: prod answers\n-- expect: > 0\n"
        + ("SELECT 0;\n" if failing else "SELECT 1;\n")
    )
    configure(project, f"checks_dir = {checks}\npreserved_tables =")


def _both(project: Project, sql: str) -> None:
    for url in (project.dev_url, project.prod_url):
        execute(url, sql)


def _synced(url: str) -> dict:
    return {k: v for k, v in digests(url).items() if k.startswith("public.")}


def _sync(project: Project) -> dict:
    result = project.invoke("sync-data", "--yes", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def _run_with_app_write(project: Project, app_sql: str, point: str = "apply.staged") -> dict:
    """sync-data paused (prod not locked) at `point`; the application writes; the run goes on."""
    proc = start_cli(project, ["sync-data", "--yes", "--json"], f"{point}=3")
    wait_marker(proc, point)
    execute(project.prod_url, app_sql)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, (out, err)
    return json.loads(out)


# 1. keys equal to `=` but stored differently


@pytest.mark.parametrize("kind", ["float8", "float4"])
def test_a_float_key_that_differs_only_in_its_sign_is_written_as_dev_has_it(
    project: Project, kind: str
) -> None:
    _checks(project)
    _both(
        project,
        f"CREATE TABLE f (k {kind} PRIMARY KEY, v text);"
        "INSERT INTO f VALUES (0, 'zero'), ('NaN', 'nan'), (1.5, 'x')",
    )
    # dev's key is -0: equal to prod's 0 for `=` (and for DuckDB), another value when stored
    execute(project.dev_url, "UPDATE f SET k = '-0' WHERE v = 'zero'")
    data = _sync(project)
    assert data["lock"]["mode"] == "short", data["lock"]
    assert _synced(project.prod_url) == _synced(project.dev_url)
    assert execute(project.prod_url, "SELECT k::text FROM f ORDER BY v") == [
        ("NaN",),
        ("1.5",),
        ("-0",),
    ]


# 2. columns the server computes; failures while staging


def test_generated_and_identity_columns_take_the_short_path(project: Project) -> None:
    _checks(project)
    _both(
        project,
        "CREATE TABLE g (id int PRIMARY KEY, a int NOT NULL,"
        " twice int GENERATED ALWAYS AS (a * 2) STORED NOT NULL,"
        " n int GENERATED ALWAYS AS IDENTITY, v text);"
        "INSERT INTO g (id, a, v) SELECT x, x, 'v' || x FROM generate_series(1, 5) x",
    )
    execute(
        project.dev_url,
        "UPDATE g SET a = 40, v = 'changed' WHERE id = 4; DELETE FROM g WHERE id = 2;"
        "INSERT INTO g (id, a) VALUES (6, 6)",
    )
    data = _sync(project)
    assert data["lock"]["mode"] == "short", data["lock"]
    assert _synced(project.prod_url) == _synced(project.dev_url)


def test_an_identity_value_that_differs_is_loaded_in_full(project: Project) -> None:
    """UPDATE cannot set a GENERATED ALWAYS identity column: the run loads in full."""
    _checks(project)
    _both(
        project,
        "CREATE TABLE g (id int PRIMARY KEY, n int GENERATED ALWAYS AS IDENTITY, v text);"
        "INSERT INTO g (id, v) SELECT x, 'v' || x FROM generate_series(1, 3) x",
    )
    execute(project.dev_url, "UPDATE g SET n = DEFAULT, v = 'new' WHERE id = 2")
    data = _sync(project)
    assert data["lock"]["mode"] == "full", data["lock"]
    assert _synced(project.prod_url) == _synced(project.dev_url)


def test_a_row_staging_cannot_copy_makes_the_run_load_in_full(project: Project) -> None:
    """Prod's copy of a row dev deletes no longer passes its domain's check in prod (the check
    reads a setting prod changed since): staging it fails; the full load does not need it."""
    _checks(project)
    _both(
        project,
        "CREATE DOMAIN allowed AS text CHECK (VALUE IS DISTINCT FROM"
        " current_setting('dbtools_test.banned', true));"
        "CREATE TABLE d (id int PRIMARY KEY, v allowed);"
        "INSERT INTO d VALUES (1, 'ok'), (2, 'banned later'), (3, 'ok')",
    )
    execute(project.dev_url, "DELETE FROM d WHERE id = 2; UPDATE d SET v = 'new' WHERE id = 3")
    prod_db = project.prod_name
    execute(SERVER_URL, f"ALTER DATABASE \"{prod_db}\" SET dbtools_test.banned = 'banned later'")
    data = _sync(project)
    assert data["lock"]["mode"] == "full", data["lock"]
    assert "cannot load" in data["lock"]["reason"] or "staging" in data["lock"]["reason"]
    assert _synced(project.prod_url) == _synced(project.dev_url)


# 3. foreign-key actions that reach rows the apply does not own


@pytest.mark.parametrize("action", ["CASCADE", "SET NULL"])
def test_an_update_that_would_fire_on_update_into_an_app_row_loads_in_full(
    project: Project, action: str
) -> None:
    _checks(project)
    _both(
        project,
        "CREATE TABLE p (id int PRIMARY KEY, code text UNIQUE);"
        f"CREATE TABLE c (id int PRIMARY KEY, code text REFERENCES p (code) ON UPDATE {action});"
        "INSERT INTO p VALUES (1, 'a'), (2, 'b'); INSERT INTO c VALUES (10, 'a'), (20, 'b')",
    )
    execute(project.dev_url, "UPDATE p SET code = 'z' WHERE id = 1")  # dev's c follows
    data = _run_with_app_write(project, "INSERT INTO c VALUES (100, 'a')")
    assert data["lock"]["mode"] == "full", data["lock"]
    assert _synced(project.prod_url) == _synced(project.dev_url)


def test_on_update_cascade_into_rows_the_apply_rewrites_anyway_stays_short(
    project: Project,
) -> None:
    _checks(project)
    _both(
        project,
        "CREATE TABLE p (id int PRIMARY KEY, code text UNIQUE);"
        "CREATE TABLE c (id int PRIMARY KEY, code text REFERENCES p (code) ON UPDATE CASCADE);"
        "INSERT INTO p VALUES (1, 'a'), (2, 'b'); INSERT INTO c VALUES (10, 'a'), (20, 'b')",
    )
    execute(project.dev_url, "UPDATE p SET code = 'z' WHERE id = 1")
    data = _sync(project)
    assert data["lock"]["mode"] == "short", data["lock"]
    assert _synced(project.prod_url) == _synced(project.dev_url)


@pytest.mark.parametrize("action", ["SET NULL", "SET DEFAULT"])
def test_a_delete_that_would_set_an_app_rows_reference_loads_in_full(
    project: Project, action: str
) -> None:
    _checks(project)
    _both(
        project,
        "CREATE TABLE p (id int PRIMARY KEY);"
        f"CREATE TABLE c (id int PRIMARY KEY, p int DEFAULT 1 REFERENCES p ON DELETE {action});"
        "INSERT INTO p VALUES (1), (2); INSERT INTO c VALUES (10, 1)",
    )
    execute(project.dev_url, "DELETE FROM p WHERE id = 2")
    data = _run_with_app_write(project, "INSERT INTO c VALUES (100, 2)")
    assert data["lock"]["mode"] == "full", data["lock"]
    assert _synced(project.prod_url) == _synced(project.dev_url)


# 4. constraints checked at COMMIT


def test_a_deferred_unique_violation_surfaces_inside_the_apply_and_loads_in_full(
    project: Project,
) -> None:
    _checks(project)
    _both(
        project,
        "CREATE TABLE u (id int PRIMARY KEY,"
        " code int UNIQUE DEFERRABLE INITIALLY DEFERRED);"
        "INSERT INTO u SELECT x, x FROM generate_series(1, 5) x",
    )
    execute(project.dev_url, "INSERT INTO u VALUES (6, 60)")
    data = _run_with_app_write(project, "INSERT INTO u VALUES (100, 60)")
    assert data["lock"]["mode"] == "full", data["lock"]
    assert _synced(project.prod_url) == _synced(project.dev_url)


def test_a_deferred_foreign_key_and_a_user_trigger_take_the_short_path(project: Project) -> None:
    """Pending deferred checks must not stop the triggers from being set back."""
    _checks(project)
    _both(
        project,
        "CREATE TABLE p (id int PRIMARY KEY);"
        "CREATE TABLE c (id int PRIMARY KEY,"
        " p int REFERENCES p DEFERRABLE INITIALLY DEFERRED, v text);"
        "CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS"
        " $$BEGIN NEW.v := 'trigger'; RETURN NEW; END$$;"
        "CREATE TRIGGER t BEFORE INSERT OR UPDATE ON c FOR EACH ROW EXECUTE FUNCTION touch();"
        "INSERT INTO p VALUES (1), (2); INSERT INTO c VALUES (10, 1, 'x')",
    )
    execute(project.dev_url, "INSERT INTO p VALUES (3); INSERT INTO c VALUES (30, 3, 'y')")
    data = _sync(project)
    assert data["lock"]["mode"] == "short", data["lock"]
    assert _synced(project.prod_url) == _synced(project.dev_url)


# 5. sequences are set back by a rollback


def _sequence(url: str) -> list[tuple]:
    return execute(url, "SELECT last_value, is_called FROM s_id_seq")


@pytest.mark.parametrize("called", [True, False])
@pytest.mark.parametrize("path", ["short", "full"])
def test_a_failed_check_leaves_prods_sequences_where_they_were(
    project: Project, called: bool, path: str
) -> None:
    _checks(project, failing=True)
    _both(
        project,
        "CREATE TABLE s (id serial PRIMARY KEY, v text);"
        "INSERT INTO s (v) SELECT 'v' || x FROM generate_series(1, 3) x",
    )
    if path == "full":  # a rule sends the run to the full load
        _both(project, "CREATE RULE keep AS ON DELETE TO s DO INSTEAD NOTHING")
    execute(project.dev_url, "INSERT INTO s (v) VALUES ('dev'), ('dev')")
    if not called:
        execute(project.dev_url, "SELECT setval('s_id_seq', 20, false)")
    before, rows = _sequence(project.prod_url), digests(project.prod_url)
    result = project.invoke("sync-data", "--yes", "--json")
    assert result.exit_code != 0, result.output
    assert _sequence(project.prod_url) == before
    assert digests(project.prod_url) == rows


def test_a_killed_run_leaves_prods_sequences_where_they_were(project: Project) -> None:
    _checks(project)
    _both(
        project,
        "CREATE TABLE s (id serial PRIMARY KEY, v text);"
        "INSERT INTO s (v) SELECT 'v' || x FROM generate_series(1, 3) x",
    )
    execute(project.dev_url, "INSERT INTO s (v) VALUES ('dev'), ('dev')")
    before = _sequence(project.prod_url)
    proc = start_cli(project, ["sync-data", "--yes"], "load.before_commit=600")
    try:
        wait_marker(proc, "load.before_commit")
        # the sequence is set but not committed: readers see the old value, and a writer's
        # nextval waits for the run like its writes to the table do
        assert _sequence(project.prod_url) == before
    finally:
        proc.kill()
        proc.wait()
    assert _sequence(project.prod_url) == before


def test_sequences_are_set_like_dev_after_a_short_apply(project: Project) -> None:
    _checks(project)
    _both(
        project,
        "CREATE TABLE s (id serial PRIMARY KEY, v text);"
        "INSERT INTO s (v) SELECT 'v' || x FROM generate_series(1, 3) x;"
        "CREATE SEQUENCE free_seq; CREATE SEQUENCE other_seq",
    )
    execute(
        project.dev_url,
        "INSERT INTO s (v) VALUES ('dev'); SELECT setval('free_seq', 7, false);"
        "SELECT setval('other_seq', 9, true)",
    )
    data = _sync(project)
    assert data["lock"]["mode"] == "short", data["lock"]
    state = "SELECT last_value, is_called FROM {}"
    for seq in ("s_id_seq", "free_seq", "other_seq"):
        assert execute(project.prod_url, state.format(seq)) == execute(
            project.dev_url, state.format(seq)
        ), seq
    assert execute(project.prod_url, "SELECT nextval('free_seq')") == [(7,)]


# 6. rules


def test_a_rule_on_a_synced_table_makes_the_run_load_in_full(project: Project) -> None:
    _checks(project)
    _both(
        project,
        "CREATE TABLE item (id int PRIMARY KEY, v text);"
        "CREATE TABLE audit (id serial PRIMARY KEY, note text);"
        "INSERT INTO item SELECT x, 'v' || x FROM generate_series(1, 3) x",
    )
    execute(project.dev_url, "UPDATE item SET v = 'dev' WHERE id = 2")
    _both(
        project,
        "CREATE RULE log AS ON UPDATE TO item DO ALSO INSERT INTO audit (note) VALUES (NEW.v)",
    )
    data = _sync(project)
    assert data["lock"]["mode"] == "full", data["lock"]
    assert "rule" in data["lock"]["reason"]
    assert _synced(project.prod_url) == _synced(project.dev_url)


# 7. a table replaced whole (no key): its proof does not depend on other transactions


def test_a_keyless_table_takes_the_short_path_while_another_database_holds_an_xid(
    project: Project,
) -> None:
    _checks(project)
    _both(project, "CREATE TABLE nokey (a int, b text); INSERT INTO nokey VALUES (1, 'a')")
    execute(project.dev_url, "INSERT INTO nokey VALUES (2, 'dev')")
    other = psycopg2.connect(SERVER_URL)  # another database: a transaction with an xid
    try:
        with other.cursor() as cur:
            cur.execute("SELECT txid_current()")
        # written after that transaction began, committed before the backup
        execute(project.prod_url, "INSERT INTO nokey VALUES (3, 'prod')")
        data = _sync(project)
    finally:
        other.rollback()
        other.close()
    assert data["lock"]["mode"] == "short", data["lock"]
    assert _synced(project.prod_url) == _synced(project.dev_url)


@pytest.mark.parametrize("point", ["backup.done", "apply.staged"])
@pytest.mark.parametrize(
    "app_sql",
    [
        "INSERT INTO nokey VALUES (9, 'app')",
        "UPDATE nokey SET b = 'app' WHERE a = 1",
        "DELETE FROM nokey WHERE a = 1",
        "UPDATE nokey SET b = b WHERE a = 1",  # same value, new row version
    ],
)
def test_a_write_to_a_keyless_table_makes_it_load_in_full(
    project: Project, point: str, app_sql: str
) -> None:
    _checks(project)
    _both(
        project,
        "CREATE TABLE nokey (a int, b text); INSERT INTO nokey VALUES (1, 'a'), (1, 'a')",
    )
    execute(project.dev_url, "INSERT INTO nokey VALUES (2, 'dev')")
    data = _run_with_app_write(project, app_sql, point)
    if "b = b" not in app_sql or point == "apply.staged":
        # (the same values written before staging: the content is still the backup's)
        assert data["lock"]["mode"] == "full", data["lock"]
    assert _synced(project.prod_url) == _synced(project.dev_url)


def test_an_update_that_changes_a_referenced_generated_value_of_an_app_row_loads_in_full(
    project: Project,
) -> None:
    _checks(project)
    _both(
        project,
        "CREATE TABLE p (id int PRIMARY KEY, name text,"
        " code text GENERATED ALWAYS AS (upper(name)) STORED UNIQUE);"
        "CREATE TABLE c (id int PRIMARY KEY, code text REFERENCES p (code) ON UPDATE CASCADE);"
        "INSERT INTO p (id, name) VALUES (1, 'a'), (2, 'b'); INSERT INTO c VALUES (10, 'B')",
    )
    execute(project.dev_url, "UPDATE p SET name = 'z' WHERE id = 1")
    data = _run_with_app_write(project, "INSERT INTO c VALUES (100, 'A')")
    assert data["lock"]["mode"] == "full", data["lock"]
    assert _synced(project.prod_url) == _synced(project.dev_url)


def test_a_set_sequence_is_read_but_not_drawn_from_until_the_commit(project: Project) -> None:
    """A standalone sequence dev moved: between the apply and the commit the application
    reads its old value, and a nextval() waits (it could otherwise hand out dev's ids)."""
    _checks(project)
    _both(project, "CREATE TABLE t (id int PRIMARY KEY); CREATE SEQUENCE free_seq")
    execute(project.dev_url, "INSERT INTO t VALUES (1); SELECT setval('free_seq', 7)")
    proc = start_cli(project, ["sync-data", "--yes"], "load.before_commit=600")
    try:
        wait_marker(proc, "load.before_commit")
        conn = psycopg2.connect(project.prod_url)
        try:
            with conn.cursor() as cur:
                cur.execute("SET statement_timeout = '2s'")
                cur.execute("SELECT last_value, is_called FROM free_seq")  # never waits
                assert cur.fetchone() == (1, False)
                cur.execute("SET lock_timeout = '200ms'")
                with pytest.raises(psycopg2.errors.LockNotAvailable):
                    cur.execute("SELECT nextval('free_seq')")
        finally:
            conn.close()
    finally:
        proc.kill()
        proc.wait()
    assert execute(project.prod_url, "SELECT last_value, is_called FROM free_seq") == [(1, False)]


def test_a_rule_on_a_table_the_apply_does_not_write_keeps_the_short_path(
    project: Project,
) -> None:
    """A preserved table's rule: the apply never writes there (the full load would put its
    rows back with INSERT, which the rule rewrites)."""
    _checks(project)
    configure(project, "preserved_tables = keep")
    _both(
        project,
        "CREATE TABLE keep (id int PRIMARY KEY); CREATE TABLE t (id int PRIMARY KEY);"
        "INSERT INTO keep VALUES (1), (2); INSERT INTO t VALUES (1);"
        "CREATE RULE r AS ON INSERT TO keep DO INSTEAD NOTHING",
    )
    execute(project.dev_url, "INSERT INTO t VALUES (2); DELETE FROM keep WHERE id = 2")
    keep = digests(project.prod_url)["public.keep"]
    data = _sync(project)
    assert data["lock"]["mode"] == "short", data["lock"]
    assert digests(project.prod_url)["public.keep"] == keep
    assert digests(project.prod_url)["public.t"] == digests(project.dev_url)["public.t"]


def test_a_float_array_key_that_differs_only_in_a_sign_is_written_as_dev_has_it(
    project: Project,
) -> None:
    _checks(project)
    _both(
        project,
        "CREATE TABLE fa (k float8[] PRIMARY KEY, v text);"
        "INSERT INTO fa VALUES ('{0,1}', 'zero'), ('{2}', 'two')",
    )
    execute(project.dev_url, "UPDATE fa SET k = '{-0,1}' WHERE v = 'zero'")
    data = _sync(project)
    assert data["lock"]["mode"] == "short", data["lock"]
    assert _synced(project.prod_url) == _synced(project.dev_url)
