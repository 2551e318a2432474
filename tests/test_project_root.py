"""dbtools from any directory of a project, and outside any project (issue #15, item 5).

The real CLI runs as a subprocess with its cwd set: in a subdirectory of the project every
path setting (snapshot_dir, migrations_dir, checks_dir, the env files) is the project root's;
outside any project a command says which setup.cfg it looked for, exits 2 and leaves the
current directory as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dbtools.config import load_settings
from dbtools.errors import ConfigError
from dbtools.snapshot import format as fmt

from support.pipeline import migrate
from support.project import REPO, Project, configure


def cli(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`python -m dbtools ARGS` in cwd with exactly the dbtools settings of env."""
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DBTOOLS_", "DEV_DATABASE", "PROD_DATABASE", "DATABASE_URL"))
    }
    return subprocess.run(
        [sys.executable, "-m", "dbtools", *args],
        cwd=cwd,
        env={**base, **env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
    )


def no_project_line(where: Path) -> str:
    return (
        f"error: no setup.cfg with a [dbtools] section in {where.resolve()} or any parent directory"
    )


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """A directory in no project (tmp_path has no setup.cfg above it)."""
    path = tmp_path / "elsewhere" / "deep"
    path.mkdir(parents=True)
    assert not any((p / "setup.cfg").exists() for p in (path, *path.parents))
    return path


@pytest.fixture
def relative_project(project: Project) -> Project:
    """The project with every path setting relative (migrations/, checks/, snapshots/ under
    its root) and its URLs in its env files instead of the environment."""
    shutil.copytree(REPO / "migrations", project.root / "migrations")
    shutil.copytree(REPO / "checks", project.root / "checks")
    configure(project, "migrations_dir = migrations\nchecks_dir = checks\nsnapshot_dir = snapshots")
    (project.root / ".env").write_text(f"DATABASE_URL={project.dev_url}\n")
    (project.root / ".env.production.local").write_text(f"DATABASE_URL={project.prod_url}\n")
    return project


def test_commands_in_a_subdirectory_use_the_project_roots_paths(
    relative_project: Project,
) -> None:
    project = relative_project
    migrate(project.dev_url)
    migrate(project.prod_url)
    sub = project.root / "src" / "deeper"
    sub.mkdir(parents=True)

    status = cli(["migrate", "status", "--json"], sub, {})
    assert status.returncode == 0, status.stdout + status.stderr
    targets = json.loads(status.stdout)["targets"]
    assert targets["dev"]["database"] == project.dev_name  # from the root's .env
    assert targets["prod"]["database"] == project.prod_name  # from .env.production.local
    assert targets["dev"]["pending"] == [] and targets["dev"]["applied"]  # root's migrations/

    verify = cli(["verify", "--json"], sub, {})
    assert verify.returncode == 0, verify.stdout + verify.stderr
    sides = json.loads(verify.stdout)["sides"]
    assert sides["dev"]["url_source"] == "DATABASE_URL in .env"
    assert sides["prod"]["url_source"] == "DATABASE_URL in .env.production.local"

    backup = cli(["backup"], sub, {})
    assert backup.returncode == 0, backup.stdout + backup.stderr
    made = fmt.snapshot_dirs(project.root / "snapshots" / "prod")
    assert len(made) == 1, made
    assert str(made[0]) in backup.stdout

    new = cli(["migrate", "new", "from_a_subdirectory"], sub, {})
    assert new.returncode == 0, new.stdout + new.stderr
    assert list((project.root / "migrations").glob("*_from_a_subdirectory.sql"))

    # nothing was written where the commands ran
    assert list(sub.iterdir()) == []


@pytest.mark.parametrize(
    "args",
    [
        ["backup"],
        ["verify"],
        ["migrate", "status"],
        ["migrate", "new", "x"],
        ["diff"],
        ["snapshot", "list"],
        ["snapshot", "create", "--target", "dev"],
        ["full-sync", "--yes"],
        ["plan", "--save"],
        ["check", "--target", "prod"],
    ],
    ids=lambda a: " ".join(a),
)
def test_outside_any_project_a_command_says_where_it_looked_and_exits_2(
    project: Project, elsewhere: Path, args: list[str]
) -> None:
    # The URLs are exported, as after `make demo`: still no command runs outside a project.
    env = {"DEV_DATABASE_URL": project.dev_url, "PROD_DATABASE_URL": project.prod_url}
    done = cli(args, elsewhere, env)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr == no_project_line(elsewhere) + "\n"
    assert done.stdout == ""
    assert list(elsewhere.iterdir()) == [], "nothing written into the current directory"
    assert not (elsewhere.parent / "snapshots").exists()


@pytest.mark.pure
def test_outside_any_project_help_and_version_still_work(elsewhere: Path) -> None:
    for args in (["--help"], ["--version"], ["backup", "--help"]):
        done = cli(args, elsewhere, {})
        assert done.returncode == 0, done.stderr
    assert list(elsewhere.iterdir()) == []


@pytest.mark.pure
def test_outside_a_project_json_output_carries_the_same_line(elsewhere: Path) -> None:
    done = cli(["snapshot", "list", "--json"], elsewhere, {})
    assert done.returncode == 2
    data = json.loads(done.stdout)
    assert data["error"] == no_project_line(elsewhere).removeprefix("error: ")
    assert data["exit_code"] == 2


def test_an_archive_named_by_the_environment_works_outside_a_project(
    project: Project, elsewhere: Path
) -> None:
    """DBTOOLS_SNAPSHOT_DIR configures an archive-only run; what only setup.cfg can say is
    still refused with the same line, naming the setting, before anything is written."""
    env = {
        "DBTOOLS_SNAPSHOT_DIR": "archive",
        "DEV_DATABASE_URL": project.dev_url,
        "PROD_DATABASE_URL": project.prod_url,
    }
    listed = cli(["snapshot", "list"], elsewhere, env)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.strip() == f"no snapshots under {elsewhere.resolve() / 'archive'}"

    history = cli(["history"], elsewhere, env)
    assert history.returncode == 0, history.stderr

    for args, setting in (
        (["migrate", "status"], "migrations_dir"),
        (["snapshot", "create", "--target", "dev"], "schemas"),
        (["diff"], "migrations_dir"),
    ):
        done = cli(args, elsewhere, env)
        assert done.returncode == 2, done.stdout + done.stderr
        assert done.stderr == (
            f"{no_project_line(elsewhere)} (setup.cfg [dbtools] {setting} is needed)\n"
        )
    assert list(elsewhere.iterdir()) == []


@pytest.mark.pure
def test_every_path_setting_is_the_roots_from_any_subdirectory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "proj"
    sub = root / "a" / "b"
    sub.mkdir(parents=True)
    (root / "setup.cfg").write_text(
        "[dbtools]\nmigrations_dir = db/migrations\nchecks_dir = db/checks\n"
        "snapshot_dir = archive\n"
    )
    (root / ".env").write_text("DATABASE_URL=postgresql://u@h/from_root_env\n")
    (sub / ".env").write_text("DATABASE_URL=postgresql://u@h/from_cwd_env\n")
    monkeypatch.chdir(sub)
    s = load_settings(environ={})
    assert s.root == root.resolve()
    assert s.migrations_dir == root.resolve() / "db" / "migrations"
    assert s.checks_dir == root.resolve() / "db" / "checks"
    assert s.snapshot_dir == root.resolve() / "archive"
    assert s.url("dev") == "postgresql://u@h/from_root_env"
    # a relative DBTOOLS_SNAPSHOT_DIR is the root's too, not the current directory's
    s = load_settings(environ={"DBTOOLS_SNAPSHOT_DIR": "elsewhere/snaps"})
    assert s.snapshot_dir == root.resolve() / "elsewhere" / "snaps"


@pytest.mark.pure
def test_outside_a_project_settings_are_refused_or_environment_only(
    elsewhere: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (elsewhere / ".env").write_text("DATABASE_URL=postgresql://u@h/stray\n")
    monkeypatch.chdir(elsewhere)
    with pytest.raises(ConfigError) as info:
        load_settings(environ={"DEV_DATABASE_URL": "postgresql://u@h/dev"})
    assert info.value.message == no_project_line(elsewhere).removeprefix("error: ")

    s = load_settings(environ={"DBTOOLS_SNAPSHOT_DIR": "snaps"})
    assert not s.in_project
    assert s.snapshot_dir == elsewhere.resolve() / "snaps"
    with pytest.raises(ConfigError, match=r"no \.env is read"):
        s.url("dev")  # a stray .env outside a project is never read
    for name in ("migrations_dir", "checks_dir", "schemas", "excluded_tables", "preserved_tables"):
        with pytest.raises(ConfigError, match=rf"setup\.cfg \[dbtools\] {name} is needed"):
            getattr(s, name)
