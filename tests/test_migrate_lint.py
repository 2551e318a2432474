"""`dbtools migrate lint`: a migration that would lose data or lock prod is named with file,
line, rule and advice before it is applied; acknowledged only in its own file, with a reason.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from dbtools.cli import main

from support.pipeline import migrate
from support.project import REPO, Project

RENAME_BY_DROP = (
    "-- depends: 0003_rename_user_image\n"
    'ALTER TABLE "User" DROP COLUMN "tagline";\n'
    'ALTER TABLE "User" ADD COLUMN "headline" TEXT;\n'
)


def _lint(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["migrate", "lint", *args], env=env or {})
    return result.exit_code, result.output


@pytest.mark.pure
def test_a_rename_done_as_drop_and_add_is_named_with_file_line_and_advice(
    tmp_path: Path,
) -> None:
    mig = tmp_path / "0004_rename_tagline.sql"
    mig.write_text(RENAME_BY_DROP)
    (tmp_path / "0004_rename_tagline.rollback.sql").write_text(
        'ALTER TABLE "User" DROP COLUMN "headline";\n'
        'ALTER TABLE "User" ADD COLUMN "tagline" TEXT;\n'
    )

    code, out = _lint(str(mig), "--json")

    assert code == 1, out
    findings = {f["rule"]: f for f in json.loads(out)["findings"]}
    rename = findings["probable-rename"]
    assert (rename["file"], rename["line"], rename["column"]) == (str(mig), 2, 1)
    assert 'RENAME COLUMN "tagline"' in rename["advice"]
    drop = findings["ban-drop-column"]  # squawk's rule, on the same statement
    assert (drop["line"], drop["column"]) == (2, 20)
    assert "missing-rollback" not in findings


@pytest.mark.pure
def test_missing_and_empty_rollback_files_are_findings(tmp_path: Path) -> None:
    bare = tmp_path / "0004_a.sql"
    bare.write_text('-- depends: 0003_rename_user_image\nCREATE TABLE "Review" (id text);\n')
    empty = tmp_path / "0005_b.sql"
    empty.write_text('-- depends: 0004_a\nCREATE TABLE "Rating" (id text);\n')
    (tmp_path / "0005_b.rollback.sql").write_text("-- to do\n")

    code, out = _lint(str(bare), str(empty), "--json")

    assert code == 1, out
    got = {(Path(f["file"]).name, f["rule"]) for f in json.loads(out)["findings"]}
    assert ("0004_a.sql", "missing-rollback") in got
    assert ("0005_b.rollback.sql", "empty-rollback") in got


@pytest.mark.pure
def test_an_acknowledgement_needs_a_reason_and_covers_its_own_file_only(tmp_path: Path) -> None:
    mig = tmp_path / "0004_rename_tagline.sql"
    mig.write_text(
        RENAME_BY_DROP
        + "-- dbtools: allow probable-rename: tagline moved to Profile.tagline in 0003\n"
        + "-- dbtools: allow ban-drop-column:\n"  # no reason: does not count
    )
    (tmp_path / "0004_rename_tagline.rollback.sql").write_text("SELECT 1;\n")

    code, out = _lint(str(mig), "--json")

    assert code == 1, out
    findings = {f["rule"]: f for f in json.loads(out)["findings"]}
    assert findings["probable-rename"]["acknowledged"].startswith("tagline moved")
    assert findings["ban-drop-column"]["acknowledged"] == ""


@pytest.mark.pure
def test_in_github_actions_findings_are_annotations(tmp_path: Path) -> None:
    mig = tmp_path / "0004_rename_tagline.sql"
    mig.write_text(RENAME_BY_DROP)
    (tmp_path / "0004_rename_tagline.rollback.sql").write_text("SELECT 1;\n")

    code, out = _lint(str(mig), env={"GITHUB_ACTIONS": "true"})

    assert code == 1
    assert f"::warning file={mig},line=2,col=1,title=probable-rename::drops" in out


@pytest.mark.pure
def test_a_missing_file_is_one_line_exit_2(tmp_path: Path) -> None:
    code, out = _lint(str(tmp_path / "0009_nope.sql"))
    assert code == 2
    assert out.strip().splitlines() == [
        f"error: no such migration file: {tmp_path / '0009_nope.sql'}"
    ]


def test_without_files_it_lints_what_prod_has_not_applied(project: Project) -> None:
    own = project.root / "migrations"
    shutil.copytree(REPO / "migrations", own)
    cfg = project.root / "setup.cfg"
    cfg.write_text(
        cfg.read_text().replace(
            f"migrations_dir = {REPO / 'migrations'}", f"migrations_dir = {own}"
        )
    )
    migrate(project.prod_url)  # prod has everything: nothing to lint
    result = project.invoke("migrate", "lint", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["files"] == []

    (own / "0004_rename_tagline.sql").write_text(RENAME_BY_DROP)
    result = project.invoke("migrate", "lint", "--json")
    assert result.exit_code == 1, result.output
    data = json.loads(result.output)
    assert data["files"] == [str(own / "0004_rename_tagline.sql")]
    assert {f["rule"] for f in data["findings"]} >= {"probable-rename", "missing-rollback"}


@pytest.mark.pure
def test_a_comment_after_the_last_statement_is_named(tmp_path: Path) -> None:
    mig = tmp_path / "0004_a.sql"
    mig.write_text(
        '-- depends: 0003_rename_user_image\nCREATE TABLE "Review" (id text);\n-- the end\n'
    )
    (tmp_path / "0004_a.rollback.sql").write_text('DROP TABLE "Review";\n')

    code, out = _lint(str(mig), "--json")

    assert code == 1, out
    rules = [f["rule"] for f in json.loads(out)["findings"]]
    assert "comment-only-statement" in rules
