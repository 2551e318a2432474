"""No password in any output, error or file dbtools writes, for every command.

Every registered command must appear in INVOCATIONS: a new command without an entry fails
test_every_command_is_covered, so nobody can add a command that skips this check.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import click
import pytest

from dbtools.cli import main

from support.pgpeer import free_port
from support.project import Project

# Every shape a password takes in a URL, each with characters that once leaked:
# dev: a raw '@', ':' and '#' in the userinfo (libpq itself would cut it at the first '@');
# prod: percent-encoded specials in a ?password= parameter; and a 2-character password.
RAW = "pa@ss:w#rd-7c1d"
SPECIAL = "Pr0d @:/?#%ü-9x"
SHORT = "k9"
# The archive key (snapshot/encryption.py) is set for every reachable run: it must never show
# either, nor land in a file (its '+' and '/' need percent-encoding in a URL-ish context).
ARCHIVE_KEY = "q+3/Zm9vYmFyYmF6cXV4LWRidG9vbHMta2V5LTAwMDE="
# (libpq cuts a raw password at its first '@' and shows the rest as a host name: look for it)
FORMS = [RAW, RAW.split("@", 1)[1], SPECIAL, quote(SPECIAL, safe=""), quote(RAW, safe="")]
FORMS += [ARCHIVE_KEY, quote(ARCHIVE_KEY, safe="")]

# (command path, arguments). Destructive ones run with --yes against the test databases.
INVOCATIONS: list[tuple[str, list[str]]] = [
    ("verify", ["verify"]),
    ("migrate status", ["migrate", "status", "--target", "both"]),
    ("migrate apply", ["migrate", "apply", "--target", "dev"]),
    ("migrate rollback", ["migrate", "rollback", "--target", "dev", "--yes"]),
    ("migrate new", ["migrate", "new", "--help"]),
    ("migrate test", ["migrate", "test"]),
    ("migrate lint", ["migrate", "lint"]),
    ("migrate mark", ["migrate", "mark", "--target", "dev", "--yes"]),
    ("migrate unlock", ["migrate", "unlock", "--target", "dev", "--yes"]),
    ("sync-schema", ["sync-schema", "--dry-run"]),
    ("diff", ["diff"]),
    ("plan", ["plan", "--save"]),
    ("apply", ["apply", "no-such-plan.json", "--yes"]),
    ("history", ["history"]),
    ("backup", ["backup"]),
    ("snapshot create", ["snapshot", "create", "--target", "dev"]),
    ("snapshot list", ["snapshot", "list"]),
    ("snapshot show", ["snapshot", "show", "does-not-exist"]),
    ("snapshot verify", ["snapshot", "verify", "does-not-exist"]),
    ("snapshot prune", ["snapshot", "prune", "--dry-run"]),
    ("snapshot query", ["snapshot", "query", "does-not-exist", "select 1"]),
    ("restore", ["restore", "does-not-exist", "--target", "dev", "--yes"]),
    ("check", ["check", "--target", "prod"]),
    ("sync-data", ["sync-data", "--dry-run"]),
    ("full-sync", ["full-sync", "--dry-run"]),
    ("rollback", ["rollback", "--yes"]),
]


def command_paths(group: click.Group, prefix: str = "") -> list[str]:
    out = []
    for name, cmd in group.commands.items():
        path = f"{prefix}{name}"
        if isinstance(cmd, click.Group):
            out += command_paths(cmd, path + " ")
        else:
            out.append(path)
    return out


def dev_url(project: Project) -> str:
    return project.dev_url.replace("postgres@", f"postgres:{RAW}@", 1)


def prod_url(project: Project) -> str:
    return f"{project.prod_url}?password={quote(SPECIAL, safe='')}"


def short_url(url: str) -> str:
    return url.replace("postgres@", f"postgres:{SHORT}@", 1)


def run_cli(project: Project, args: list[str], env: dict[str, str]) -> tuple[int, str]:
    code, stdout, stderr = run_cli_parts(project, args, env)
    return code, stdout + stderr


def run_cli_parts(project: Project, args: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "dbtools", *args],
        env=env,
        cwd=project.root,
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )
    return proc.returncode, proc.stdout, proc.stderr


# A 2-character password is looked for as a token of its own: inside a longer run of
# letters and digits (pg_dump's random `\restrict` key in schema.sql, a checksum) it is
# chance (1.6% per dump), and matched as a substring it failed about one suite run in 15.
SHORT_TOKEN = re.compile(rf"(?<![A-Za-z0-9]){re.escape(SHORT)}(?![A-Za-z0-9])")


def assert_clean(text: str, where: str) -> None:
    for form in FORMS:
        assert form not in text, f"password form {form!r} leaked in {where}: {text}"
    assert not SHORT_TOKEN.search(text), f"short password leaked in {where}: {text}"
    assert "Traceback" not in text and "internal error" not in text, f"{where}: {text}"


@pytest.mark.pure
def test_every_command_is_covered() -> None:
    covered = {name for name, _ in INVOCATIONS}
    missing = sorted(set(command_paths(main)) - covered)
    assert not missing, f"commands without a secrets check: {missing}"


# The exit code of a run with both databases reachable, on the fresh project each test gets:
# success (0), a check failed (1), bad input such as a snapshot that does not exist (2), or a
# refusal (3). True: the command needs prod, so with prod unreachable it must fail *because of
# prod* (exit 2 or 3, naming prod).
EXPECTED: dict[str, tuple[set[int], bool]] = {
    "verify": ({0}, True),
    "migrate status": ({0}, True),
    "migrate apply": ({0}, True),
    "migrate rollback": ({0}, True),  # nothing applied on dev: nothing to do
    "migrate new": ({0}, False),
    "migrate test": ({0}, False),  # the project's own migrations round-trip
    "migrate lint": ({1}, True),  # prod applied nothing: squawk names the index builds
    "migrate mark": ({0}, True),
    "migrate unlock": ({0}, False),
    "sync-schema": ({3}, True),  # dev has nothing applied: prod may not get migrations
    "diff": ({0}, True),  # two empty databases are identical
    "plan": ({2}, True),  # preserved Account etc. match no table in two empty databases
    "apply": ({2}, False),  # no such plan file: read before anything else
    "history": ({0}, True),  # prod's history is empty
    "backup": ({0}, True),
    "snapshot create": ({0}, False),
    "snapshot list": ({0}, False),
    "snapshot show": ({2}, False),  # does-not-exist: no such snapshot
    "snapshot verify": ({2}, False),
    "snapshot prune": ({0}, True),  # prod's newest verified backup is protected: prod is read
    "snapshot query": ({2}, False),
    "restore": ({2}, False),
    "check": ({1}, True),  # prod has none of the tables the checks read
    "sync-data": ({0}, True),  # a dry run on two empty databases at the same (no) migration
    "full-sync": ({3}, True),  # dev has nothing applied: prod may not get migrations
    "rollback": ({3}, True),  # prod's history records no committed sync: refused
}


# The exit code of every run with prod unreachable (and dev reachable with a password): the
# commands that need prod fail on it (2: cannot connect; 3: a write refused because prod
# cannot be identified); the others run as they would anyway.
UNREACHABLE: dict[str, int] = {
    "verify": 2,
    "migrate status": 2,
    "migrate apply": 3,
    "migrate rollback": 3,
    "migrate new": 0,
    "migrate test": 0,
    "migrate lint": 2,
    "migrate mark": 3,
    "migrate unlock": 0,
    "sync-schema": 2,
    "diff": 2,
    "plan": 2,
    "apply": 2,
    "history": 2,
    "backup": 2,
    "snapshot create": 0,
    "snapshot list": 0,
    "snapshot show": 2,
    "snapshot verify": 2,
    "snapshot prune": 2,
    "snapshot query": 2,
    "restore": 2,
    "check": 2,
    "sync-data": 2,
    "full-sync": 2,
    "rollback": 2,
}


@pytest.mark.pure
def test_every_invocation_has_an_expectation() -> None:
    assert set(EXPECTED) == {name for name, _ in INVOCATIONS}
    assert set(UNREACHABLE) == {name for name, _ in INVOCATIONS}


def assert_ran(name: str, args: list[str], code: int, stdout: str, stderr: str) -> None:
    """The command itself ran: click did not stop at its usage (a usage error is exit 2 too),
    it said something, and a --json run printed one JSON object carrying the same exit code."""
    out = stdout + stderr
    assert out.strip(), f"{name} printed nothing (exit {code})"
    if "--help" in args:
        assert out.startswith("Usage: ") and f" {name} [OPTIONS]" in out.splitlines()[0], out
        return
    for usage in ("Usage: ", "No such command", "No such option", "Missing argument"):
        assert usage not in out, f"{name} did not run: {out}"
    if "--json" in args:
        try:
            data = json.loads(stdout)
        except json.JSONDecodeError as exc:
            raise AssertionError(f"{name} --json printed no valid JSON ({exc}): {stdout}") from None
        assert isinstance(data, dict), stdout
        assert data.get("exit_code", code) == code, (name, code, stdout)
        if "ok" in data:
            assert data["ok"] is (code == 0), (name, code, stdout)


@pytest.mark.slow
@pytest.mark.parametrize("name,args", INVOCATIONS, ids=[n for n, _ in INVOCATIONS])
def test_no_password_in_output(project: Project, name: str, args: list[str]) -> None:
    codes, needs_prod = EXPECTED[name]
    base = {**os.environ, **project.env}
    ok_env = {
        **base,
        "DEV_DATABASE_URL": dev_url(project),
        "PROD_DATABASE_URL": prod_url(project),
        "DBTOOLS_ARCHIVE_KEY": ARCHIVE_KEY,
    }
    code, stdout, stderr = run_cli_parts(project, args, ok_env)
    out = stdout + stderr
    assert_clean(out, f"{name} (reachable)")
    assert code in codes, f"{name} exited {code}, expected one of {codes}: {out}"
    assert_ran(name, args, code, stdout, stderr)

    for json_flag in ([], ["--json"]):
        bad_env = {
            **ok_env,
            "DEV_DATABASE_URL": short_url(project.dev_url),
            "PROD_DATABASE_URL": (
                f"postgresql://app:{quote(RAW, safe='')}@127.0.0.1:{free_port()}/x"
                f"?password={quote(SPECIAL, safe='')}"
            ),
        }
        code, stdout, stderr = run_cli_parts(project, args + json_flag, bad_env)
        out = stdout + stderr
        assert_clean(out, f"{name} (prod unreachable{' --json' if json_flag else ''})")
        assert code == UNREACHABLE[name], f"{name} exited {code} with prod unreachable: {out}"
        assert_ran(name, args + json_flag, code, stdout, stderr)
        if needs_prod:
            assert code in (2, 3), f"{name} exited {code} with prod unreachable: {out}"
            assert "prod" in out and ("cannot connect" in out or "cannot be identified" in out)
    for path in Path(project.snapshot_dir).rglob("*"):
        if path.is_file() and path.suffix in (".json", ".sql", ".txt", ".log"):
            assert_clean(path.read_text(errors="replace"), str(path))


def test_debug_shows_the_cause_behind_the_one_line_and_no_password(project: Project) -> None:
    """DBTOOLS_DEBUG=1 prints the chain that `raise ... from None` keeps out of the one line
    (the driver's own error here), redacted like every other output."""
    env = {
        **os.environ,
        **project.env,
        "DBTOOLS_DEBUG": "1",
        "DEV_DATABASE_URL": f"postgresql://app:{quote(RAW, safe='')}@127.0.0.1:{free_port()}/x",
    }
    code, out = run_cli(project, ["snapshot", "create", "--target", "dev"], env)
    assert code == 2, out
    assert "psycopg2.OperationalError" in out  # the cause, hidden without DBTOOLS_DEBUG
    assert "dbtools.errors.ConnectionFailed" in out
    assert out.rstrip().splitlines()[-2].startswith("error: cannot connect to dev database")
    for form in FORMS:
        assert form not in out, f"password form {form!r} leaked: {out}"
    env.pop("DBTOOLS_DEBUG")
    code, quiet = run_cli(project, ["snapshot", "create", "--target", "dev"], env)
    assert code == 2 and "OperationalError" not in quiet and "Traceback" not in quiet
