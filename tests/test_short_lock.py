"""sync-data and apply hold prod's tables only for the writes: the short-lock path (sync.delta).

Prod's backup and the staging of dev's changed rows happen while the application goes on
reading and writing; the tables are then locked IN EXCLUSIVE MODE (writes wait, reads never)
only to write the changes. What the apply overwrites must not have changed since the backup:
when it did, the run takes a fresh backup under the lock and loads in full, so the backup
always holds what the sync destroyed. Application writes the apply does not touch are kept.
"""

from __future__ import annotations

import json

import psycopg2
import pytest

from support.db import digests, execute
from support.diverged import DEV_CHANGES, FILL, SCHEMA
from support.processes import assert_clean_server, start_cli, wait_marker
from support.project import Project, configure


def _own_checks(project: Project, extra: str = "") -> None:
    """These tables are not the marketplace's: one trivial check of their own."""
    checks = project.root / "checks"
    checks.mkdir(exist_ok=True)
    (checks / "up.sql").write_text(
        "-- check: up\n-- description: prod answers\n-- expect: > 0\nSELECT 1;\n"
    )
    configure(project, f"checks_dir = {checks}\n" + (extra or "preserved_tables ="))


@pytest.fixture
def diverged(project: Project) -> Project:
    _own_checks(project, "preserved_tables = Account")
    for url in (project.dev_url, project.prod_url):
        execute(url, SCHEMA)
        execute(url, FILL)
    execute(project.dev_url, DEV_CHANGES)
    return project


def _synced(url: str) -> dict:
    return {
        k: v for k, v in digests(url).items() if k.startswith("public.") and k != "public.Account"
    }


def _sync(project: Project) -> dict:
    result = project.invoke("sync-data", "--yes", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def _changes(data: dict) -> dict:
    return {
        t["table"]: (t["inserted"], t["updated"], t["deleted"])
        for t in data["tables"]
        if not t["preserved"]
    }


def test_sync_data_writes_only_the_changes_under_a_short_lock(diverged: Project) -> None:
    account = digests(diverged.prod_url)["public.Account"]
    data = _sync(diverged)
    assert data["lock"]["mode"] == "short", data["lock"]
    assert data["lock"]["seconds"] is not None and data["lock"]["seconds"] >= 0
    assert _changes(data) == {
        "public.item": (4, 3, 2),
        "public.Odd #?% na/me": (0, 1, 0),
        "public.nokey": (8, 0, 7),  # no key to match rows on: replaced whole
        "public.same": (0, 0, 0),
    }
    assert _synced(diverged.prod_url) == _synced(diverged.dev_url)
    assert digests(diverged.prod_url)["public.Account"] == account


def test_floats_that_only_duckdb_thinks_equal_are_written(project: Project) -> None:
    _own_checks(project)
    for url in (project.dev_url, project.prod_url):
        execute(url, "CREATE TABLE f (id int PRIMARY KEY, x float8, y float4)")
        execute(url, "INSERT INTO f VALUES (1, 0, 0), (2, 'NaN', 1), (3, 1.5, 2)")
    execute(project.dev_url, "UPDATE f SET x = '-0' WHERE id = 1")
    data = _sync(project)
    assert data["lock"]["mode"] == "short"
    assert _changes(data)["public.f"] == (0, 1, 0)
    assert execute(project.prod_url, "SELECT x::text FROM f WHERE id = 1") == [("-0",)]


def test_a_unique_value_moving_to_a_new_row_and_a_foreign_key(project: Project) -> None:
    _own_checks(project)
    schema = (
        "CREATE TABLE u (id int PRIMARY KEY, email text UNIQUE);"
        "CREATE TABLE o (id int PRIMARY KEY, u int REFERENCES u ON DELETE CASCADE);"
        "INSERT INTO u VALUES (1, 'a'), (2, 'b'); INSERT INTO o VALUES (10, 1), (20, 2);"
    )
    for url in (project.dev_url, project.prod_url):
        execute(url, schema)
    # dev: user 1 is gone with its order, a new user 3 has its email; order 20 moves to 3
    execute(
        project.dev_url,
        "DELETE FROM o WHERE id = 10; DELETE FROM u WHERE id = 1;"
        "INSERT INTO u VALUES (3, 'a'); UPDATE o SET u = 3 WHERE id = 20",
    )
    data = _sync(project)
    assert data["lock"]["mode"] == "short", data["lock"]
    assert _synced(project.prod_url) == _synced(project.dev_url)


def _run_with_app_write(project: Project, app_sql: str, point: str = "apply.staged") -> dict:
    """sync-data paused (prod unlocked) at `point`: after staging, or after the backup; the
    application writes; the run goes on."""
    proc = start_cli(project, ["sync-data", "--yes", "--json"], f"{point}=3")
    wait_marker(proc, point)
    execute(project.prod_url, app_sql)  # not blocked: nothing is locked yet
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, (out, err)
    return json.loads(out)


def test_application_writes_the_apply_does_not_touch_are_kept(diverged: Project) -> None:
    data = _run_with_app_write(
        diverged,
        "INSERT INTO item (id, name) VALUES (1000, 'written by the app'); "
        "UPDATE item SET name = 'app' WHERE id = 40",
    )
    assert data["lock"]["mode"] == "short", data["lock"]
    rows = execute(diverged.prod_url, "SELECT id, name FROM item WHERE id IN (10, 40, 1000)")
    assert sorted(rows) == [(10, "renamed"), (40, "app"), (1000, "written by the app")]


@pytest.mark.parametrize("point", ["backup.done", "apply.staged"])
def test_a_write_to_a_row_the_apply_changes_makes_it_load_in_full(
    diverged: Project, point: str
) -> None:
    data = _run_with_app_write(diverged, "UPDATE item SET name = 'app' WHERE id = 10", point)
    assert data["lock"]["mode"] == "full"
    assert "changed since the backup" in data["lock"]["reason"]
    assert _synced(diverged.prod_url) == _synced(diverged.dev_url)
    # the backup that counts is the second one, taken under the lock: it holds the app's row
    backup = data["backup"]["path"]
    found = diverged.invoke("snapshot", "query", backup, "SELECT name FROM item WHERE id = 10")
    assert "app" in found.output


def test_reads_go_on_while_the_apply_holds_its_lock(diverged: Project) -> None:
    proc = start_cli(diverged, ["sync-data", "--yes"], "load.before_commit=600")
    try:
        wait_marker(proc, "load.before_commit")
        conn = psycopg2.connect(diverged.prod_url)
        try:
            with conn.cursor() as cur:
                cur.execute("SET statement_timeout = '500ms'")
                cur.execute("SELECT count(*) FROM item")  # a read: never waits
                assert cur.fetchone() == (50,)  # the old rows until the commit
                cur.execute("SET lock_timeout = '200ms'")
                with pytest.raises(psycopg2.errors.LockNotAvailable):
                    cur.execute("UPDATE same SET v = 'x' WHERE id = 1")  # a write waits
        finally:
            conn.close()
    finally:
        proc.kill()
        proc.wait()
    # killed before the commit: prod is as it was, no staging table or lock is left
    assert execute(diverged.prod_url, "SELECT count(*) FROM item") == [(50,)]
    assert_clean_server(diverged)
    assert execute(
        diverged.prod_url, "SELECT count(*) FROM pg_class WHERE relpersistence = 't'"
    ) == [(0,)]


def test_the_marketplace_sync_takes_the_short_path(project: Project) -> None:
    """Preserved logins that reference synced users (ON DELETE CASCADE) stay where they are."""
    from support.pipeline import migrate, seed_dev, seed_stale_prod

    migrate(project.dev_url)
    migrate(project.prod_url)
    seed_dev(project.dev_url)
    seed_stale_prod(project.prod_url)
    accounts = digests(project.prod_url)["public.Account"]
    data = _sync(project)
    assert data["lock"]["mode"] == "short", data["lock"]
    assert digests(project.prod_url)["public.Account"] == accounts
    preserved = ("public.Account", "public.Session", "public.VerificationToken")
    dev, prod = digests(project.dev_url), digests(project.prod_url)
    for key in dev:
        name = key.partition(".")[2]
        if key.startswith("public.") and key not in preserved and not name.startswith("_"):
            assert prod[key] == dev[key], key


def test_prods_history_records_how_long_writes_were_held_and_who_ran_it(
    diverged: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_ACTOR", "octo-reviewer")
    _sync(diverged)
    result = diverged.invoke("history", "--json")
    assert result.exit_code == 0, result.output
    newest = json.loads(result.output)["entries"][0]
    assert newest["operation"] == "sync-data"
    assert newest["lock"]["mode"] == "short"
    assert 0 <= newest["lock"]["seconds"] < 60
    assert newest["run_by"] == "octo-reviewer (GitHub Actions)"
