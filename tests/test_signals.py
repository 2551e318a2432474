"""SIGINT and SIGTERM at the fault-injection points of `snapshot create` and `sync-data`.

Real CLI processes (`python -m dbtools ...`) are paused at a named point
(DBTOOLS_TEST_PAUSE), signalled there or a random moment later, and must: exit with exactly
130 (SIGINT) / 143 (SIGTERM) instead of hanging, print one `interrupted (SIG...)` line
saying what was changed, leave no backend and no lock (relation or advisory) on the test
databases, leave nothing under a stamp that is not a complete snapshot, and leave prod's
data as it was.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time

import pytest

from dbtools.snapshot import format as fmt

from support.db import SERVER_URL, execute
from support.pipeline import migrate, seed_dev, seed_stale_prod, state
from support.processes import (
    HANG,
    assert_archive_clean,
    assert_clean_server,
    start_cli,
    wait_marker,
)
from support.project import Project

CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


def _signal_and_check(
    proc: subprocess.Popen[bytes], sig: int, delay: float, project: Project
) -> tuple[int, str]:
    time.sleep(delay)
    finished_first = proc.poll() is not None
    if not finished_first:
        proc.send_signal(sig)
    try:
        out, err = proc.communicate(timeout=HANG)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"hung after {signal.Signals(sig).name}: {err!r}") from None
    text = err.decode(errors="replace")
    assert "Traceback" not in text and "Fatal Python error" not in text, text
    if proc.returncode == 0 and "error: " not in text:
        # The process had finished its work and called exit before the signal reached it (a
        # process already in the kernel's exit cannot act on a signal; poll() still says
        # running then). Its stderr holds only progress lines and "done in N s"; its result
        # must be complete: the archive check below proves it.
        finished_first = True
    if finished_first:
        assert_archive_clean(project.snapshot_dir)
        return proc.returncode, text
    assert proc.returncode == CODES[sig], (proc.returncode, text, out)
    lines = [ln for ln in text.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, text
    assert lines[0].startswith(f"error: interrupted ({signal.Signals(sig).name})"), text
    assert_clean_server(project)
    assert_archive_clean(project.snapshot_dir)
    return proc.returncode, text


@pytest.fixture
def seeded(project: Project) -> Project:
    migrate(project.dev_url)
    migrate(project.prod_url)
    seed_dev(project.dev_url, builders=40)
    seed_stale_prod(project.prod_url)
    return project


RUNS = int(os.environ.get("DBTOOLS_SIGNAL_RUNS", "10"))


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("point", ["snapshot.export", "snapshot.publish"])
def test_snapshot_create_interrupted_at_each_point(seeded: Project, point: str, sig: int) -> None:
    rng = random.Random(f"{point}{sig}")
    dev_before = state(seeded.dev_url)
    for run in range(RUNS):
        # Half the runs are signalled inside the pause, half a random moment after it ended.
        seconds = 600 if run % 2 == 0 else rng.uniform(0.0, 0.3)
        # new row versions, same content: an earlier run's snapshot cannot be reused for
        # User (snapshot.dedup), so every run exports and reaches the pause
        execute(seeded.dev_url, 'UPDATE "User" SET name = name')
        proc = start_cli(seeded, ["snapshot", "create", "--target", "dev"], f"{point}={seconds}")
        wait_marker(proc, point)
        code, text = _signal_and_check(proc, sig, rng.uniform(0.0, 0.4), seeded)
        if code == 0:  # finished before the signal: then it is a complete snapshot
            continue
        # what the line says is true: nothing written, or the snapshot written (then it is
        # complete and verified: _signal_and_check looked at the archive)
        assert any(
            said in text
            for said in (
                "no snapshot of dev was written",
                "the snapshot was written",
                "as the command finished",
            )
        ), text
        if "no snapshot of dev was written" in text:
            dev_dir = seeded.snapshot_dir / "dev"
            stamps = [c for c in dev_dir.iterdir() if not c.name.startswith(fmt.TMP_PREFIX)]
            # this run's own build (its name carries the pid); an earlier run's is not its
            leftovers = [c for c in dev_dir.iterdir() if fmt.temp_dir_pid(c.name) == proc.pid]
            assert stamps == [] or all(fmt.verify_dir(c)[1] == [] for c in stamps)
            # The partial build is removed: the main thread runs its cleanup even when the
            # kernel gave the signal to a worker thread. Only a cleanup that outlived the
            # grace period (the line then says "forced exit") leaves a `.tmp-` leftover,
            # which `snapshot prune` removes: never anything under a stamp.
            assert leftovers == [] or "forced exit" in text, (leftovers, text)
    assert state(seeded.dev_url) == dev_before


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("point", ["snapshot.export", "snapshot.publish", "load.before_commit"])
def test_sync_data_interrupted_leaves_prod_unchanged(seeded: Project, point: str, sig: int) -> None:
    rng = random.Random(f"sync{point}{sig}")
    prod_before = state(seeded.prod_url)
    for _run in range(max(2, RUNS // 3)):
        proc = start_cli(seeded, ["sync-data", "--yes"], f"{point}=600")
        wait_marker(proc, point)
        code, _text = _signal_and_check(proc, sig, rng.uniform(0.0, 0.3), seeded)
        assert code == CODES[sig]
        assert state(seeded.prod_url) == prod_before


def _copy_running(dbname: str, direction: str) -> bool:
    rows = execute(
        SERVER_URL,
        "SELECT 1 FROM pg_stat_activity WHERE datname = %s AND state = 'active' AND query ILIKE %s",
        (dbname, f"COPY %{direction}%"),
    )
    return bool(rows)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_during_a_running_copy(seeded: Project, sig: int) -> None:
    """#9.13: a signal while a COPY streams (export on dev, load on prod) is the interrupted
    line and 130/143, never 'COPY from stdin failed'."""
    for url in (seeded.dev_url, seeded.prod_url):
        execute(url, "CREATE TABLE bulk (id int PRIMARY KEY, body text)")
    execute(
        seeded.dev_url,
        "INSERT INTO bulk SELECT g, repeat(md5(g::text), 20) FROM generate_series(1, 400000) g",
    )
    prod_before = state(seeded.prod_url)
    for dbname, direction in ((seeded.dev_name, "TO STDOUT"), (seeded.prod_name, "FROM STDIN")):
        proc = start_cli(seeded, ["sync-data", "--yes"], None)
        end = time.monotonic() + HANG
        while not _copy_running(dbname, direction):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < end, "no COPY seen"
            time.sleep(0.02)
        _code, text = _signal_and_check(proc, sig, 0.0, seeded)
        assert "COPY" not in text, text
        assert state(seeded.prod_url) == prod_before


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_while_the_program_starts_is_one_line_and_its_exit_code(
    project: Project, sig: int
) -> None:
    """Importing the CLI takes about half a second; a signal then (before the run's own
    handling) once ended in a KeyboardInterrupt traceback (SIGINT) or silently (SIGTERM)."""
    name = signal.Signals(sig).name
    for delay in (0.05, 0.1, 0.15, 0.2, 0.3, 0.45):
        proc = start_cli(project, ["verify"], None)
        time.sleep(delay)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=HANG)
        text = err.decode(errors="replace")
        assert "Traceback" not in text, (delay, text)
        if delay <= 0.05 and proc.returncode == -sig and not text:
            continue  # maybe still inside the interpreter's own start, before any code ran
        if proc.returncode == 0 and "error: " not in text:
            continue  # verify finished before the signal
        errors = [line for line in text.splitlines() if line.startswith("error: ")]
        assert proc.returncode == CODES[sig], (delay, proc.returncode, text, out)
        assert len(errors) == 1 and errors[0].startswith(f"error: interrupted ({name})"), (
            delay,
            text,
        )
