"""A pipeline killed at any of its pause points leaves prod exactly as it was.

Each case runs a real CLI process (`python -m dbtools <command> --yes`) with
DBTOOLS_TEST_PAUSE=<point>=600, waits for its `dbtools-test: paused at <point>` marker, and
signals it. Then: prod's per-table md5, schema and applied migrations are what they were,
prod's history gained no row (so the rollback target did not move), no advisory or table
lock is left on prod, and the next run of the same command proceeds.

For SIGTERM and SIGINT only prod's state is asserted, not the exit code (clean 143/130 exits
are another change's business).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psycopg2
import pytest

from dbtools import faults, history

from support.pipeline import OLD, migrate, seed_dev, seed_stale_prod, state, synced_state
from support.project import REPO, Project

DEADLINE = 120.0  # bounds a hang only; never asserted as a duration

CASES = [
    ("full-sync", "guard.locked", signal.SIGKILL),
    ("full-sync", "backup.done", signal.SIGKILL),
    ("full-sync", "load.locked", signal.SIGKILL),
    ("full-sync", "load.before_commit", signal.SIGKILL),
    ("rollback", "rollback.undone", signal.SIGKILL),
    ("sync-data", "guard.locked", signal.SIGTERM),
    ("full-sync", "load.before_commit", signal.SIGINT),
    ("rollback", "rollback.undone", signal.SIGTERM),
]


def _history(url: str) -> list[int]:
    conn = psycopg2.connect(url)
    try:
        return [e.id for e in history.entries(conn)]
    finally:
        conn.close()


def _prod_sessions_and_locks(url: str) -> tuple[int, int, int]:
    """Other dbtools sessions on prod, advisory locks on prod, relation locks of others."""
    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND application_name LIKE 'dbtools%%' AND pid <> pg_backend_pid()"
            )
            sessions = cur.fetchone()[0]  # type: ignore[index]
            cur.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database = "
                "(SELECT oid FROM pg_database WHERE datname = current_database())"
            )
            advisory = cur.fetchone()[0]  # type: ignore[index]
            cur.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'relation' AND pid <> "
                "pg_backend_pid() AND database = "
                "(SELECT oid FROM pg_database WHERE datname = current_database())"
            )
            relation = cur.fetchone()[0]  # type: ignore[index]
            return int(sessions), int(advisory), int(relation)
    finally:
        conn.close()


def _wait_for_marker(proc: subprocess.Popen[bytes], point: str) -> None:
    assert proc.stderr is not None
    seen = []
    while True:
        line = proc.stderr.readline()
        if not line:
            proc.wait()
            raise AssertionError(
                f"the run ended ({proc.returncode}) before pausing at {point}: {b''.join(seen)!r}"
            )
        seen.append(line)
        if line.decode(errors="replace").strip() == f"{faults.MARKER}{point}":
            return


@pytest.mark.slow
@pytest.mark.parametrize(("command", "point", "sig"), CASES)
def test_signal_at_a_pause_point_leaves_prod_unchanged(
    project: Project, command: str, point: str, sig: signal.Signals
) -> None:
    migrate(project.dev_url)
    migrate(project.prod_url, OLD)
    seed_dev(project.dev_url)
    seed_stale_prod(project.prod_url)
    if command == "sync-data":
        migrate(project.prod_url)  # sync-data needs equal schemas
    if command == "rollback":
        done = project.invoke("full-sync", "--yes")
        assert done.exit_code == 0, done.output
    before, hist = state(project.prod_url), _history(project.prod_url)

    env = {**os.environ, **{k: v for k, v in project.env.items() if v}}
    env.pop("DBTOOLS_DEV_DATABASE", None)
    env.pop("DBTOOLS_PROD_DATABASE", None)
    env["DBTOOLS_TEST_PAUSE"] = f"{point}=600"
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.Popen(
        [sys.executable, "-m", "dbtools", command, "--yes"],
        cwd=project.root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_for_marker(proc, point)
        os.kill(proc.pid, sig)
        proc.communicate(timeout=DEADLINE)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    end = time.monotonic() + DEADLINE
    while _prod_sessions_and_locks(project.prod_url) != (0, 0, 0):
        assert time.monotonic() < end, _prod_sessions_and_locks(project.prod_url)
        time.sleep(0.1)
    assert state(project.prod_url) == before
    assert _history(project.prod_url) == hist  # the rollback target did not move

    again = project.invoke(command, "--yes")
    assert again.exit_code == 0, again.output
    if command == "rollback":
        assert state(project.prod_url)["migrations"][-1] == OLD
    else:
        assert state(project.prod_url) != before
        # the other allowed state: fully synced, dev's schema and rows, prod's logins kept
        assert state(project.prod_url) == synced_state(project.dev_url, before)
