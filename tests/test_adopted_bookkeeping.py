"""A database made by another migration tool keeps that tool's history to itself (#14.6):
`_prisma_migrations`, `alembic_version`, ... are bookkeeping, never data. A sync does not
overwrite prod's record with dev's, a plan does not list it, and a history table present on
one side only does not make the schemas differ."""

from __future__ import annotations

import json
from pathlib import Path

from support.db import execute
from support.project import Project, configure

PRISMA = """
CREATE TABLE _prisma_migrations (id varchar(36) PRIMARY KEY, migration_name varchar(255));
"""


def test_other_tools_migration_history_stays_each_sides_own(
    project: Project, tmp_path: Path
) -> None:
    checks = tmp_path / "checks"
    checks.mkdir()
    (checks / "t.sql").write_text(
        "-- check: rows\n-- description: d\n-- expect: >= 0\nSELECT count(*) FROM item;\n"
    )
    configure(project, f"checks_dir = {checks}\npreserved_tables = ")
    for url in (project.dev_url, project.prod_url):
        execute(url, "CREATE TABLE item (id int PRIMARY KEY, v text)" + ";" + PRISMA)
    execute(project.dev_url, "INSERT INTO item VALUES (1, 'dev')")
    execute(project.dev_url, "INSERT INTO _prisma_migrations VALUES ('d1', '0001_dev_only')")
    execute(project.prod_url, "INSERT INTO _prisma_migrations VALUES ('p1', '0001_init')")
    execute(project.dev_url, "CREATE TABLE alembic_version (version_num varchar(32))")

    plan = project.invoke("plan", "--json")
    assert plan.exit_code == 0, plan.output
    assert [t["table"] for t in json.loads(plan.output)["tables"]] == ["public.item"]

    result = project.invoke("sync-data", "--yes")

    assert result.exit_code == 0, result.output  # alembic_version on dev only: same schema
    assert execute(project.prod_url, "SELECT v FROM item") == [("dev",)]
    assert execute(project.prod_url, "SELECT id, migration_name FROM _prisma_migrations") == [
        ("p1", "0001_init")
    ]
