"""(b) SIGKILL during the load leaves prod exactly as before; (c) a real second run is refused.

The sync runs as a real process (`python -m dbtools sync-data --yes`). The test-only hook
DBTOOLS_TEST_PAUSE=load.before_commit=600 holds it inside the load transaction after every table was
cleared, loaded and checked, right before COMMIT: the worst moment to die. The test waits
until the server shows that backend idle in its transaction holding its write lock on
"User", then runs a second sync (refused) and kills the first with SIGKILL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import psycopg2

from support.db import SERVER_URL
from support.pipeline import migrate, prod_backups, seed_dev, seed_stale_prod, state, synced_state
from support.processes import assert_clean_server
from support.project import REPO, Project

DEADLINE = 120.0  # generous: only bounds a hang, never asserted as a duration


def _backend_mid_load(prod_url: str) -> int | None:
    """pid of a dbtools backend idle inside a transaction holding its write lock on User
    (EXCLUSIVE on the short path, ACCESS EXCLUSIVE when it loads in full).

    Asked on prod itself: pg_locks names relations by oid, which only prod's pg_class resolves.
    """
    conn = psycopg2.connect(prod_url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(
                """
                SELECT a.pid FROM pg_stat_activity a
                JOIN pg_locks l ON l.pid = a.pid AND l.locktype = 'relation'
                JOIN pg_class c ON c.oid = l.relation
                WHERE a.datname = current_database() AND a.state = 'idle in transaction'
                  AND a.application_name = 'dbtools-prod'
                  AND c.relname = 'User' AND l.granted
                  AND l.mode IN ('ExclusiveLock', 'AccessExclusiveLock')
                """
            )
            row = cur.fetchone()
            return int(row[0]) if row else None
    finally:
        conn.close()


def _backend_alive(pid: int) -> bool:
    conn = psycopg2.connect(SERVER_URL)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,))
            return cur.fetchone() is not None
    finally:
        conn.close()


def _wait_for(
    predicate: Callable[[], Any], what: str, proc: subprocess.Popen[bytes] | None = None
) -> Any:
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        got = predicate()
        if got:
            return got
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"the sync ended early ({proc.returncode}): {out!r} {err!r}")
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_sigkill_mid_load_leaves_prod_unchanged_and_second_run_is_refused(
    project: Project,
) -> None:
    migrate(project.dev_url)
    migrate(project.prod_url)
    seed_dev(project.dev_url)
    seed_stale_prod(project.prod_url)
    before = state(project.prod_url)
    dev_before = state(project.dev_url)

    env = {**os.environ, **{k: v for k, v in project.env.items() if v}}
    env.pop("DBTOOLS_DEV_DATABASE", None)
    env.pop("DBTOOLS_PROD_DATABASE", None)
    env["DBTOOLS_TEST_PAUSE"] = "load.before_commit=600"
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.Popen(
        [sys.executable, "-m", "dbtools", "sync-data", "--yes"],
        cwd=project.root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        pid = _wait_for(lambda: _backend_mid_load(project.prod_url), "the load to pause", proc)
        assert proc.poll() is None, proc.communicate()
        backups = prod_backups(project)
        assert len(backups) == 1  # the first run's verified backup, taken before the load

        # (c) a second sync while the first holds the lock: refused at once, nothing written
        second = project.invoke("sync-data", "--yes")
        assert second.exit_code == 3, second.output
        assert "another dbtools sync is running" in second.output
        assert prod_backups(project) == backups

        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL
        _wait_for(lambda: not _backend_alive(pid), "the killed run's backend to end")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    # prod is only ever in one of two states: as before, or fully synced from dev
    synced = synced_state(project.dev_url, before)
    assert synced != before
    after_kill = state(project.prod_url)
    assert after_kill in (before, synced)
    assert after_kill == before  # killed before COMMIT: nothing of the load is left
    assert state(project.dev_url) == dev_before
    # the lock died with the killed session: no backend, relation or advisory lock is left
    assert_clean_server(project)
    # ... so the next sync runs and completes
    again = project.invoke("sync-data", "--yes")
    assert again.exit_code == 0, again.output
    assert state(project.prod_url) != before
    assert state(project.prod_url) == synced  # all of dev's rows, prod's logins kept
    assert state(project.dev_url) == dev_before
    assert_clean_server(project)
