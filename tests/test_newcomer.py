"""After `make demo`, a newcomer can drive dbtools; production installs only what it needs
(issue #15, items 6 and 8): `make help` lists every target, the demo ends with the exports, PATH
and completion lines and three commands to try, `make install-prod` leaves out the test extras
and the sync workflow uses it, and scripts/ensure_pg.py starts only the cluster behind
DBTOOLS_PG_URL."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
import yaml  # the test extras install PyYAML: missing, the run fails (never skips)

from dbtools.cli import main

from support.pipeline import OLD, migrate, seed_dev, seed_stale_prod
from support.project import REPO, Project

sys.path.insert(0, str(REPO / "scripts"))
import demo
import ensure_pg

VENV = Path(sys.prefix)


def run(
    cmd: list[str], cwd: Path = REPO, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, cwd=cwd, env=env or dict(os.environ), capture_output=True, text=True, timeout=120
    )


def make_help() -> list[str]:
    done = run(["make", "--no-print-directory", "help"])
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def makefile_targets() -> list[str]:
    """Every rule of the Makefile a person can name (not the stamp files)."""
    text = (REPO / "Makefile").read_text()
    return re.findall(r"^([a-z][a-z0-9-]*)\s*:(?!=)", text, re.M)


# --- make help -------------------------------------------------------------------------------


@pytest.mark.pure
def test_make_help_lists_every_target_once_demo_and_test_first() -> None:
    lines = make_help()
    listed = [m.group(1) for line in lines if (m := re.match(r"make (\S+)\s{2,}\S", line))]
    assert listed[:2] == ["demo", "test"]
    assert len(listed) == len(set(listed)), listed
    assert sorted(listed) == sorted(makefile_targets())
    phony = re.search(r"^\.PHONY:((?:.*\\\n)*.*)$", (REPO / "Makefile").read_text(), re.M)
    assert phony is not None
    assert sorted(phony.group(1).replace("\\\n", " ").split()) == sorted(listed)


@pytest.mark.pure
def test_completion_line_of_make_help_works_from_the_venv() -> None:
    line = next(x for x in make_help() if "_DBTOOLS_COMPLETE=bash_source" in x)
    command = line.rpartition(": ")[2]
    assert command == (
        'source .venv/bin/activate && eval "$(_DBTOOLS_COMPLETE=bash_source dbtools)"'
    )
    # The venv running these tests stands in for .venv where they run from another one.
    venv = os.path.relpath(VENV, REPO)
    command = command.replace(".venv/", f"{venv}/")
    # No dbtools on PATH but the venv's: activate must bring it.
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp")}
    done = run(["bash", "-c", f"{command} && complete -p dbtools && type -P dbtools"], env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "complete -o nosort -F _dbtools_completion dbtools" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == str(VENV / "bin" / "dbtools")


@pytest.mark.pure
def test_make_rollback_passes_dry_run_and_yes() -> None:
    for flags, argv in (
        (["DRY_RUN=1"], ["rollback", "--dry-run"]),
        (["YES=1"], ["rollback", "--yes"]),
        (["DRY_RUN=1", "YES=1"], ["rollback", "--yes", "--dry-run"]),
    ):
        done = run(["make", "-n", "rollback", *flags])
        assert done.returncode == 0, done.stderr
        line = next(x for x in done.stdout.splitlines() if x.startswith(".venv/bin/dbtools "))
        assert line.split()[1:] == argv
        ctx = click.Context(main, info_name="dbtools")
        main.commands["rollback"].make_context("rollback", argv[1:], parent=ctx)


# --- make install-prod and the sync workflow -------------------------------------------------


def make_plan(*args: str) -> list[str]:
    """What make would run for args in a venv where nothing is installed yet."""
    done = run(["make", "-n", "-B", *args])
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


@pytest.mark.pure
def test_install_prod_installs_dbtools_without_the_test_extras() -> None:
    lines = make_plan("install-prod")
    installs = [x for x in lines if "pip install" in x and "--upgrade pip" not in x]
    assert installs == [".venv/bin/python -m pip install -q -e ."]
    # `make install` is a superset: it satisfies install-prod too
    lines = make_plan("install")
    assert ".venv/bin/python -m pip install -q -e '.[test]'" in lines
    assert any(x.startswith("touch ") and ".installed-prod-stamp" in x for x in lines)


@pytest.mark.pure
@pytest.mark.parametrize(
    "target",
    [
        "verify",
        "backup",
        "sync-schema",
        "sync-data",
        "full-sync",
        "rollback",
        "check",
        "plan",
        "history",
        "diff",
    ],
)
def test_operation_targets_need_only_the_production_install(target: str) -> None:
    lines = make_plan(target, "YES=1", "PLAN=p.json")
    assert not any("[test]" in x for x in lines), lines
    assert any("pip install -q -e ." in x for x in lines), lines


@pytest.fixture(scope="module")
def sync_workflow() -> dict[Any, Any]:
    data = yaml.safe_load((REPO / ".github" / "workflows" / "database-sync.yml").read_text())
    assert isinstance(data, dict)
    return data


@pytest.mark.pure
def test_every_sync_job_uses_the_production_install(sync_workflow: dict[Any, Any]) -> None:
    for name, job in sync_workflow["jobs"].items():
        runs = [s.get("run", "") for s in job["steps"]]
        assert "make install-prod" in runs, name
        assert not any(re.search(r"make install(\s|$)|\[test\]", r) for r in runs), (name, runs)
        first_dbtools = next(i for i, r in enumerate(runs) if "dbtools" in r or "make " in r)
        assert runs[first_dbtools] == "make install-prod", name


# --- the end of make demo --------------------------------------------------------------------

DEV = "postgresql://postgres@127.0.0.1:5432/Buildappswith-dev"
PROD = "postgresql://postgres@127.0.0.1:5432/Buildappswith-prod"


@pytest.mark.pure
def test_demo_ends_with_exports_path_completion_and_three_commands() -> None:
    lines = demo.next_steps(DEV, PROD, REPO / ".venv", REPO)
    assert f"  export DEV_DATABASE_URL={DEV}" in lines
    assert f"  export PROD_DATABASE_URL={PROD}" in lines
    assert any(x.startswith("  source .venv/bin/activate ") for x in lines)
    assert any("or run .venv/bin/dbtools" in x for x in lines)
    assert any('eval "$(_DBTOOLS_COMPLETE=bash_source dbtools)"' in x for x in lines)
    tries = lines[lines.index("then try:") + 1 :]
    assert len(tries) == 3
    for line in tries:
        argv = line.split("#")[0].split()
        assert argv[0] == "dbtools"
        command = main.commands[argv[1]]  # a real command, with options it accepts
        command.make_context(argv[1], argv[2:], parent=click.Context(main, info_name="dbtools"))


@pytest.mark.pure
def test_demo_lines_run_as_written_in_a_shell() -> None:
    """Pasted into bash, the lines set the URLs and put the venv's dbtools on PATH."""
    lines = demo.next_steps(DEV, PROD, VENV, REPO)
    setup = [x.split("#")[0].strip() for x in lines[1 : lines.index("then try:")]]
    script = " && ".join(
        [*setup, 'printf "%s\\n" "$DEV_DATABASE_URL" "$PROD_DATABASE_URL"', "type -P dbtools"]
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp")}
    done = run(["bash", "-c", script], env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines() == [DEV, PROD, str(VENV / "bin" / "dbtools")]


@pytest.mark.pure
def test_demo_never_prints_a_password_and_says_cd_outside_the_repository(tmp_path: Path) -> None:
    secret = "s3cr3t-pw"
    lines = demo.next_steps(
        DEV.replace("postgres@", f"postgres:{secret}@"), PROD, REPO / ".venv", tmp_path
    )
    text = "\n".join(lines)
    assert secret not in text
    assert f"export DEV_DATABASE_URL={DEV}" in text
    assert "PGPASSWORD" in text
    assert lines[1] == f"  cd {REPO}"


def test_the_three_commands_to_try_work_after_a_sync(project: Project) -> None:
    """What the demo leaves (a full sync of a stale prod), then each suggested command."""
    migrate(project.dev_url)
    migrate(project.prod_url, OLD)
    seed_dev(project.dev_url)
    seed_stale_prod(project.prod_url)
    synced = project.invoke("full-sync", "--yes")
    assert synced.exit_code == 0, synced.output
    for command, _ in demo.TRY_NEXT:
        result = project.invoke(*command.split()[1:])
        assert result.exit_code == 0, (command, result.output)


# --- scripts/ensure_pg.py: only the cluster behind DBTOOLS_PG_URL ----------------------------

LISTING = """\
Ver Cluster Port Status Owner    Data directory              Log file
13  old     5433 down   postgres /var/lib/postgresql/13/old  /var/log/postgresql/13-old.log
15  main    5432 down   postgres /var/lib/postgresql/15/main /var/log/postgresql/15-main.log
16  next    5434 online postgres /var/lib/postgresql/16/next /var/log/postgresql/16-next.log
"""


def port_of(url: str) -> int:
    return ensure_pg.url_port(ensure_pg.url_params(url), {})


@pytest.mark.pure
def test_ensure_pg_starts_only_the_cluster_on_the_urls_port() -> None:
    clusters = ensure_pg.parse_clusters(LISTING)
    assert [(c.label, c.port, c.status) for c in clusters] == [
        ("13/old", 5433, "down"),
        ("15/main", 5432, "down"),
        ("16/next", 5434, "online"),
    ]
    for url, label in (
        ("postgresql://postgres@127.0.0.1:5432/postgres", "15/main"),
        ("postgresql://postgres@localhost:5433/postgres", "13/old"),
        ("postgresql://postgres@127.0.0.1/postgres", "15/main"),  # libpq's default port
        ("host=/var/run/postgresql port=5433 dbname=x", "13/old"),
    ):
        chosen, why = ensure_pg.cluster_to_start(clusters, port_of(url))
        assert chosen is not None and chosen.label == label, (url, why)


@pytest.mark.pure
def test_ensure_pg_starts_nothing_when_the_port_is_not_one_down_cluster() -> None:
    clusters = ensure_pg.parse_clusters(LISTING)
    chosen, why = ensure_pg.cluster_to_start(clusters, 5999)
    assert chosen is None
    assert why == (
        "no local cluster uses port 5999 (clusters: 13/old on 5433, 15/main on 5432, "
        "16/next on 5434); nothing started"
    )
    chosen, why = ensure_pg.cluster_to_start(clusters, 5434)
    assert chosen is None and "16/next on port 5434 is running but does not answer" in why
    twins = ensure_pg.parse_clusters("14 a 5440 down x /d /l\n15 b 5440 down x /d /l\n")
    chosen, why = ensure_pg.cluster_to_start(twins, 5440)
    assert chosen is None and "clusters 14/a, 15/b all use port 5440" in why


@pytest.mark.pure
def test_ensure_pg_reads_port_and_host_as_libpq_does() -> None:
    assert port_of("postgresql://u:p@h1:5440,h2:5441/d") == 5440
    assert ensure_pg.url_port({}, {"PGPORT": "5439"}) == 5439
    assert ensure_pg.url_port({}, {}) == 5432
    local = ensure_pg.is_local
    assert local(ensure_pg.url_params("postgresql://u@127.0.0.1/d"), {})
    assert local(ensure_pg.url_params("postgresql:///d?host=/tmp"), {})
    assert local(ensure_pg.url_params("postgresql:///d"), {})
    assert not local(ensure_pg.url_params("postgresql://u@db.example.com/d"), {})
    assert not local(ensure_pg.url_params("postgresql://u@127.0.0.1,db.example.com/d"), {})
    assert not local({}, {"PGHOST": "db.example.com"})


@pytest.mark.pure
def test_ensure_pg_reads_this_machines_real_listing() -> None:
    """pg_lsclusters' real output parses (where Debian's tools are installed)."""
    listing = ensure_pg.list_clusters()
    if listing is None:
        assert not (Path("/usr/bin/pg_lsclusters").exists() and Path("/etc/postgresql").is_dir())
        return
    rows = [line for line in listing.splitlines() if line.strip()]
    assert len(ensure_pg.parse_clusters(listing)) == len(rows)
