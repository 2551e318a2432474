"""What `migrate apply` and `migrate rollback` would run, computed from the files and a
database's status alone: no server (`pytest -m pure` runs these without PostgreSQL).

The status a database reports is built by hand here; tests/test_migrations.py runs the same
plans against real databases through the CLI.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dbtools import migrations
from dbtools.errors import ConfigError, MigrationError
from dbtools.migrations.files import load_migrations
from dbtools.migrations.plan import plan_apply, plan_rollback

from support.project import REPO

pytestmark = pytest.mark.pure

MIGRATIONS = REPO / "migrations"
LABEL = "dev database x"


def status(applied: list[str], files: list[str]) -> migrations.MigrationStatus:
    return migrations.MigrationStatus(
        env="dev",
        database="x",
        applied=applied,
        pending=[m for m in files if m not in applied],
        drift=[],
        unknown=[],
        unchecked=[],
    )


def ids(plan: list) -> list[str]:
    return [m.id for m in plan]


@pytest.fixture
def repo_files() -> list:
    return load_migrations(MIGRATIONS)


@pytest.fixture
def branched(tmp_path: Path) -> list:
    """b and c both depend on a; c does not depend on b. Ids unique to this test module:
    yoyo keeps a process-wide registry of migrations by id."""
    d = tmp_path / "migrations"
    d.mkdir()
    (d / "0001_plan_a.sql").write_text("CREATE TABLE a (id int);\n")
    (d / "0002_plan_b.sql").write_text("-- depends: 0001_plan_a\nCREATE TABLE b (id int);\n")
    (d / "0003_plan_c.sql").write_text("-- depends: 0001_plan_a\nCREATE TABLE c (id int);\n")
    for stem in ("0001_plan_a", "0002_plan_b", "0003_plan_c"):
        (d / f"{stem}.rollback.sql").write_text(f"DROP TABLE {stem[-1]};\n")
    return load_migrations(d)


def test_the_repository_migrations_apply_in_their_numbered_order(repo_files: list) -> None:
    assert ids(repo_files) == migrations.migration_ids(MIGRATIONS)
    assert ids(repo_files) == sorted(ids(repo_files))
    assert ids(repo_files)[:3] == [
        "0001_initial",
        "0002_marketplace_fields",
        "0003_rename_user_image",
    ]


def test_apply_plans_what_is_pending_in_order(repo_files: list) -> None:
    every = ids(repo_files)
    for done in range(len(every) + 1):
        st = status(every[:done], every)
        assert ids(plan_apply(st, repo_files, None, None)) == every[done:]


def test_apply_upto_stops_at_that_migration(repo_files: list) -> None:
    every = ids(repo_files)
    st = status([], every)
    assert ids(plan_apply(st, repo_files, every[1], None)) == every[:2]
    # already applied up to there: nothing to do
    st = status(every[:2], every)
    assert ids(plan_apply(st, repo_files, every[1], None)) == []


def test_apply_upto_an_unknown_migration_is_a_config_error(repo_files: list) -> None:
    st = status([], ids(repo_files))
    with pytest.raises(ConfigError, match="no migration '9999_nope' in the migrations dir"):
        plan_apply(st, repo_files, "9999_nope", None)


def test_apply_by_id_runs_only_those_still_pending(repo_files: list) -> None:
    every = ids(repo_files)
    st = status(every[:1], every)
    chosen = [every[0], every[2]]  # the first is applied already
    assert ids(plan_apply(st, repo_files, None, chosen)) == [every[2]]


def test_apply_by_an_unknown_id_names_it(repo_files: list) -> None:
    st = status([], ids(repo_files))
    with pytest.raises(ConfigError, match="no such migration: 9999_nope, 9998_nada"):
        plan_apply(st, repo_files, None, ["9999_nope", "9998_nada"])


def test_rollback_plans_the_newest_applied_first(repo_files: list) -> None:
    every = ids(repo_files)
    st = status(every, every)
    plan = plan_rollback
    assert ids(plan(st, repo_files, None, None, LABEL)) == [every[-1]]  # default: one
    assert ids(plan(st, repo_files, None, 2, LABEL)) == every[::-1][:2]
    assert ids(plan(st, repo_files, None, 99, LABEL)) == every[::-1]
    assert ids(plan(st, repo_files, None, 0, LABEL)) == []
    assert ids(plan(st, repo_files, None, -3, LABEL)) == []
    # nothing applied: nothing to roll back
    assert ids(plan(status([], every), repo_files, None, None, LABEL)) == []


def test_rollback_of_a_migration_that_is_not_applied_is_refused(repo_files: list) -> None:
    every = ids(repo_files)
    st = status(every[:1], every)
    with pytest.raises(MigrationError) as info:
        plan_rollback(st, repo_files, [every[2]], None, LABEL)
    assert str(info.value) == f"not applied on {LABEL}, cannot roll back: {every[2]}"
    assert info.value.exit_code == 1


def test_rollback_refuses_to_leave_a_dependent_applied(branched: list) -> None:
    st = status(["0001_plan_a", "0002_plan_b", "0003_plan_c"], ids(branched))
    with pytest.raises(MigrationError) as info:
        plan_rollback(st, branched, ["0001_plan_a"], None, LABEL)
    assert "cannot roll back 0001_plan_a on dev database x" in str(info.value)
    assert "depends on it and stays applied" in str(info.value)
    # b alone may go: c depends on a, not on b
    plan = plan_rollback(st, branched, ["0002_plan_b"], None, LABEL)
    assert ids(plan) == ["0002_plan_b"]
    # a with everything that depends on it: newest first, whatever order they were named in
    plan = plan_rollback(st, branched, ["0001_plan_a", "0002_plan_b", "0003_plan_c"], None, LABEL)
    assert ids(plan) == ["0003_plan_c", "0002_plan_b", "0001_plan_a"]


def test_every_repository_migration_has_a_rollback_that_does_something(
    repo_files: list,
) -> None:
    for m in repo_files:
        statements = migrations.rollback_statements(m)
        assert statements and all(s.strip() for s in statements), m.id


def test_checksum_ignores_line_endings_only(tmp_path: Path) -> None:
    lf, crlf, edited = tmp_path / "lf.sql", tmp_path / "crlf.sql", tmp_path / "edited.sql"
    lf.write_bytes(b"SELECT 1;\nSELECT 2;\n")
    crlf.write_bytes(b"SELECT 1;\r\nSELECT 2;\r\n")
    edited.write_bytes(b"SELECT 1;\nSELECT 3;\n")
    assert migrations.file_checksum(lf) == migrations.file_checksum(crlf)
    assert migrations.file_checksum(lf) != migrations.file_checksum(edited)
    assert migrations.file_checksum(lf).startswith("sha256:")
