"""`dbtools verify` against real databases: both sides, the project's summary, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

from support.db import db_url, execute
from support.project import Project


def configure(project: Project, **settings: str | None) -> None:
    """Set (or, with None, drop) settings of the project's setup.cfg [dbtools]."""
    cfg = project.root / "setup.cfg"
    lines = [line for line in cfg.read_text().splitlines() if line.split(" =")[0] not in settings]
    lines += [f"{key} = {value}" for key, value in settings.items() if value is not None]
    cfg.write_text("\n".join(lines) + "\n")


def use_checks_dir(project: Project, files: dict[str, str], **settings: str | None) -> Path:
    """Point the project's checks_dir at a directory of its own holding files."""
    cdir = project.root / "own_checks"
    cdir.mkdir(exist_ok=True)
    for name, text in files.items():
        (cdir / name).write_text(text, encoding="utf-8")
    configure(project, checks_dir=str(cdir), **settings)
    return cdir


def test_verify_two_empty_databases_prints_both_sides(project: Project) -> None:
    result = project.invoke("verify")
    assert result.exit_code == 0, result.output
    assert f"== dev: {project.dev_url}" in result.output
    assert f"== prod: {project.prod_url}" in result.output
    assert f"database   {project.prod_name} (ok)" in result.output
    assert "dev and prod are distinct databases" in result.output


def test_verify_json_reports_identity_counts_and_summary(project: Project) -> None:
    execute(
        project.prod_url,
        'CREATE TABLE "User" (id text PRIMARY KEY, email text, "isDemo" boolean);'
        "INSERT INTO \"User\" VALUES ('1', 'liam@buildappswith.ai', false), ('2', 'x@y.z', true)",
    )
    result = project.invoke("verify", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    prod = data["sides"]["prod"]
    assert prod["identity"]["database"] == project.prod_name
    assert prod["tables"] == {"public.User": 2}
    # The repository's checks/summary.sql, entry by entry.
    assert prod["summary"] == {
        "users": 2,
        "builder_profiles": None,  # tables the schema lacks are unknown, not zero
        "searchable_builders": None,
        "demo_users": 1,
        "liam_com": "MISSING",
        "buildappswith_ai_addresses": 1,
    }
    assert prod["warnings"] == []
    assert all(v is None for v in data["sides"]["dev"]["summary"].values())
    assert data["distinct"] is True


def test_verify_text_prints_each_summary_line_with_its_label(project: Project) -> None:
    execute(
        project.prod_url,
        'CREATE TABLE "User" (id text PRIMARY KEY, email text, "isDemo" boolean);'
        "INSERT INTO \"User\" VALUES ('1', 'liam@buildappswith.com', false)",
    )
    result = project.invoke("verify")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    prod = lines[next(i for i, line in enumerate(lines) if line.startswith("== prod")) :]
    assert "   summary    users: 1" in prod
    assert "              builder profiles: n/a" in prod
    assert "              liam@buildappswith.com: present" in prod
    assert "              @buildappswith.ai addresses: 0" in prod
    dev = lines[: lines.index(prod[0])]
    assert not any("summary" in line for line in dev)  # all n/a on dev: no summary shown


def test_a_project_with_another_schema_shows_its_own_summary(project: Project) -> None:
    for url, (orders, open_) in ((project.dev_url, (3, 2)), (project.prod_url, (1, 0))):
        execute(
            url,
            "CREATE TABLE orders (id int PRIMARY KEY, status text, total numeric(10,2));"
            + "".join(
                f"INSERT INTO orders VALUES ({i}, '{'open' if i < open_ else 'paid'}', 9.5);"
                for i in range(orders)
            ),
        )
    execute(project.prod_url, "CREATE TABLE refunds (id int PRIMARY KEY)")
    use_checks_dir(
        project,
        {
            "shop.sql": "-- check: has_orders\n-- expect: > 0\nSELECT count(*) FROM orders;\n",
            "summary.sql": (
                "-- summary: orders\n-- description: orders placed\n"
                "SELECT count(*) FROM orders;\n\n"
                "-- summary: open_orders\n-- description: open orders\n"
                "SELECT count(*) FROM orders WHERE status = 'open';\n\n"
                "-- summary: revenue\nSELECT sum(total) FROM orders;\n\n"
                "-- summary: refunds\n-- description: refunds issued\n"
                "SELECT count(*) FROM refunds;\n"
            ),
        },
        # A shop: no marketplace logins to preserve, no migrations of the repository's.
        preserved_tables="",
        migrations_dir=str(project.root / "migrations"),
    )
    result = project.invoke("verify", "--json")
    assert result.exit_code == 0, result.output
    sides = json.loads(result.stdout)["sides"]
    assert sides["dev"]["summary"] == {
        "orders": 3,
        "open_orders": 2,
        "revenue": 28.5,
        "refunds": None,  # dev has no such table: n/a, not an error
    }
    assert sides["prod"]["summary"] == {
        "orders": 1,
        "open_orders": 0,
        "revenue": 9.5,
        "refunds": 0,
    }
    text = project.invoke("verify").output
    assert "   summary    orders placed: 3" in text
    assert "              open orders: 0" in text
    assert "              revenue: 28.5" in text  # no description: the name is the label
    assert "              refunds issued: n/a" in text
    # None of the repository's marketplace lines: they are data of its checks/, not dbtools.
    assert "builder" not in text and "buildappswith" not in text


def test_a_summary_query_that_writes_is_refused_with_exit_2(project: Project) -> None:
    execute(project.prod_url, "CREATE TABLE t (id int); INSERT INTO t VALUES (1)")
    use_checks_dir(
        project,
        {
            "a.sql": "-- check: fine\n-- expect: = 1\nSELECT 1;\n",
            "summary.sql": "-- summary: rows\nSELECT count(*) FROM t;\n\n"
            "-- summary: wipe\n-- description: wiped\nDELETE FROM t;\n",
        },
    )
    result = project.invoke("verify", "--json")
    assert result.exit_code == 2, result.output
    data = json.loads(result.stdout)
    assert data["problems"] == [
        "own_checks/summary.sql:4: summary 'wipe' is a DELETE statement; a summary must be "
        "exactly one read-only query (SELECT, VALUES or TABLE)"
    ]
    assert data["sides"]["prod"]["summary"] == {}  # nothing of the file ran
    assert execute(project.prod_url, "SELECT count(*) FROM t") == [(1,)]
    text = project.invoke("verify")
    assert text.exit_code == 2
    assert "error: own_checks/summary.sql:4: summary 'wipe' is a DELETE" in text.stderr
    # `dbtools check` refuses the same file the same way.
    check = project.invoke("check", "--target", "prod")
    assert check.exit_code == 2
    assert "summary 'wipe' is a DELETE statement" in check.output


def test_a_summary_whose_function_writes_is_stopped_at_run_time_with_exit_2(
    project: Project,
) -> None:
    execute(
        project.prod_url,
        "CREATE TABLE t (id int); INSERT INTO t VALUES (1);"
        "CREATE FUNCTION sneak() RETURNS int LANGUAGE sql AS "
        "$$ DELETE FROM t; SELECT 1 $$",
    )
    use_checks_dir(project, {"summary.sql": "-- summary: sneaky\nSELECT sneak();\n"})
    result = project.invoke("verify", "--json")
    assert result.exit_code == 2, result.output
    problems = json.loads(result.stdout)["problems"]
    assert len(problems) == 1 and problems[0].startswith("prod: ")
    assert "summary 'sneaky' tried to write" in problems[0]
    assert execute(project.prod_url, "SELECT count(*) FROM t") == [(1,)]


def test_a_summary_query_that_fails_otherwise_is_a_warning(project: Project) -> None:
    use_checks_dir(
        project,
        {
            "summary.sql": "-- summary: ratio\nSELECT 1 / 0;\n\n"
            "-- summary: several\nVALUES (1), (2);\n\n-- summary: one\nSELECT 1;\n"
        },
    )
    result = project.invoke("verify", "--json")
    assert result.exit_code == 0, result.output
    prod = json.loads(result.stdout)["sides"]["prod"]
    assert prod["summary"] == {"ratio": None, "several": None, "one": 1}
    assert any("summary 'ratio'" in w and "division by zero" in w for w in prod["warnings"])
    assert any("summary 'several'" in w and "expected one value" in w for w in prod["warnings"])


def test_without_a_checks_dir_verify_shows_no_summary(project: Project) -> None:
    configure(project, checks_dir="nowhere")
    result = project.invoke("verify", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["sides"]["prod"]["summary"] == {}


def test_without_expected_names_verify_is_a_config_error_and_writes_are_refused(
    project: Project,
) -> None:
    configure(project, dev_database=None, prod_database=None)
    result = project.invoke("verify", "--json")
    assert result.exit_code == 2, result.output
    problems = json.loads(result.stdout)["problems"]
    assert "dev: no expected database name: set dev_database in setup.cfg [dbtools]" in problems
    assert "prod: no expected database name: set prod_database in setup.cfg [dbtools]" in problems
    text = project.invoke("verify").output
    assert "(no expected name: set prod_database in setup.cfg [dbtools])" in text
    write = project.invoke("migrate", "apply", "--target", "dev")
    assert write.exit_code == 2, write.output
    assert "no expected dev database name is configured" in write.output


def test_verify_fails_with_exit_1_when_a_name_is_not_the_expected_one(project: Project) -> None:
    other = project.prod_url.rsplit("/", 1)[0] + "/postgres"
    env = {**project.env, "PROD_DATABASE_URL": other}
    from click.testing import CliRunner

    from dbtools.cli import main

    result = CliRunner().invoke(main, ["verify"], env=env)
    assert result.exit_code == 1
    assert f"expected '{project.prod_name}'" in result.stderr


def test_same_database_spelled_twice_is_refused_with_exit_3(project: Project) -> None:
    # localhost vs 127.0.0.1 and an explicit port: two spellings of one database.
    spelled = db_url(project.dev_name).replace("127.0.0.1", "localhost")
    if ":5432" not in spelled:
        spelled = spelled.replace("@localhost/", "@localhost:5432/")
    from click.testing import CliRunner

    from dbtools.cli import main

    env = {**project.env, "PROD_DATABASE_URL": spelled}
    result = CliRunner().invoke(main, ["verify", "--json"], env=env)
    assert result.exit_code == 3
    data = json.loads(result.stdout)
    assert data["distinct"] is False
    assert any("same database" in p for p in data["problems"])
