"""No password in any output, error or file dbtools writes, for every command.

Every registered command must appear in INVOCATIONS: a new command without an entry fails
test_every_command_is_covered, so nobody can add a command that skips this check.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from dbtools.cli import main

from conftest import Project
from pgpeer import free_port

PASSWORD = "Pw-7c1d-Leak!Check"
ENCODED = "Pw-7c1d-Leak%21Check"

# (command path, arguments). Destructive ones run with --yes against the test databases.
INVOCATIONS: list[tuple[str, list[str]]] = [
    ("verify", ["verify"]),
    ("migrate status", ["migrate", "status", "--target", "both"]),
    ("migrate apply", ["migrate", "apply", "--target", "dev"]),
    ("migrate rollback", ["migrate", "rollback", "--target", "dev", "--yes"]),
    ("migrate new", ["migrate", "new", "--help"]),
    ("migrate mark", ["migrate", "mark", "--target", "dev", "--yes"]),
    ("migrate unlock", ["migrate", "unlock", "--target", "dev", "--yes"]),
    ("sync-schema", ["sync-schema", "--dry-run"]),
    ("diff", ["diff"]),
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


def with_password(url: str) -> str:
    return url.replace("postgres@", f"postgres:{ENCODED}@", 1)


def run_cli(project: Project, args: list[str], env: dict[str, str]) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "dbtools", *args],
        env=env,
        cwd=project.root,
        capture_output=True,
        text=True,
        timeout=180,
    )
    return proc.stdout + proc.stderr


def assert_clean(text: str, where: str) -> None:
    assert PASSWORD not in text, f"password leaked in {where}"
    assert ENCODED not in text, f"encoded password leaked in {where}"


def test_every_command_is_covered() -> None:
    covered = {name for name, _ in INVOCATIONS}
    missing = sorted(set(command_paths(main)) - covered)
    assert not missing, f"commands without a secrets check: {missing}"


@pytest.mark.parametrize("name,args", INVOCATIONS, ids=[n for n, _ in INVOCATIONS])
def test_no_password_in_output(project: Project, name: str, args: list[str]) -> None:
    if name not in command_paths(main):
        pytest.skip(f"{name} is not a command")
    base = {**os.environ, **project.env}
    ok_env = {
        **base,
        "DEV_DATABASE_URL": with_password(project.dev_url),
        "PROD_DATABASE_URL": with_password(project.prod_url),
    }
    assert_clean(run_cli(project, args, ok_env), f"{name} (reachable)")
    for json_flag in ([], ["--json"]):
        bad_env = {
            **ok_env,
            "PROD_DATABASE_URL": f"postgresql://app:{ENCODED}@127.0.0.1:{free_port()}/x",
        }
        assert_clean(run_cli(project, args + json_flag, bad_env), f"{name} (unreachable)")
    for path in Path(project.snapshot_dir).rglob("*"):
        if path.is_file() and path.suffix in (".json", ".sql", ".txt", ".log"):
            assert_clean(path.read_text(errors="replace"), str(path))
