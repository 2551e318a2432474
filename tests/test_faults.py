"""Every named pause point (faults.POINTS) × SIGINT / SIGTERM / SIGKILL: nothing is lost.

For each point a real `python -m dbtools ...` process runs the write path that reaches it,
is held there (DBTOOLS_TEST_PAUSE) and signalled. Whatever the signal, the promises hold:

- the exit code says what happened: 130 (SIGINT), 143 (SIGTERM), killed (SIGKILL);
- a handled signal prints exactly one `error: interrupted (SIG...)` line, no traceback;
- prod and dev are exactly as before (per-table md5, schema fingerprint, migrations);
- no backend and no lock of the run is left on either database;
- every directory under a snapshot stamp is a complete, verified snapshot;
- the same command, run again without a pause, succeeds (no stale lock blocks it).

The scenario table must name every point: a new point without a scenario fails
`test_every_pause_point_has_a_scenario`, so no write path goes untested.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from dbtools import faults
from dbtools.snapshot import format as fmt

from support.pipeline import OLD, migrate, seed_dev, seed_stale_prod, state
from support.processes import (
    HANG,
    assert_archive_clean,
    assert_clean_server,
    cli_env,
    start_cli,
    wait_marker,
)
from support.project import Project

CODES = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGKILL: -signal.SIGKILL}


def _run(project: Project, args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dbtools", *args],
        cwd=project.root,
        env=cli_env(project, None),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _ok(project: Project, *args: str) -> None:
    done = _run(project, list(args))
    assert done.returncode == 0, done.stdout + done.stderr


def _seeded(project: Project) -> None:
    migrate(project.dev_url)
    migrate(project.prod_url)
    seed_dev(project.dev_url)
    seed_stale_prod(project.prod_url)


def _behind(project: Project) -> None:
    migrate(project.dev_url)
    migrate(project.prod_url, OLD)
    seed_dev(project.dev_url)
    seed_stale_prod(project.prod_url)


def _synced_then_rollback(project: Project) -> None:
    _behind(project)
    _ok(project, "full-sync", "--yes")


def _two_dev_snapshots_past_retention(project: Project) -> None:
    _seeded(project)
    cfg = project.root / "setup.cfg"
    cfg.write_text(cfg.read_text() + "retention_days = 0\nkeep_min = 0\n")
    _ok(project, "snapshot", "create", "--target", "dev")
    _ok(project, "snapshot", "create", "--target", "dev")


@dataclass(frozen=True)
class Scenario:
    setup: Callable[[Project], None]
    args: tuple[str, ...]


SYNC = Scenario(_seeded, ("sync-data", "--yes"))
SCENARIOS: dict[str, Scenario] = {
    "guard.locked": SYNC,
    "snapshot.export": SYNC,
    "snapshot.publish": SYNC,
    "backup.done": SYNC,
    "apply.staged": SYNC,
    "migrate.before": Scenario(_behind, ("migrate", "apply", "--target", "prod", "--yes")),
    "migrate.before_commit": Scenario(_behind, ("migrate", "apply", "--target", "prod", "--yes")),
    # sync-data writes only the changes (sync/delta.py); a restore-style full load takes the
    # table locks this point names.
    "load.locked": Scenario(_synced_then_rollback, ("rollback", "--yes")),
    "load.table": SYNC,
    "load.before_commit": Scenario(_behind, ("full-sync", "--yes")),
    "rollback.undone": Scenario(_synced_then_rollback, ("rollback", "--yes")),
    "prune.delete": Scenario(_two_dev_snapshots_past_retention, ("snapshot", "prune", "--yes")),
}


@pytest.mark.pure
def test_every_pause_point_has_a_scenario() -> None:
    assert sorted(SCENARIOS) == sorted(faults.POINTS)


def _stamps(project: Project) -> dict[str, list[str]]:
    root = project.snapshot_dir
    if not root.exists():
        return {}
    return {
        env.name: sorted(c.name for c in env.iterdir() if fmt.is_stamp(c.name))
        for env in root.iterdir()
    }


@pytest.mark.slow
@pytest.mark.parametrize(
    "sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=lambda s: s.name
)
@pytest.mark.parametrize("point", list(faults.POINTS))
def test_a_signal_at_any_point_loses_nothing(
    project: Project, point: str, sig: signal.Signals
) -> None:
    scenario = SCENARIOS[point]
    scenario.setup(project)
    prod_before, dev_before = state(project.prod_url), state(project.dev_url)
    stamps_before = _stamps(project)

    proc = start_cli(project, list(scenario.args), f"{point}=600")
    wait_marker(proc, point)
    proc.send_signal(sig)
    try:
        _out, err = proc.communicate(timeout=HANG)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError(f"hung after {sig.name} at {point}") from None
    text = err.decode(errors="replace")

    assert proc.returncode == CODES[sig], (proc.returncode, text)
    assert "Traceback" not in text and "Fatal Python error" not in text, text
    if sig != signal.SIGKILL:
        lines = [ln for ln in text.splitlines() if ln.startswith("error: ")]
        assert len(lines) == 1, text
        assert lines[0].startswith(f"error: interrupted ({sig.name})"), text
        if point.startswith(("load.", "guard.", "backup.")):
            # What the line says is true: the run's transaction was rolled back.
            assert "prod was not changed" in lines[0], lines[0]
    assert_clean_server(project)
    assert_archive_clean(project.snapshot_dir)
    assert state(project.prod_url) == prod_before
    assert state(project.dev_url) == dev_before
    if point == "prune.delete":
        # The snapshot being deleted is either whole (and verified above) or gone; the rest
        # of the archive is untouched.
        after = _stamps(project)
        assert set(after["dev"]) <= set(stamps_before["dev"])
        assert len(after["dev"]) >= len(stamps_before["dev"]) - 1

    again = _run(project, list(scenario.args))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "lock" not in again.stderr.lower(), again.stderr


def test_a_malformed_pause_setting_is_one_line_and_exit_2(project: Project) -> None:
    """A fault test that pauses nowhere must not pass by accident."""
    for bad in ("load.tabel=1", "load.table", "load.table=soon", "load.table=-1"):
        proc = start_cli(project, ["verify"], bad)
        _out, err = proc.communicate(timeout=HANG)
        text = err.decode()
        assert proc.returncode == 2, (bad, text)
        lines = [ln for ln in text.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: DBTOOLS_TEST_PAUSE"), (bad, text)
