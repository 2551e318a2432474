"""A migration that would destroy data in prod is refused with the number of rows, before any
backup or change, unless its own file says why (#14.2); acknowledged, it applies."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from support.db import execute, schema_objects
from support.pipeline import migrate
from support.project import REPO, Project

DROP_NAME = '-- depends: 0003_rename_user_image\nALTER TABLE "User" DROP COLUMN "name";\n'
UNDO = 'ALTER TABLE "User" ADD COLUMN "name" TEXT;\n'


@pytest.fixture
def own(project: Project) -> Path:
    own = project.root / "migrations"
    shutil.copytree(REPO / "migrations", own)
    cfg = project.root / "setup.cfg"
    cfg.write_text(
        cfg.read_text().replace(
            f"migrations_dir = {REPO / 'migrations'}", f"migrations_dir = {own}"
        )
    )
    migrate(project.dev_url)
    migrate(project.prod_url)
    execute(
        project.prod_url,
        """INSERT INTO "User" (id, email, name, "updatedAt") VALUES
           ('u1', 'a@x', 'Ann', now()), ('u2', 'b@x', 'Bob', now()), ('u3', 'c@x', NULL, now())""",
    )
    return own


def _add(own: Path, text: str) -> None:
    (own / "0004_drop_name.sql").write_text(text)
    (own / "0004_drop_name.rollback.sql").write_text(UNDO)


@pytest.mark.parametrize("command", [["sync-schema", "--yes"], ["full-sync", "--yes"]])
def test_dropping_a_filled_column_in_prod_is_refused_with_the_count(
    project: Project, own: Path, command: list[str]
) -> None:
    _add(own, DROP_NAME)
    assert project.invoke("migrate", "apply", "--target", "dev").exit_code == 0
    before = schema_objects(project.prod_url)

    result = project.invoke(*command)

    assert result.exit_code == 3, result.output
    assert (
        "the migrations would destroy data there: 0004_drop_name.sql line 2: 2 non-null values "
        'in column "User"."name"; nothing was changed'
    ) in result.output
    if command[0] == "sync-schema":
        assert (
            "hint: if that is intended, say why at the top of 0004_drop_name.sql: "
            '-- dbtools: allow drop-column "name": <reason>'
        ) in result.output
    assert schema_objects(project.prod_url) == before
    assert not (project.snapshot_dir / "prod").exists()  # refused before any backup


def test_an_acknowledged_drop_applies(project: Project, own: Path) -> None:
    # at the top: yoyo would run a comment after the last statement as an empty statement
    _add(own, '-- dbtools: allow drop-column "name": names live in Profile now\n' + DROP_NAME)
    dev = project.invoke("migrate", "apply", "--target", "dev")
    assert dev.exit_code == 0, dev.output

    result = project.invoke("sync-schema", "--yes")

    assert result.exit_code == 0, result.output
    cols = execute(
        project.prod_url,
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'User'",
    )
    assert ("name",) not in cols


def test_an_empty_column_or_a_table_made_in_the_same_run_loses_nothing(
    project: Project, own: Path
) -> None:
    execute(project.prod_url, 'UPDATE "User" SET name = NULL')
    _add(
        own,
        DROP_NAME
        + 'CREATE TABLE "Scratch" (id int);\nINSERT INTO "Scratch" VALUES (1);\n'
        + 'DROP TABLE "Scratch";\n',
    )
    assert project.invoke("migrate", "apply", "--target", "dev").exit_code == 0

    result = project.invoke("sync-schema", "--yes")

    assert result.exit_code == 0, result.output


def test_a_type_change_that_alters_values_is_counted(project: Project, own: Path) -> None:
    execute(
        project.prod_url,
        """UPDATE "User" SET "emailVerified" = CASE id
             WHEN 'u1' THEN '2024-01-01 10:00:00.123'::timestamp
             WHEN 'u2' THEN '2024-01-01 10:00:00.5'::timestamp
             ELSE '2024-01-01 10:00:00'::timestamp END""",
    )
    _add(
        own,
        "-- depends: 0003_rename_user_image\n"
        'ALTER TABLE "User" ALTER COLUMN "emailVerified" TYPE timestamp(0);\n',
    )
    assert project.invoke("migrate", "apply", "--target", "dev").exit_code == 0

    result = project.invoke("sync-schema", "--yes")

    assert result.exit_code == 3, result.output
    assert (
        '0004_drop_name.sql line 2: 2 values altered by the type change of "User"."emailVerified" '
        "(to timestamp(0))"
    ) in result.output


NOT_NULL = (
    '-- depends: 0003_rename_user_image\nALTER TABLE "User" ALTER COLUMN "name" SET NOT NULL;\n'
)


@pytest.mark.parametrize(
    ("sql", "shown"),
    [
        (NOT_NULL, '1 rows with NULL in "User"."name" (SET NOT NULL)'),
        (
            "-- depends: 0003_rename_user_image\n"
            'ALTER TABLE "User" ADD COLUMN "plan" text NOT NULL;\n',
            '3 rows with NULL in "User"."plan" (ADD COLUMN ... NOT NULL without a default)',
        ),
        (
            "-- depends: 0003_rename_user_image\n"
            "ALTER TABLE \"User\" ADD CONSTRAINT named CHECK (name <> 'Bob');\n",
            "1 rows failing CHECK (name <> 'Bob') on \"User\"",
        ),
    ],
    ids=["set-not-null", "add-column-not-null", "check"],
)
def test_a_constraint_existing_rows_fail_is_refused_before_anything_runs(
    project: Project, own: Path, sql: str, shown: str
) -> None:
    # an acknowledgement does not help: the migration would fail half-way through the run
    _add(own, '-- dbtools: allow not-null "name": no\n' + sql)
    assert project.invoke("migrate", "apply", "--target", "dev").exit_code == 0
    before = schema_objects(project.prod_url)

    result = project.invoke("sync-schema", "--yes")

    assert result.exit_code == 3, result.output
    assert f"the migrations would fail there: 0004_drop_name.sql line 3: {shown}" in result.output
    assert schema_objects(project.prod_url) == before
    assert not (project.snapshot_dir / "prod").exists()


@pytest.mark.parametrize(
    "sql",
    [
        "-- depends: 0003_rename_user_image\n"
        "UPDATE \"User\" SET name = '' WHERE name IS NULL;\n"
        'ALTER TABLE "User" ALTER COLUMN "name" SET NOT NULL;\n',
        "-- depends: 0003_rename_user_image\n"
        "ALTER TABLE \"User\" ADD CONSTRAINT named CHECK (name <> 'Bob') NOT VALID;\n",
        "-- depends: 0003_rename_user_image\n"
        'ALTER TABLE "User" ADD COLUMN "plan" text NOT NULL DEFAULT \'free\';\n',
    ],
    ids=["fixed-first", "not-valid", "with-default"],
)
def test_a_constraint_the_rows_can_take_applies(project: Project, own: Path, sql: str) -> None:
    _add(own, sql)
    dev = project.invoke("migrate", "apply", "--target", "dev")
    assert dev.exit_code == 0, dev.output

    result = project.invoke("sync-schema", "--yes")

    assert result.exit_code == 0, result.output
