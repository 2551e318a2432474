"""`dbtools rollback --dry-run`, and decisions taken after the plan: the confirmation of
sync-data, full-sync and rollback comes after what will happen is printed, names the backup,
and a "no" exits 4 (not confirmed), never 3 (a safety rule refused).

The prompts are answered through a real pseudo-terminal on stdin (a `python -m dbtools`
process), so the command sees a terminal exactly as an operator's would give it.
"""

from __future__ import annotations

import json
import os
import pty
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dbtools.errors import EXIT_DECLINED, EXIT_SAFETY
from dbtools.snapshot import format as fmt

from support.db import digests, execute
from support.pipeline import HEAD, OLD, migrate, prod_backups, seed_dev, seed_stale_prod, state
from support.processes import HANG, assert_archive_clean, cli_env
from support.project import Project


def _behind(project: Project) -> None:
    """dev at head and seeded; prod one migration behind, with its own stale rows."""
    migrate(project.dev_url)
    migrate(project.prod_url, OLD)
    seed_dev(project.dev_url)
    seed_stale_prod(project.prod_url)


@pytest.fixture
def synced(project: Project) -> Project:
    """dev and prod both at head; dev seeded, prod stale."""
    migrate(project.dev_url)
    migrate(project.prod_url)
    seed_dev(project.dev_url)
    seed_stale_prod(project.prod_url)
    return project


@pytest.fixture
def after_full_sync(project: Project) -> Project:
    """A committed full-sync (history #1) that migrated prod and replaced its data."""
    _behind(project)
    result = project.invoke("full-sync", "--yes")
    assert result.exit_code == 0, result.output
    return project


def _history(url: str) -> list[tuple]:
    return execute(url, "SELECT id, operation, undoes FROM _dbtools.history ORDER BY id")


def _archive(project: Project) -> list[Path]:
    """Everything under the archive, leftovers included."""
    return sorted(project.snapshot_dir.rglob("*"))


def _answer(project: Project, args: list[str], answer: str) -> tuple[int, str]:
    """Run dbtools with a terminal on stdin, answer its question; (exit code, stdout+stderr
    in the order they were written)."""
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dbtools", *args],
            cwd=project.root,
            env=cli_env(project, None),
            stdin=slave,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        os.close(slave)
        slave = -1
        # The terminal keeps the line until the question reads it.
        os.write(master, answer.encode() + b"\n")
        out, _ = proc.communicate(timeout=HANG * 2)
        return proc.returncode, out.decode()
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)


# --- rollback --dry-run ------------------------------------------------------------------


def test_rollback_dry_run_names_the_backup_and_leaves_prod_as_it_was(
    after_full_sync: Project,
) -> None:
    project = after_full_sync
    (backup,) = prod_backups(project)
    execute(project.prod_url, "UPDATE \"User\" SET name = 'Edited' WHERE id = 'liam'")
    before, history, archive = (
        digests(project.prod_url),
        _history(project.prod_url),
        _archive(project),
    )
    prod_state = state(project.prod_url)

    result = project.invoke("rollback", "--dry-run")
    assert result.exit_code == 0, result.output
    out = result.output
    assert f"backup to restore: {backup}" in out
    assert "it undoes: history #1, full-sync" in out
    assert f"migrations to undo first: {HEAD}" in out
    assert "dry run: nothing written" in out
    assert "public.User" in out and "insert" in out

    # nothing written to prod, its history untouched, the archive as it was
    assert digests(project.prod_url) == before
    assert _history(project.prod_url) == history
    assert state(project.prod_url) == prod_state
    assert _archive(project) == archive
    assert_archive_clean(project.snapshot_dir)


def test_rollback_dry_run_json_counts_row_by_row(after_full_sync: Project) -> None:
    project = after_full_sync
    (backup,) = prod_backups(project)
    before = digests(project.prod_url)
    users_now = execute(project.prod_url, 'SELECT count(*) FROM "User"')[0][0]

    result = project.invoke("rollback", "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["ok"] is True and data["dry_run"] is True
    plan = data["plan"]
    assert plan["backup"] == str(backup) and plan["backup_stamp"] == backup.name
    assert plan["backup_created_at"] == fmt.read_manifest(backup).created_at
    assert plan["undoes"]["history_id"] == 1 and plan["undoes"]["operation"] == "full-sync"
    assert plan["migrations_to_undo"] == [HEAD]
    assert plan["rows_compared"] is True
    users = next(t for t in plan["tables"] if t["table"] == "public.User")
    # the backup holds the stale prod's one user; prod now holds dev's users
    assert users["backup_rows"] == 1 and users["prod_rows"] == users_now > 1
    assert users["deleted"] == users_now - 1 and users["updated"] == 1
    assert users["inserted"] == 0
    assert digests(project.prod_url) == before


def test_rollback_dry_run_refuses_as_the_rollback_does(project: Project) -> None:
    """Nothing to roll back, then a missing backup: the same message and exit code."""
    _behind(project)
    for args in (["rollback", "--yes"], ["rollback", "--dry-run"]):
        result = project.invoke(*args)
        assert result.exit_code == EXIT_SAFETY, result.output
        assert "records no committed sync-data, full-sync or restore" in result.output

    assert project.invoke("full-sync", "--yes").exit_code == 0
    (backup,) = prod_backups(project)
    shutil.rmtree(backup)
    before = digests(project.prod_url)
    real = project.invoke("rollback", "--yes")
    dry = project.invoke("rollback", "--dry-run")
    assert real.exit_code == dry.exit_code == EXIT_SAFETY
    assert "it is missing" in dry.output
    assert real.output == dry.output
    assert digests(project.prod_url) == before


# --- the question comes after the plan, names the backup; "no" exits 4 -------------------


def test_rollback_asks_after_the_plan_naming_the_backup_and_no_changes_nothing(
    after_full_sync: Project,
) -> None:
    project = after_full_sync
    (backup,) = prod_backups(project)
    before, history = digests(project.prod_url), _history(project.prod_url)

    code, out = _answer(project, ["rollback"], "n")
    assert code == EXIT_DECLINED, out
    question = (
        f"undo migrations {HEAD} and restore prod {project.prod_name} from backup "
        f"prod/{backup.name} (before full-sync, history #1)? [y/N]"
    )
    assert question in out
    assert out.index(f"backup to restore: {backup}") < out.index(question)
    assert out.index("public.User") < out.index(question)
    assert "cancelled: nothing was changed" in out
    assert digests(project.prod_url) == before
    assert _history(project.prod_url) == history
    assert prod_backups(project) == [backup]  # not even a backup


def test_rollback_yes_at_the_prompt_restores_what_was_shown(project: Project) -> None:
    _behind(project)
    original = state(project.prod_url)
    assert project.invoke("full-sync", "--yes").exit_code == 0
    code, out = _answer(project, ["rollback"], "y")
    assert code == 0, out
    assert state(project.prod_url) == original
    assert [row[1:] for row in _history(project.prod_url)] == [
        ("full-sync", None),
        ("rollback", 1),
    ]


@pytest.mark.parametrize("command", ["sync-data", "full-sync"])
def test_sync_asks_after_the_preview_and_no_exits_4(synced: Project, command: str) -> None:
    before = state(synced.prod_url)
    code, out = _answer(synced, [command], "n")
    assert code == EXIT_DECLINED, out
    question = (
        f"replace the data of prod {synced.prod_name} with dev's "
        "(after a verified backup into prod/)? [y/N]"
    )
    assert question in out
    plan = f"plan: dev {synced.dev_name} -> prod {synced.prod_name} (nothing written yet)"
    assert out.index(plan) < out.index(question)
    assert "cancelled: nothing was changed" in out
    assert state(synced.prod_url) == before
    assert prod_backups(synced) == []


def test_full_sync_question_names_the_migrations(project: Project) -> None:
    _behind(project)
    before = state(project.prod_url)
    code, out = _answer(project, ["full-sync"], "no")
    assert code == EXIT_DECLINED, out
    assert f"apply {HEAD} to prod {project.prod_name} and replace its data with dev's" in out
    assert state(project.prod_url) == before


def test_a_preview_the_run_would_refuse_is_refused_before_the_question(
    project: Project,
) -> None:
    """sync-data with prod a migration behind: the preview shows why, and no question."""
    _behind(project)
    before = state(project.prod_url)
    code, out = _answer(project, ["sync-data"], "y")
    assert code == EXIT_SAFETY, out
    assert "[y/N]" not in out and "nothing written yet" in out
    assert state(project.prod_url) == before
    assert prod_backups(project) == []


def test_no_terminal_and_no_yes_is_declined_not_refused(after_full_sync: Project) -> None:
    project = after_full_sync
    before = digests(project.prod_url)
    for args in (["rollback"], ["full-sync"], ["sync-data"]):
        result = project.invoke(*args)
        assert result.exit_code == EXIT_DECLINED, (args, result.output)
        assert "refusing without confirmation" in result.output and "--yes" in result.output
    result = project.invoke("rollback", "--json")
    assert result.exit_code == EXIT_DECLINED
    assert json.loads(result.output)["exit_code"] == EXIT_DECLINED
    assert digests(project.prod_url) == before


def test_exit_code_4_is_documented() -> None:
    from click.testing import CliRunner

    from dbtools.cli import main

    out = CliRunner().invoke(main, ["--help"]).output
    assert "4 not confirmed" in " ".join(out.split())


# --- how long prod's writes waited --------------------------------------------------------


def test_sync_data_and_full_sync_say_how_prod_was_locked(project: Project) -> None:
    _behind(project)
    result = project.invoke("full-sync", "--yes")
    assert result.exit_code == 0, result.output
    assert "loaded in full under the write lock" in result.output

    execute(project.dev_url, "UPDATE \"User\" SET name = 'Renamed' WHERE id = 'u1'")
    result = project.invoke("sync-data", "--yes")
    assert result.exit_code == 0, result.output
    # short, unless the run had to fall back to a full load (it then says why)
    short = r"prod's writes waited \d+\.\d\d s \(short lock: only the changes were written"
    full = r"loaded in full under the write lock \(\d+\.\d s\): \S"
    assert re.search(f"{short}|{full}", result.output), result.output


def test_restore_into_prod_shows_the_snapshot_then_asks_and_no_changes_nothing(
    after_full_sync: Project,
) -> None:
    project = after_full_sync
    (backup,) = prod_backups(project)
    before = digests(project.prod_url)

    code, out = _answer(project, ["restore", f"prod/{backup.name}", "--target", "prod"], "n")

    assert code == EXIT_DECLINED, out
    question = "replace every table of the prod database"
    shown = f"snapshot: prod/{backup.name} of {project.prod_name}"
    assert shown in out and "every table's rows are replaced" in out
    assert out.index(shown) < out.index(question)
    assert "cancelled: nothing was changed" in out
    assert digests(project.prod_url) == before
    assert prod_backups(project) == [backup]
