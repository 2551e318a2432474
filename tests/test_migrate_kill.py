"""A migration run killed at any point leaves no lock that blocks (or misleads) the next run.

yoyo's lock is a row that a killed process leaves behind. dbtools writes that row only
while it holds its session advisory lock and marks it as its own, so the next run (which
then holds the advisory lock) knows the writer is dead and clears the row. Each test runs a
real `python -m dbtools ...` process, holds it at a named pause point (before a migration's
transaction, or inside it before COMMIT), kills it with SIGKILL or SIGTERM, and runs again.
SIGKILL leaves yoyo's row behind (nothing can run on a kill) and the next run clears it;
SIGTERM is handled: the run rolls back, releases its row and exits 143.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from dbtools import faults, migrations

from support.db import applied_migrations, execute
from support.pipeline import OLD, migrate, seed_dev, seed_stale_prod
from support.project import REPO, Project

ALL = migrations.migration_ids(REPO / "migrations")

DEADLINE = 120.0  # bounds a hang only; never asserted as a duration


def _start(project: Project, args: list[str], pause: str) -> subprocess.Popen[str]:
    env = {**os.environ, **project.env, faults.ENV: f"{pause}=600"}
    return subprocess.Popen(
        [sys.executable, "-m", "dbtools", *args],
        cwd=project.root,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_marker(proc: subprocess.Popen[str], point: str) -> None:
    assert proc.stderr is not None
    end = time.monotonic() + DEADLINE
    seen = []
    while time.monotonic() < end:
        line = proc.stderr.readline()
        if not line:
            out = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"ended before {point} ({proc.wait()}): {out} {''.join(seen)}")
        seen.append(line)
        if line.strip() == f"{faults.MARKER}{point}":
            return
    raise AssertionError(f"timed out waiting for {point}")


def _kill(proc: subprocess.Popen[str], sig: signal.Signals) -> None:
    proc.send_signal(sig)
    proc.communicate(timeout=DEADLINE)
    assert proc.returncode != 0


def _lock_rows(url: str) -> list[tuple]:
    return execute(url, "SELECT pid FROM yoyo_lock")


def _run(project: Project, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dbtools", *args],
        cwd=project.root,
        env={**os.environ, **project.env},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("point", ["migrate.before", "migrate.before_commit"])
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["KILL", "TERM"])
def test_killed_migrate_apply_on_dev_leaves_no_blocking_lock(
    project: Project, point: str, sig: signal.Signals
) -> None:
    proc = _start(project, ["migrate", "apply", "--target", "dev"], point)
    _wait_for_marker(proc, point)
    assert len(_lock_rows(project.dev_url)) == 1  # the killed run's row is really there
    _kill(proc, sig)
    if sig == signal.SIGKILL:
        assert len(_lock_rows(project.dev_url)) == 1  # ... and stays behind
    else:
        assert proc.returncode == 143
        assert _lock_rows(project.dev_url) == []  # a handled signal releases it
    # the first migration either never started or was rolled back with its connection
    assert applied_migrations(project.dev_url) == []

    again = _run(project, "migrate", "apply", "--target", "dev")
    assert again.returncode == 0, again.stderr
    assert applied_migrations(project.dev_url) == ALL
    assert _lock_rows(project.dev_url) == []


@pytest.mark.slow
@pytest.mark.parametrize(
    "point,sig",
    [("migrate.before_commit", signal.SIGKILL), ("migrate.before", signal.SIGTERM)],
    ids=["before_commit-KILL", "before-TERM"],
)
def test_killed_sync_schema_does_not_block_the_next_run(
    project: Project, point: str, sig: signal.Signals
) -> None:
    migrate(project.dev_url)
    migrate(project.prod_url, OLD)
    seed_dev(project.dev_url)
    seed_stale_prod(project.prod_url)
    before = applied_migrations(project.prod_url)

    proc = _start(project, ["sync-schema", "--yes"], point)
    _wait_for_marker(proc, point)
    _kill(proc, sig)
    assert applied_migrations(project.prod_url) == before
    assert len(_lock_rows(project.prod_url)) == (1 if sig == signal.SIGKILL else 0)

    again = _run(project, "full-sync", "--yes")
    assert "another sync is running" not in again.stdout + again.stderr
    assert "lock" not in again.stderr, again.stderr
    assert again.returncode == 0, again.stdout + again.stderr
    assert applied_migrations(project.prod_url) == ALL
    assert _lock_rows(project.prod_url) == []


def test_a_lock_of_a_live_yoyo_is_never_cleared(project: Project) -> None:
    """A positive pid is a plain yoyo's: maybe running; dbtools names unlock, clears nothing."""
    migrate(project.dev_url, OLD)
    execute(project.dev_url, "INSERT INTO yoyo_lock (locked, ctime, pid) VALUES (1, now(), 7)")
    result = _run(project, "migrate", "apply", "--target", "dev")
    assert result.returncode == 3
    assert "not a dbtools run" in result.stderr
    assert "dbtools migrate unlock --target dev --yes" in result.stderr
    assert _lock_rows(project.dev_url) == [(7,)]


def test_a_sync_refuses_while_a_plain_yoyo_holds_the_lock(project: Project) -> None:
    """The pipelines migrate on their own connection, not through yoyo's row: a row of a
    `yoyo` that may be migrating prod right now stops them, with nothing changed."""
    migrate(project.dev_url)
    migrate(project.prod_url, OLD)
    seed_dev(project.dev_url)
    seed_stale_prod(project.prod_url)
    before = applied_migrations(project.prod_url)
    execute(project.prod_url, "INSERT INTO yoyo_lock (locked, ctime, pid) VALUES (1, now(), 7)")
    result = _run(project, "full-sync", "--yes")
    assert result.returncode == 3, result.stdout + result.stderr
    assert "which is not a dbtools run" in result.stderr
    (next_line,) = [ln for ln in result.stdout.splitlines() if ln.startswith("next: ")]
    assert "if no `yoyo` is running" in next_line  # the error's own hint
    assert "dbtools migrate unlock --target prod --yes" in next_line
    assert applied_migrations(project.prod_url) == before
    assert _lock_rows(project.prod_url) == [(7,)]
    assert not (project.snapshot_dir / "prod").exists() or not any(
        (project.snapshot_dir / "prod").iterdir()
    )  # refused before the backup
