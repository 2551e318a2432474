"""checks/*.sql: parsing, comparison with dev, failures that exit 1, use inside a transaction.

These tests build a small marketplace schema by hand so they do not depend on migrations/.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import psycopg2
import pytest

from dbtools import checks
from dbtools.config import load_settings
from dbtools.errors import ConfigError

from support.db import execute
from support.project import REPO, Project

SCHEMA = """
CREATE TABLE "User" (id text PRIMARY KEY, name text, email text UNIQUE NOT NULL, image text,
                     "isDemo" boolean NOT NULL DEFAULT false);
CREATE TABLE "BuilderProfile" (id text PRIMARY KEY, "userId" text UNIQUE NOT NULL
        REFERENCES "User"(id) ON DELETE CASCADE, "displayName" text, headline text,
        featured boolean NOT NULL DEFAULT false, "validationTier" int NOT NULL DEFAULT 1,
        rating float8, searchable boolean NOT NULL DEFAULT true);
"""


def populate(url: str, *, builders: int = 4, demo: int = 2, liam: str = "liam@buildappswith.com"):
    rows = [("u0", "Liam", liam, False)]
    rows += [(f"u{i}", f"B{i}", f"b{i}@example.com", i <= demo) for i in range(1, builders)]
    for uid, name, email, is_demo in rows:
        execute(
            url,
            'INSERT INTO "User" (id, name, email, "isDemo") VALUES (%s, %s, %s, %s)',
            (uid, name, email, is_demo),
        )
        execute(
            url,
            'INSERT INTO "BuilderProfile" (id, "userId", featured) VALUES (%s, %s, %s)',
            (f"b{uid}", uid, uid == "u0"),
        )


@pytest.fixture
def market(project: Project) -> Project:
    for url in (project.dev_url, project.prod_url):
        execute(url, SCHEMA)
    populate(project.dev_url)
    return project


def test_prod_equal_to_dev_passes_with_table(market: Project) -> None:
    populate(market.prod_url)
    result = market.invoke("check", "--target", "prod")
    assert result.exit_code == 0, result.output
    assert "builders_visible" in result.output
    assert "FAIL" not in result.output
    assert "checks passed" in result.output


def test_stale_prod_fails_naming_each_broken_criterion(market: Project) -> None:
    populate(market.prod_url, builders=1, demo=0, liam="liam@buildappswith.ai")
    result = market.invoke("check", "--target", "prod", "--json")
    assert result.exit_code == 1
    data = json.loads(result.output)
    status = {c["name"]: c["ok"] for c in data["checks"]}
    assert status["builders_visible"] is False
    assert status["liam_com"] is False
    assert status["no_buildappswith_ai"] is False
    assert status["demo_builders_flagged"] is False
    assert status["marketplace_listing"] is True
    visible = next(c for c in data["checks"] if c["name"] == "builders_visible")
    assert visible["value"] == 1 and visible["dev_value"] == 4


def test_missing_column_is_a_failure_not_an_empty_marketplace(market: Project) -> None:
    populate(market.prod_url)
    execute(market.prod_url, 'ALTER TABLE "User" RENAME COLUMN image TO "imageUrl"')
    result = market.invoke("check", "--target", "prod", "--json")
    assert result.exit_code == 1
    data = json.loads(result.output)
    by_name = {c["name"]: c for c in data["checks"]}
    assert not by_name["marketplace_listing"]["ok"]
    assert "image" in by_name["marketplace_listing"]["message"]
    assert "does not exist" in by_name["marketplace_listing"]["message"]
    assert not by_name["schema_matches_dev"]["ok"]
    assert "fingerprint" in by_name["schema_matches_dev"]["message"]
    # The other checks still ran after the failing query.
    assert by_name["liam_com"]["ok"]


def test_check_never_writes_the_target(market: Project, tmp_path: Path) -> None:
    """A writing check is refused when the file is read (exit 2, one line naming file and
    check), before any connection; the target keeps its rows."""
    populate(market.prod_url)
    cdir = tmp_path / "evil"
    cdir.mkdir()
    (cdir / "a.sql").write_text(
        '-- check: sneaky\n-- expect: rows >= 0\nDELETE FROM "BuilderProfile" RETURNING id;\n'
    )
    cfg = market.root / "setup.cfg"
    cfg.write_text(
        cfg.read_text().replace(f"checks_dir = {REPO / 'checks'}", f"checks_dir = {cdir}")
    )
    result = market.invoke("check", "--target", "prod")
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [
        f"error: {cdir / 'a.sql'}:1: check 'sneaky' is a DELETE statement; "
        "a check must be exactly one read-only query (SELECT, VALUES or TABLE)"
    ]
    assert execute(market.prod_url, 'SELECT count(*) FROM "BuilderProfile"') == [(4,)]


@pytest.mark.parametrize("explicit_begin", [False, True])
def test_checks_inside_open_transaction_keep_it_usable(
    market: Project, explicit_begin: bool
) -> None:
    """sync-data runs the checks before COMMIT: they see uncommitted rows, a failing query does
    not abort the load, and the caller still decides commit or rollback. The loader drives
    its transaction with an explicit BEGIN on an autocommit connection: both ways must work."""
    settings = load_settings(market.root)
    conn = psycopg2.connect(market.prod_url)
    dev = psycopg2.connect(market.dev_url)
    try:
        if explicit_begin:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("BEGIN")
        with conn.cursor() as cur:
            cur.execute('INSERT INTO "User" (id, email) VALUES (%s, %s)', ("x", "x@example.com"))
        bad = checks.parse_checks(
            "-- check: broken\n-- expect: = 0\nSELECT nope FROM nowhere;\n"
            '-- check: sees_uncommitted\n-- expect: = 1\nSELECT count(*) FROM "User";\n'
        )
        report = checks.run_checks(conn, settings, dev_conn=dev, checks=bad)
        assert [r.ok for r in report.results] == [False, True]
        assert "nowhere" in report.results[0].message
        full = checks.run_checks(conn, settings, dev_conn=dev)
        assert not full.ok  # one user, no builders: the marketplace criteria fail
        assert {r.name for r in full.failed} >= {"builders_visible", "liam_com"}
        # The transaction is still open and alive: the insert is visible and can be committed.
        assert conn.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_INTRANS
        with conn.cursor() as cur:
            cur.execute('SELECT count(*) FROM "User"')
            assert cur.fetchone() == (1,)
        with conn.cursor() as cur:
            cur.execute("ROLLBACK")
    finally:
        conn.close()
        dev.close()
    assert execute(market.prod_url, 'SELECT count(*) FROM "User"') == [(0,)]


def test_whole_result_compared_with_dev(market: Project) -> None:
    populate(market.prod_url)
    execute(
        market.prod_url, 'UPDATE "User" SET "isDemo" = NOT "isDemo" WHERE id IN (\'u1\', \'u3\')'
    )
    result = market.invoke("check", "--target", "prod", "--json")
    data = json.loads(result.output)
    by_name = {c["name"]: c for c in data["checks"]}
    assert by_name["demo_builders_flagged"]["ok"]  # same count...
    assert not by_name["demo_flags_match_dev"]["ok"]  # ...but not the same accounts
    assert result.exit_code == 1


def test_list_builders(market: Project) -> None:
    populate(market.prod_url)
    result = market.invoke("check", "--target", "prod", "--list", "builders")
    assert result.exit_code == 0, result.output
    assert "builders on prod: 4 rows" in result.output
    assert "liam@buildappswith.com" in result.output


def test_unknown_list_is_a_config_error_naming_the_lists(market: Project) -> None:
    result = market.invoke("check", "--target", "prod", "--list", "nope")
    assert result.exit_code == 2
    assert "no list 'nope'" in result.output and "builders" in result.output


def test_a_list_of_another_schema_comes_from_its_checks_dir(project: Project) -> None:
    execute(
        project.prod_url,
        "CREATE TABLE customers (id int PRIMARY KEY, name text, vip boolean, since date);"
        "INSERT INTO customers VALUES (1, 'Ada', true, '2024-01-02'), (2, 'Bo', false, NULL)",
    )
    cdir = project.root / "own_checks"
    cdir.mkdir()
    (cdir / "shop.sql").write_text(
        "-- check: has_customers\n-- expect: > 0\nSELECT count(*) FROM customers;\n\n"
        "-- list: customers\n-- description: every customer\n"
        "SELECT name, vip, since FROM customers ORDER BY id;\n"
    )
    cfg = project.root / "setup.cfg"
    cfg.write_text(
        "\n".join(
            f"checks_dir = {cdir}" if line.startswith("checks_dir") else line
            for line in cfg.read_text().splitlines()
        )
        + "\n"
    )
    result = project.invoke("check", "--target", "prod", "--list", "customers", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["lists"]["customers"] == [
        {"name": "Ada", "vip": True, "since": "2024-01-02"},
        {"name": "Bo", "vip": False, "since": None},
    ]
    text = project.invoke("check", "--target", "prod", "--list", "customers").output
    assert "customers on prod: 2 rows" in text
    assert re.search(r"Ada\s+yes\s+2024-01-02", text), text


@pytest.mark.pure
@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("-- summary: a\n-- expect: = 1\nSELECT 1;\n", "a summary takes only description"),
        ("-- list: a\n-- builtin: schema_matches_dev\n", "a list takes only description"),
        ("-- summary: a\n-- description: A\n", "summary 'a' has no query"),
        ("-- summary: a\nSELECT 1;\n-- summary: a\nSELECT 2;\n", "summary 'a' is declared twice"),
        ("-- list: two words\nSELECT 1;\n", "list name 'two words' must be a single word"),
        (
            "-- summary: gone\nDELETE FROM t;\n",
            "summary 'gone' is a DELETE statement; a summary must be exactly one read-only query",
        ),
        ("-- list: l\nSELECT * FROM t FOR UPDATE;\n", "a list must only read"),
    ],
)
def test_malformed_summary_and_list_entries_name_file_and_line(text: str, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        checks.parse_entries(text, "x.sql")
    assert needle in info.value.message
    assert info.value.message.startswith("x.sql:")


@pytest.mark.pure
def test_entries_of_each_kind_and_names_per_kind() -> None:
    text = (
        "-- check: n\n-- expect: = 1\nSELECT 1;\n"
        "-- summary: n\n-- description: the n\nSELECT 2;\n"
        "-- list: n\nSELECT 3, 4;\n"
    )
    got = checks.parse_entries(text, "x.sql")
    assert [(e.kind, e.name, e.description, e.query) for e in got] == [
        ("check", "n", "", "SELECT 1"),
        ("summary", "n", "the n", "SELECT 2"),
        ("list", "n", "", "SELECT 3, 4"),
    ]
    assert [c.name for c in checks.parse_checks(text, "x.sql")] == ["n"]


@pytest.mark.pure
@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("-- check: a\nSELECT 1;\n", "no '-- expect:' line"),
        ("-- check: a\n-- expect: == 1\nSELECT 1;\n", "cannot read expectation"),
        ("-- check: a\n-- expect: = 1\n", "has no query"),
        (
            "-- check: a\n-- expect: = 1\nSELECT 1;\n-- check: a\n-- expect: = 1\nSELECT 1;\n",
            "twice",
        ),
        ("-- check: a\n-- builtin: nope\n", "unknown builtin"),
        ("-- check: a\n-- colour: red\nSELECT 1;\n", "unknown header"),
    ],
)
def test_malformed_checks_name_file_and_line(text: str, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        checks.parse_checks(text, "x.sql")
    assert needle in info.value.message
    assert "x.sql:" in info.value.message


@pytest.mark.pure
def test_expectation_grammar() -> None:
    parsed = checks.parse_checks(
        "-- check: a\n-- expect: rows >= 2\n-- expect: != 'x''y'\n-- expect: < 1.5\nSELECT 1;\n"
    )
    (c,) = parsed
    assert [(e.rows, e.op, e.rhs) for e in c.expectations] == [
        (True, ">=", 2),
        (False, "!=", "x'y"),
        (False, "<", 1.5),
    ]
    assert not c.needs_dev


@pytest.mark.pure
def test_repository_checks_parse() -> None:
    settings = load_settings(Path(__file__).resolve().parent.parent)
    names = [c.name for c in checks.load_checks(settings)]
    assert {"builders_visible", "liam_com", "no_buildappswith_ai", "demo_builders_flagged"} <= set(
        names
    )
    assert "schema_matches_dev" in names and "marketplace_listing" in names
    summary = [e.name for e in checks.load_summary(settings)]
    assert summary == [
        "users",
        "builder_profiles",
        "searchable_builders",
        "demo_users",
        "liam_com",
        "buildappswith_ai_addresses",
    ]
    checks.load_list(settings, "builders")


def test_cli_missing_checks_dir_is_config_error(market: Project) -> None:
    cfg = market.root / "setup.cfg"
    lines = [
        "checks_dir = /nonexistent/checks" if line.startswith("checks_dir") else line
        for line in cfg.read_text().splitlines()
    ]
    cfg.write_text("\n".join(lines) + "\n")
    result = market.invoke("check", "--target", "prod")
    assert result.exit_code == 2
    assert "does not exist" in result.output
