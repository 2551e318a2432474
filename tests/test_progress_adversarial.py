"""Progress and the CLI output around it, attacked: streams closed or whose reader went away,
nonsense settings, table names built to drive a terminal, a poller that loses its
connection or its rights, a database dropped mid-run, many tables.

Real `python -m dbtools` processes and a real server; a pseudo-terminal where a terminal is
meant. Nothing here measures time: where a run must reach a point first, a named pause
(DBTOOLS_TEST_PAUSE) holds it there.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid

import pytest

from dbtools import faults, progress
from dbtools.progress import Reporter, choose
from dbtools.progress.text import printable

from support.db import SERVER_URL, admin_execute, execute
from support.pipeline import migrate, seed_dev, seed_stale_prod
from support.processes import HANG, assert_clean_server, cli_env, on_terminal
from support.project import Project

FAST = {progress.ENV_MODE: "plain", progress.ENV_INTERVAL: "0.05"}
# Names anyone with CREATE may give a table: an escape sequence (colour), an OSC 8 hyperlink,
# CR / BEL / BS, a C1 CSI, a newline, a right-to-left override, rich markup, URL-ish
# characters and quotes.
HOSTILE = [
    "esc\x1b[31mred\x1b[0m",
    "osc\x1b]8;;http://evil.example\x1b\\click\x1b]8;;\x1b\\",
    "cr\rback\x07bell\x08",
    "csi\x9b31mc1",
    "new\nline",
    "rtl\u202egnp.exe",
    "[bold]x[/bold]",
    "[link=http://evil.example]y[/link]",
    "a#?%/@b",
    "q\"uote's",
]
# Each as it would reach the screen unescaped (rich itself writes CR and its own colours).
RAW = ["\x1b[31mred", "\x1b]8;;", "cr\rback", "\x07bell", "\x08", "\x9b", "\u202e", "new\nline"]
ERROR_LINE = re.compile(r"error: .+")


def _run(
    project: Project, args: list[str], extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dbtools", *args],
        cwd=project.root,
        env={**cli_env(project, None), **FAST, **(extra or {})},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=HANG * 3,
    )


@pytest.fixture
def seeded(project: Project) -> Project:
    migrate(project.dev_url)
    migrate(project.prod_url)
    seed_dev(project.dev_url)
    seed_stale_prod(project.prod_url)
    return project


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# --- no database -----------------------------------------------------------------------------


@pytest.mark.pure
def test_printable_shows_what_a_terminal_would_act_on_as_escapes() -> None:
    assert printable("esc\x1b[31mred") == "esc\\x1b[31mred"
    assert printable("new\nline\ttab\r") == "new\\nline\\ttab\\r"
    assert printable("c1\x9b\x85 del\x7f") == "c1\\x9b\\x85 del\\x7f"
    assert (
        printable("rtl\u202egnp \u2066iso\u2069 \u2028")
        == "rtl\\u202egnp \\u2066iso\\u2069 \\u2028"
    )
    assert printable("two\nlines\tkept\x1b", keep_newlines=True) == "two\nlines\tkept\\x1b"
    plain = "[bold]x[/bold] a#?%/@b q\"uote's É ✓ 表"
    assert printable(plain) == plain


@pytest.mark.pure
def test_hostile_names_reach_neither_a_log_nor_a_terminal_raw() -> None:
    for mode in ("plain", "rich"):
        stream = io.StringIO()
        rep = Reporter(mode, stream=stream, interval=10)
        try:
            with progress.phase(rep, "snapshot of \x1b]0;pwned\x07dev", len(HOSTILE)):
                for name in HOSTILE:
                    with progress.table_task(rep, "exporting", f"public.{name}", total=3) as t:
                        t.done(f"exported public.{name}: 3 rows")
            rep(f"refreshed materialized view public.{HOSTILE[0]}")
        finally:
            rep.close()
        screen = stream.getvalue()
        for raw in [*RAW, "\x1b]0;pwned"]:
            assert raw not in screen, (mode, raw)
        assert "exported public.esc\\x1b[31mred\\x1b[0m: 3 rows in" in screen
        assert "exported public.new\\nline: 3 rows in" in screen
        assert "[bold]x[/bold]" in screen and "[link=http://evil.example]y[/link]" in screen
        if mode == "plain":
            assert "\x1b" not in screen
            lines = screen.splitlines()
            assert len(lines) == len(HOSTILE), lines  # one per table: a newline split none
            assert all(ln.startswith(("exporting public.", "exported public.")) for ln in lines)


@pytest.mark.pure
def test_nonsense_settings_fall_back_and_a_tiny_interval_is_the_tick() -> None:
    default = progress.DEFAULT_INTERVAL
    for value in ("0", "-1", "nan", "inf", "-inf", "x", "", "1,5"):
        assert progress.interval_from({progress.ENV_INTERVAL: value}) == default, value
    for tiny in ("1e-9", "0.0001"):  # a line per table per tick at most, never a flood
        assert progress.interval_from({progress.ENV_INTERVAL: tiny}) == progress.MIN_INTERVAL
    assert progress.interval_from({progress.ENV_INTERVAL: " 2.5 "}) == 2.5
    # stderr closed (2>&-): no reporter, no thread, no connection, no closing line
    assert choose(None, quiet=False, environ={progress.ENV_MODE: "plain"}) == ("off", False)
    rep, closing = progress.make_reporter(None, quiet=False, environ={})  # type: ignore[arg-type]
    assert rep is None and closing is False


@pytest.mark.pure
def test_a_terminal_is_redrawn_per_tick_not_per_table() -> None:
    """Each redraw of rich's live area costs milliseconds: a thousand small tables used to
    redraw it three times each (a megabyte of output, seconds of CPU). Without the ticker
    nothing is redrawn until the end, and every finished table still has its line."""
    stream = io.StringIO()
    rep = Reporter("rich", stream=stream)
    try:
        with progress.phase(rep, "snapshot of dev", 1000):
            for i in range(1000):
                with progress.table_task(rep, "exporting", f"public.t{i}", total=0) as task:
                    task.done(f"exported public.t{i}: 0 rows")
    finally:
        rep.close()
    screen = stream.getvalue()
    assert screen.count("✓ exported public.t") == 1000
    assert len(screen) < 100 * 1000, len(screen)  # lines, not a redraw per table


# --- streams closed, or whose reader went away ----------------------------------------------


def _stderr_reader_leaves(
    project: Project, args: list[str], mode: str = "plain"
) -> tuple[int, str]:
    """Run with stderr a pipe that is closed once the run is paused mid-export (what
    `2> >(head -1)` does): every later line on stderr meets a broken pipe."""
    read_end, write_end = os.pipe()
    env = {**cli_env(project, "snapshot.export=0.5"), **FAST, progress.ENV_MODE: mode}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dbtools", *args],
        cwd=project.root,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=write_end,
    )
    os.close(write_end)
    with os.fdopen(read_end, "rb") as err:
        seen = b""
        while f"{faults.MARKER}snapshot.export".encode() not in seen:
            line = err.readline()
            assert line, seen
            seen += line
    out, _ = proc.communicate(timeout=HANG)
    return proc.returncode, out.decode()


def test_a_stderr_whose_reader_left_changes_neither_the_result_nor_the_exit_code(
    seeded: Project,
) -> None:
    code, out = _stderr_reader_leaves(seeded, ["snapshot", "create", "--target", "dev"])
    assert code == 0
    assert "verified" in out and "path: " in out
    shutil.rmtree(seeded.snapshot_dir)  # a snapshot that reuses every table pauses nowhere
    code, out = _stderr_reader_leaves(seeded, ["snapshot", "create", "--target", "dev", "--json"])
    assert code == 0
    assert json.loads(out)["ok"] is True
    # rich's own answer to a broken pipe was to put /dev/null on stdout and exit 1
    shutil.rmtree(seeded.snapshot_dir)
    code, out = _stderr_reader_leaves(seeded, ["snapshot", "create", "--target", "dev"], "rich")
    assert code == 0
    assert "verified" in out and "path: " in out


def test_a_closed_stderr_changes_neither_the_result_nor_the_exit_code(seeded: Project) -> None:
    args = ["snapshot", "create", "--target", "dev", "--json"]
    done = subprocess.run(
        ["sh", "-c", 'exec "$@" 2>&-', "sh", sys.executable, "-m", "dbtools", *args],
        cwd=seeded.root,
        env={**cli_env(seeded, None), **FAST},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        timeout=HANG * 3,
    )
    assert done.returncode == 0
    assert json.loads(done.stdout)["ok"] is True
    assert_clean_server(seeded)


@pytest.mark.parametrize("as_json", [True, False], ids=["json", "text"])
def test_a_stdout_whose_reader_left_is_one_error_line_and_exit_2(
    seeded: Project, as_json: bool
) -> None:
    """`dbtools ... | head`: the work is done but its result is lost; the caller learns it
    from the exit code and one line on stderr (before: exit 1 and no word under --json)."""
    args = ["snapshot", "create", "--target", "dev"] + (["--json"] if as_json else [])
    proc = subprocess.Popen(
        [sys.executable, "-m", "dbtools", *args],
        cwd=seeded.root,
        env={**cli_env(seeded, None), **FAST},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    proc.stdout.close()  # the reader is gone before the result is written
    _, err = proc.communicate(timeout=HANG)
    assert proc.returncode == 2, err
    lines = err.decode().splitlines()
    assert lines[-1] == "error: the result could not be written to stdout (Broken pipe)"
    assert "Traceback" not in err.decode()


# --- errors, --quiet, --json ---------------------------------------------------------------


def test_quiet_still_prints_the_error_line_and_never_the_password(seeded: Project) -> None:
    secret = "Pr0gress-s3cret-pw"
    bad = f"postgresql://nobody_{uuid.uuid4().hex[:6]}:{secret}@127.0.0.1:5432/nowhere"
    for extra in (["-q"], ["-q", "--json"], []):
        done = _run(
            seeded,
            ["snapshot", "create", "--target", "dev", *extra],
            {"DEV_DATABASE_URL": bad},
        )
        assert done.returncode == 2, done.stderr
        assert secret not in done.stdout + done.stderr
        assert "Traceback" not in done.stderr
        if "--json" in extra:
            assert json.loads(done.stdout)["exit_code"] == 2
        else:
            assert ERROR_LINE.fullmatch(done.stderr.splitlines()[0]), done.stderr
            assert done.stdout == ""


def test_every_json_command_prints_one_object_with_progress_on(seeded: Project) -> None:
    made = _run(seeded, ["snapshot", "create", "--target", "dev", "--json"])
    path = json.loads(made.stdout)["path"]
    commands = [
        ["verify"],
        ["diff"],
        ["snapshot", "list"],
        ["snapshot", "verify", path],
        ["backup"],
        ["restore", path, "--target", "dev", "--yes"],
        ["plan"],
        ["sync-data", "--yes"],
        ["rollback", "--dry-run"],
        ["full-sync", "--dry-run"],
        ["history"],
    ]
    for args in commands:
        done = _run(seeded, [*args, "--json"])
        assert done.returncode in (0, 1), (args, done.stderr)  # diff: 1 when they differ
        assert done.stdout.count("\n") == 1, (args, done.stdout)  # one line: one object
        assert json.loads(done.stdout)["ok"] is (done.returncode == 0), args
        assert "Traceback" not in done.stderr


# --- table names that try to drive the display ---------------------------------------------


@pytest.fixture
def hostile(project: Project) -> Project:
    """Tables named to inject escapes, links, line breaks and markup, a few rows each."""
    for name in HOSTILE:
        execute(project.dev_url, f"CREATE TABLE {_quoted(name)} (id int PRIMARY KEY, v text)")
        execute(
            project.dev_url,
            f"INSERT INTO {_quoted(name)} SELECT g, 'x' FROM generate_series(1, 10) g",
        )
    return project


def test_hostile_table_names_in_a_ci_log_stay_one_line_without_escapes(hostile: Project) -> None:
    done = _run(hostile, ["snapshot", "create", "--target", "dev"])
    assert done.returncode == 0, done.stderr
    for raw in RAW:
        assert raw not in done.stderr, raw
    assert "\x1b" not in done.stderr
    for line in done.stderr.splitlines():
        assert re.match(r"(exporting|exported|still working|done in) ?", line), line
    assert "exported public.new\\nline: 10 rows in" in done.stderr
    assert "exported public.[link=http://evil.example]y[/link]: 10 rows in" in done.stderr


def test_hostile_table_names_on_a_terminal_are_shown_not_obeyed(hostile: Project) -> None:
    code, raw, _ = on_terminal(hostile, ["snapshot", "create", "--target", "dev"])
    screen = raw.decode(errors="replace")
    assert code == 0, screen
    assert "\x1b[" in screen  # the live display did run
    for raw in RAW:
        assert raw not in screen.replace("\r\n", "\n"), raw
    assert "✓ exported public.esc\\x1b[31mred\\x1b[0m: 10 rows in" in screen
    assert "✓ exported public.[bold]x[/bold]: 10 rows in" in screen  # markup shown as text


# --- the poller loses its connection, its rights, its database -----------------------------


def _paused_run(project: Project, args: list[str], seconds: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "dbtools", *args],
        cwd=project.root,
        env={**cli_env(project, f"snapshot.export={seconds}"), **FAST},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    seen = ""
    while f"{faults.MARKER}snapshot.export" not in seen:
        line = proc.stderr.readline()
        assert line, f"ended early ({proc.wait()}): {seen}"
        seen += line
    return proc


def _progress_backends(dbname: str) -> list[tuple]:
    return execute(
        SERVER_URL,
        "SELECT pid FROM pg_stat_activity WHERE datname = %s AND application_name = %s",
        (dbname, "dbtools-progress"),
    )


def test_a_poller_whose_connection_is_killed_leaves_the_command_alone(seeded: Project) -> None:
    proc = _paused_run(seeded, ["snapshot", "create", "--target", "dev", "--json"], 3)
    end = time.monotonic() + HANG
    while not (pids := _progress_backends(seeded.dev_name)):  # the poller reads the paused COPY
        assert time.monotonic() < end and proc.poll() is None
        time.sleep(0.05)
    execute(SERVER_URL, "SELECT pg_terminate_backend(%s)", (pids[0][0],))
    out, err = proc.communicate(timeout=HANG)
    assert proc.returncode == 0, err
    assert json.loads(out)["ok"] is True
    assert "Traceback" not in err and "terminat" not in err
    assert_clean_server(seeded)  # not reconnected behind our back: times only from then on


def test_a_database_dropped_mid_run_is_one_error_line(seeded: Project) -> None:
    proc = _paused_run(seeded, ["snapshot", "create", "--target", "dev"], 2)
    admin_execute(f'DROP DATABASE "{seeded.dev_name}" WITH (FORCE)')
    out, err = proc.communicate(timeout=HANG)
    assert proc.returncode not in (0, None), err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert ERROR_LINE.fullmatch(lines[-1]), err
    assert sum(ln.startswith("error:") for ln in lines) == 1, err
    assert "verified" not in out


def test_a_role_that_may_not_read_pg_stat_progress_copy_gets_times_only(project: Project) -> None:
    """A prod role without the view (revoked from PUBLIC): the poller's query fails, progress
    shows times, the command succeeds; the role's password is in its URL and nowhere else."""
    role, secret = f"dbt_{uuid.uuid4().hex[:8]}_reader", "Pr0gress-r0le-s3cret"
    admin_execute(f"CREATE ROLE {role} LOGIN PASSWORD '{secret}'")
    try:
        execute(project.dev_url, "CREATE TABLE bulk (id int PRIMARY KEY, body text)")
        execute(
            project.dev_url,
            "INSERT INTO bulk SELECT g, md5(g::text) FROM generate_series(1, 50000) g",
        )
        execute(
            project.dev_url,
            f"GRANT USAGE ON SCHEMA public TO {role}; "
            f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}; "
            "REVOKE SELECT ON pg_catalog.pg_stat_progress_copy FROM PUBLIC",
        )
        url = f"postgresql://{role}:{secret}@127.0.0.1:5432/{project.dev_name}"
        assert execute(url, "SELECT has_table_privilege('pg_stat_progress_copy', 'SELECT')") == [
            (False,)
        ]
        done = _run(project, ["snapshot", "create", "--target", "dev"], {"DEV_DATABASE_URL": url})
        assert done.returncode == 0, done.stderr
        assert "exported public.bulk: 50,000 rows in" in done.stderr
        assert secret not in done.stdout + done.stderr
        assert "Traceback" not in done.stderr and "permission denied" not in done.stderr
    finally:
        execute(project.dev_url, f"DROP OWNED BY {role}")
        admin_execute(f"DROP ROLE {role}")


# --- a person at a terminal: a question, a signal --------------------------------------------


def _on_a_terminal(
    project: Project,
    args: list[str],
    act: bytes,
    *,
    when: bytes,
    signal_to_send: int | None = None,
    pause: str | None = None,
) -> tuple[int, bytes]:
    """Run with stdin and stderr a pseudo-terminal (rich's display on); once `when` shows,
    type `act` (or send the signal). Returns the exit code and everything the screen got."""
    code, screen, _ = on_terminal(
        project,
        args,
        extra_env={progress.ENV_INTERVAL: "0.05"},
        pause=pause,
        when=when,
        act=act,
        signal_to_send=signal_to_send,
    )
    return code, screen


def test_a_question_on_a_terminal_is_not_drawn_over_and_no_is_exit_4(seeded: Project) -> None:
    code, screen = _on_a_terminal(seeded, ["sync-data"], b"n\r", when=b"[y/N]")
    assert code == 4, screen
    text = screen.decode(errors="replace")
    question = text[text.index("replace the data of prod") :]
    # after the question: only the answer's echo and the one error line, no redraw
    assert "\x1b" not in question, question
    assert question.splitlines()[-1] == "error: cancelled: nothing was changed", question


def test_a_signal_while_the_terminal_display_runs_is_the_last_word(seeded: Project) -> None:
    import signal

    code, screen = _on_a_terminal(
        seeded,
        ["snapshot", "create", "--target", "dev"],
        b"",
        when=f"{faults.MARKER}snapshot.export".encode(),
        signal_to_send=signal.SIGINT,
        pause="snapshot.export=30",
    )
    assert code == 130, screen
    text = screen.decode(errors="replace")
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)  # what remains once the cursor moved
    last = [ln for ln in shown.replace("\r", "\n").split("\n") if ln.strip()][-1]
    assert last.startswith("error: interrupted (SIGINT)"), text[-400:]
    # the live area hid the cursor; it is shown again before the last line
    assert text.rfind("\x1b[?25h") > text.rfind("\x1b[?25l"), text[-400:]
    assert_clean_server(seeded)


@pytest.mark.pure
def test_text_tables_and_error_lines_show_hostile_names_not_obey_them(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from dbtools.cli import output

    rendered = output.table([["public.new\nline", 1], ["public.esc\x1b[31mred", 2]], ["t", "n"])
    assert len(rendered.splitlines()) == 4  # header, rule, one line per table
    assert "\x1b" not in rendered and "public.new\\nline" in rendered
    assert output.shown("two\nlines \x1b[2J\u202e") == "two\nlines \\x1b[2J\\u202e"
    with pytest.raises(SystemExit) as exited:
        output._fail(output.Options(), "no table public.new\nline\x1b[31m", 2, "see\x07 it")
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err == "error: no table public.new\\nline\\x1b[31m\nhint: see\\x07 it\n"
