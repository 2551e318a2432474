"""Real `python -m dbtools ...` processes held at a named pause point (DBTOOLS_TEST_PAUSE), and
what a run may leave behind: backends and locks on the test databases, archive entries."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg2

from dbtools import faults
from dbtools.snapshot import format as fmt

from support.db import SERVER_URL
from support.project import REPO, Project

HANG = 60.0  # bounds a hang only; a clean exit takes well under a second after the signal


def cli_env(project: Project, pause: str | None) -> dict[str, str]:
    """The environment of a dbtools process for the project, paused at `pause` if given."""
    env = {**os.environ, **{k: v for k, v in project.env.items() if v}}
    env.pop("DBTOOLS_DEV_DATABASE", None)
    env.pop("DBTOOLS_PROD_DATABASE", None)
    env.pop(faults.ENV, None)
    if pause:
        env[faults.ENV] = pause
    env["PYTHONPATH"] = str(REPO)
    return env


def start_cli(project: Project, args: list[str], pause: str | None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "dbtools", *args],
        cwd=project.root,
        env=cli_env(project, pause),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def wait_marker(proc: subprocess.Popen[bytes], point: str) -> bytes:
    """Read stderr until the pause marker; return what was read."""
    assert proc.stderr is not None
    seen = b""
    marker = f"{faults.MARKER}{point}".encode()
    end = time.monotonic() + HANG
    while marker not in seen:
        line = proc.stderr.readline()
        if not line:
            out = proc.stdout.read() if proc.stdout else b""
            raise AssertionError(f"ended before {point} ({proc.wait()}): {out!r} {seen!r}")
        seen += line
        assert time.monotonic() < end, f"no marker for {point}: {seen!r}"
    return seen


def leftovers(*names: str) -> tuple[list[tuple], list[tuple]]:
    """Backends and locks on the named databases, other than this query's own."""
    conn = psycopg2.connect(SERVER_URL)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT pid, datname, state, left(query, 60) FROM pg_stat_activity "
                "WHERE datname = ANY(%s) AND pid <> pg_backend_pid()",
                (list(names),),
            )
            backends = cur.fetchall()
            cur.execute(
                "SELECT l.locktype, l.mode, l.pid FROM pg_locks l "
                "JOIN pg_database d ON d.oid = l.database "
                "WHERE d.datname = ANY(%s) AND l.pid <> pg_backend_pid()",
                (list(names),),
            )
            locks = cur.fetchall()
        return backends, locks
    finally:
        conn.close()


def assert_clean_server(project: Project) -> None:
    """No backend and no lock (relation or advisory) is left on the project's databases."""
    # The server ends a backend a moment after its client closed the socket: poll briefly.
    end = time.monotonic() + 10
    while True:
        backends, locks = leftovers(project.dev_name, project.prod_name)
        if (not backends and not locks) or time.monotonic() > end:
            break
        time.sleep(0.05)
    assert backends == [], backends
    assert locks == [], locks


def assert_archive_clean(root: Path) -> None:
    """Every directory under a stamp is a complete, verified snapshot; the rest is a
    recognisable `.tmp-` leftover (which the archive prunes) or nothing."""
    if not root.exists():
        return
    for env_dir in root.iterdir():
        for child in env_dir.iterdir():
            if child.name.startswith(fmt.TMP_PREFIX):
                continue
            assert fmt.is_stamp(child.name), child
            _, problems = fmt.verify_dir(child)
            assert problems == [], (child, problems)


def on_terminal(
    project: Project,
    args: list[str],
    *,
    extra_env: dict[str, str] | None = None,
    pause: str | None = None,
    when: bytes | None = None,
    act: bytes = b"",
    signal_to_send: int | None = None,
) -> tuple[int, bytes, bytes]:
    """`python -m dbtools ARGS` with stdin and stderr a pseudo-terminal (a person's terminal;
    stdout stays a pipe). Once `when` shows on the screen, type `act` or send the signal.
    Returns the exit code, everything the screen got, and stdout."""
    import pty

    master, slave = pty.openpty()
    env = {**cli_env(project, pause), "TERM": "xterm-256color", **(extra_env or {})}
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dbtools", *args],
            cwd=project.root,
            env=env,
            stdin=slave,
            stdout=subprocess.PIPE,
            stderr=slave,
        )
        os.close(slave)
        slave = -1
        screen, acted = b"", when is None
        end = time.monotonic() + HANG
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the other side closed
                break
            if not data:
                break
            screen += data
            if not acted and when is not None and when in screen:
                acted = True
                if signal_to_send is None:
                    os.write(master, act)
                else:
                    proc.send_signal(signal_to_send)
            assert time.monotonic() < end, screen
        out, _ = proc.communicate(timeout=HANG)
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)
    return proc.returncode, screen, out
