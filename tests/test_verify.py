"""`dbtools verify` against real databases: both sides, the marketplace summary, exit codes."""

from __future__ import annotations

import json

from conftest import Project, db_url, execute


def test_verify_two_empty_databases_prints_both_sides(project: Project) -> None:
    result = project.invoke("verify")
    assert result.exit_code == 0, result.output
    assert f"== dev: {project.dev_url}" in result.output
    assert f"== prod: {project.prod_url}" in result.output
    assert f"database   {project.prod_name} (ok)" in result.output
    assert "dev and prod are distinct databases" in result.output


def test_verify_json_reports_identity_counts_and_marketplace(project: Project) -> None:
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
    assert prod["marketplace"]["users"] == 2
    assert prod["marketplace"]["demo_users"] == 1
    assert prod["marketplace"]["liam_com"] == 0
    assert prod["marketplace"]["buildappswith_ai_addresses"] == 1
    # Tables the schema lacks are unknown, not zero.
    assert prod["marketplace"]["builder_profiles"] is None
    assert data["distinct"] is True


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
