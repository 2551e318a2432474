"""Progress you can see (#15.1): rich's live display on a terminal, plain lines in a CI log,
nothing with --quiet, a closing line with the time every command took, stdout untouched.

Real `python -m dbtools` processes with a pipe (CI) or a pseudo-terminal (a person) as stderr.
The interval between plain lines is set small (DBTOOLS_PROGRESS_INTERVAL) instead of waiting
10 s; nothing here measures time.
"""

from __future__ import annotations

import io
import json
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from dbtools import faults, progress
from dbtools.progress import Reporter, choose

from support.db import SERVER_URL, execute
from support.pipeline import migrate, seed_dev, seed_stale_prod
from support.processes import HANG, assert_clean_server, cli_env, on_terminal
from support.project import Project

ROWS = 300_000
FAST = {progress.ENV_INTERVAL: "0.05"}
DONE = re.compile(r"done in \d+\.\d s")
# a periodic line of a table with its expected total: rows done of the total, share, time
ROWS_LINE = re.compile(
    r"(exporting|staging|loading) public\.bulk: [\d,]+ / (about )?[\d,]+ rows, \d+%, \d+ s"
)


@pytest.fixture
def bulky(project: Project) -> Project:
    """dev and prod at head, seeded; a table of ROWS rows on dev that takes a moment to copy
    (analyzed: its export shows pg_class's estimate as the total)."""
    migrate(project.dev_url)
    migrate(project.prod_url)
    seed_dev(project.dev_url)
    seed_stale_prod(project.prod_url)
    for url in (project.dev_url, project.prod_url):
        execute(url, "CREATE TABLE bulk (id int PRIMARY KEY, body text)")
    execute(
        project.dev_url,
        "INSERT INTO bulk SELECT g, repeat(md5(g::text), 3) FROM generate_series(1, %s) g",
        (ROWS,),
    )
    execute(project.dev_url, "ANALYZE bulk")
    return project


def _run(
    project: Project, args: list[str], extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """dbtools in a process of its own, stderr a pipe (as in CI), no terminal anywhere."""
    return subprocess.run(
        [sys.executable, "-m", "dbtools", *args],
        cwd=project.root,
        env={**cli_env(project, None), **(extra or {})},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=HANG * 3,
    )


def _progress_connections(dbname: str) -> list[tuple]:
    return execute(
        SERVER_URL,
        "SELECT pid FROM pg_stat_activity WHERE datname = %s AND application_name = %s",
        (dbname, "dbtools-progress"),
    )


def _no_progress_connection_left(dbname: str) -> bool:
    """A closed connection's backend leaves pg_stat_activity a moment later: wait for it."""
    end = time.monotonic() + HANG
    while _progress_connections(dbname):
        if time.monotonic() > end:
            return False
        time.sleep(0.05)
    return True


# --- without a terminal: plain lines on stderr ---------------------------------------------


def test_sync_data_in_ci_says_each_table_and_its_rows_and_stdout_stays_json(
    bulky: Project,
) -> None:
    done = _run(bulky, ["sync-data", "--yes", "--json"], FAST)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)  # stdout is the one JSON object, nothing else
    assert data["ok"] is True
    assert isinstance(data["seconds"], float) and data["seconds"] > 0
    lines = done.stderr.splitlines()
    # one line per table, when it ends: the backup of prod, dev's snapshot, the staging
    exported = rf"exported public\.bulk: {ROWS:,} rows in \d+\.\d s"
    assert len([ln for ln in lines if re.fullmatch(exported, ln)]) == 1, done.stderr  # dev's
    assert len([ln for ln in lines if ln.startswith("exported public.bulk")]) == 2  # + prod's
    assert "exporting public.bulk" not in lines and "staging public.bulk" not in lines
    assert any(
        re.fullmatch(
            rf"staged public\.bulk: {ROWS:,} inserted, 0 updated, 0 deleted in \d+\.\d s", ln
        )
        for ln in lines
    ), done.stderr
    # lines in between, with rows done of the total, while a COPY runs
    assert any(ROWS_LINE.match(ln) for ln in lines), done.stderr
    assert not any(DONE.fullmatch(ln) for ln in lines)  # --json: the time is in the object
    assert _no_progress_connection_left(bulky.prod_name)


def test_restore_in_ci_says_each_load_and_ends_with_the_time(bulky: Project) -> None:
    made = _run(bulky, ["snapshot", "create", "--target", "dev", "--json"], FAST)
    assert made.returncode == 0, made.stderr
    path = json.loads(made.stdout)["path"]
    execute(bulky.dev_url, "DELETE FROM bulk WHERE id > 10")

    done = _run(bulky, ["restore", path, "--target", "dev", "--yes"], FAST)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert f"loading public.bulk: {ROWS:,} rows" not in lines  # no line when it starts
    assert any(
        re.fullmatch(rf"loaded public\.bulk: {ROWS:,} rows in \d+\.\d s", ln) for ln in lines
    )
    assert any(
        re.match(rf"loading public\.bulk: [\d,]+ / {ROWS:,} rows, \d+%, \d+ s", ln) for ln in lines
    ), done.stderr
    assert DONE.fullmatch(lines[-1]), done.stderr  # the command's last line: its time
    assert "loading" not in done.stdout and "done in" not in done.stdout  # stdout: the result
    assert execute(bulky.dev_url, "SELECT count(*) FROM bulk") == [(ROWS,)]


def test_quiet_prints_no_progress_only_how_long_it_took(bulky: Project) -> None:
    done = _run(bulky, ["snapshot", "create", "--target", "dev", "--quiet"], FAST)
    assert done.returncode == 0, done.stderr
    assert DONE.fullmatch(done.stderr.strip()), done.stderr
    assert "verified" in done.stdout

    quiet_json = _run(bulky, ["snapshot", "create", "--target", "dev", "-q", "--json"], FAST)
    assert quiet_json.returncode == 0, quiet_json.stderr
    assert quiet_json.stderr == ""
    assert json.loads(quiet_json.stdout)["seconds"] > 0


def test_long_work_without_tables_still_says_it_works_and_a_signal_is_the_last_word(
    bulky: Project,
) -> None:
    """Held at a pause where no table is copied, the run still prints a line every interval;
    SIGTERM then ends it with the interrupted line last, and nothing of progress is left."""
    env = {**cli_env(bulky, "load.before_commit=600"), **FAST}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dbtools", "sync-data", "--yes"],
        cwd=bulky.root,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    seen: list[str] = []
    end = time.monotonic() + HANG
    paused = f"{faults.MARKER}load.before_commit"
    # two "still working" lines after the pause: the second proves they keep coming
    while sum("still working" in ln for ln in seen[_index(seen, paused) :]) < 2:
        line = proc.stderr.readline()
        assert line, f"ended early ({proc.wait()}): {''.join(seen)}"
        seen.append(line.rstrip("\n"))
        assert time.monotonic() < end, seen
    proc.send_signal(signal.SIGTERM)
    _out, rest = proc.communicate(timeout=HANG)
    assert proc.returncode == 143, rest
    tail = [ln for ln in rest.splitlines() if ln.strip()]
    assert tail and tail[-1].startswith("error: interrupted (SIGTERM)"), rest
    assert_clean_server(bulky)  # no backend left, the progress connection included


def _index(lines: list[str], marker: str) -> int:
    hits = [i for i, ln in enumerate(lines) if marker in ln]
    return hits[0] if hits else len(lines)


# --- in the CLI's own process: the thread and its connection end with the command ----------


def test_the_reporter_leaves_no_thread_and_no_connection_behind(
    bulky: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(progress.ENV_MODE, "plain")  # CliRunner captures stderr: ask for it
    monkeypatch.setenv(progress.ENV_INTERVAL, "0.05")
    result = bulky.invoke("snapshot", "create", "--target", "dev", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["ok"] is True
    assert f"exported public.bulk: {ROWS:,} rows in" in result.stderr
    alive = [t.name for t in threading.enumerate() if t.name == progress.THREAD_NAME]
    assert alive == []
    assert _no_progress_connection_left(bulky.dev_name)


def test_the_library_without_progress_prints_nothing(
    bulky: Project, capfd: pytest.CaptureFixture[str]
) -> None:
    from dbtools.config import load_settings
    from dbtools.snapshot.create import create_snapshot

    before = set(threading.enumerate())
    made = create_snapshot(load_settings(), "dev", progress=None)
    assert made.rows > ROWS
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    assert set(threading.enumerate()) <= before


# --- on a terminal: rich -------------------------------------------------------------------


def test_on_a_terminal_rich_shows_bars_and_a_line_per_table(bulky: Project) -> None:
    code, raw, out = on_terminal(bulky, ["snapshot", "create", "--target", "dev"])
    screen = raw.decode(errors="replace")
    assert code == 0, screen
    assert "\x1b[" in screen  # drawn with terminal control sequences: the live display
    assert "snapshot of dev" in screen and "tables" in screen  # the phase's bar
    assert "exporting public.bulk" in screen  # the table's bar
    assert f"✓ exported public.bulk: {ROWS:,} rows in" in screen
    assert DONE.search(screen)
    assert b"\x1b" not in out and b"verified" in out  # stdout (a pipe) is the plain result


# --- the choice of output and the line's form (no database) --------------------------------


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.pure
def test_choose_a_terminal_a_log_quiet_and_a_captured_stream(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    terminal, log = _Stream(True), _Stream(False)
    monkeypatch.setattr(sys, "__stderr__", terminal)
    assert choose(terminal, quiet=False, environ={}) == ("rich", True)
    assert choose(terminal, quiet=True, environ={}) == ("off", True)
    assert choose(terminal, quiet=False, environ={progress.ENV_MODE: "off"}) == ("off", True)
    assert choose(terminal, quiet=False, environ={progress.ENV_MODE: "plain"}) == ("plain", True)
    assert choose(terminal, quiet=False, environ={"TERM": "dumb"}) == ("plain", True)
    monkeypatch.setattr(sys, "__stderr__", log)
    assert choose(log, quiet=False, environ={}) == ("plain", True)
    assert choose(log, quiet=False, environ={progress.ENV_MODE: "bogus"}) == ("plain", True)
    # the CLI run as a function by another program that captured stderr: nothing, unless asked
    captured = _Stream(False)
    assert choose(captured, quiet=False, environ={}) == ("off", False)
    assert choose(captured, quiet=False, environ={progress.ENV_MODE: "plain"}) == ("plain", True)
    assert progress.interval_from({progress.ENV_INTERVAL: "0.5"}) == 0.5
    assert progress.interval_from({progress.ENV_INTERVAL: "-1"}) == progress.DEFAULT_INTERVAL
    assert progress.interval_from({progress.ENV_INTERVAL: "x"}) == progress.DEFAULT_INTERVAL


@pytest.mark.pure
def test_plain_lines_say_rows_share_time_and_never_a_password() -> None:
    stream = io.StringIO()
    rep = Reporter("plain", stream=stream, interval=10)
    try:
        with progress.phase(rep, "loading 20250514T102112Z", 1):
            with progress.table_task(rep, "loading", "public.User", total=500_027) as task:
                assert isinstance(task, progress.TableTask)
                assert rep.status(task).startswith("loading public.User: 0 / 500,027 rows")
                task.copy_rows, task.copy_bytes = 310_000, 48_200_000
                line = rep.status(task, task.started + 14)
                assert line == (
                    "loading public.User: 310,000 / 500,027 rows, 62%, 14 s "
                    "(48.2 MB, 22,143 rows/s, about 9 s left)"
                )
                task.done("loaded public.User: 500,027 rows")
            with progress.table_task(rep, "exporting", "public.T", conn=None) as skipped:
                pass  # ended without `done` (a skip, an error): no closing line
            assert not isinstance(skipped, str)
        rep("locked the tables")  # a step line: for a terminal only, a log gets none
    finally:
        rep.close()
    lines = stream.getvalue().splitlines()
    # One line per finished table; the skipped one and the step line leave none.
    assert len(lines) == 1, lines
    assert re.fullmatch(r"loaded public\.User: 500,027 rows in \d+\.\d s", lines[0])


@pytest.mark.pure
def test_the_terminal_shows_steps_and_never_a_password() -> None:
    stream = io.StringIO()
    rep = Reporter("rich", stream=stream)
    try:
        with progress.table_task(rep, "loading", "public.User", total=3) as task:
            task.done("loaded public.User: 3 rows")
        rep("restoring into dev (postgresql://app:s3cret-pw@db.example.com/x?sslmode=require)")
    finally:
        rep.close()
    screen = stream.getvalue()
    assert "✓ loaded public.User: 3 rows in" in screen
    assert "restoring into dev (postgresql://app:" in screen
    assert "s3cret-pw" not in screen
    rep("after close")  # a closed reporter prints nothing, and does not fail
    assert "after close" not in stream.getvalue()


@pytest.mark.pure
def test_a_plain_callback_gets_the_lines_it_always_got() -> None:
    said: list[str] = []
    with (
        progress.phase(said.append, "snapshot of dev", 1) as ph,
        progress.table_task(said.append, "exporting", "public.User", total=3) as task,
    ):
        ph.advance()
        task.add(3)
        task.done("exported public.User: 3 rows")
    with progress.table_task(None, "loading", "public.User") as quiet:
        quiet.done("loaded public.User: 3 rows")  # progress=None: nothing, no error
    assert said == ["exported public.User: 3 rows"]


@pytest.mark.pure
def test_a_reporter_thread_stops_on_close() -> None:
    rep = Reporter("plain", stream=io.StringIO(), interval=0.05)
    rep.start()
    assert any(t.name == progress.THREAD_NAME for t in threading.enumerate())
    rep.close()
    assert not any(t.name == progress.THREAD_NAME for t in threading.enumerate())
