"""Regressions from review: every prod write is guarded, and a failed rollback poisons nothing."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg2
import pytest

from dbtools import sync
from dbtools.config import load_settings
from dbtools.snapshot import format as fmt

from support.pipeline import HEAD, OLD, migrate, prod_backups, seed_dev, seed_stale_prod, state
from support.project import Project


@contextmanager
def table_held(url: str, table: str) -> Iterator[None]:
    """Another session holding a lock on table for as long as the block runs."""
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(f'LOCK TABLE "{table}" IN ACCESS SHARE MODE')
        yield
    finally:
        conn.rollback()
        conn.close()


def behind(project: Project) -> None:
    migrate(project.dev_url)
    migrate(project.prod_url, OLD)
    seed_dev(project.dev_url)
    seed_stale_prod(project.prod_url)


def test_a_failed_rollback_changes_nothing_and_the_retry_restores_the_pre_sync_state(
    project: Project,
) -> None:
    behind(project)
    before = state(project.prod_url)
    assert project.invoke("full-sync", "--yes").exit_code == 0
    synced = state(project.prod_url)
    with table_held(project.prod_url, "App"):
        failed = project.invoke("rollback", "--yes")
    assert failed.exit_code == 3, failed.output
    assert "table public.App is locked" in failed.output
    # Checked before the migrations were undone: schema and data exactly as synced.
    assert state(project.prod_url) == synced
    # The failed run's own backup (of the synced state) must not become the rollback target.
    retry = project.invoke("rollback", "--yes", "--json")
    assert retry.exit_code == 0, retry.output
    assert json.loads(retry.output)["migrations_rolled_back"] == [HEAD]
    assert state(project.prod_url) == before


def test_rollback_never_returns_to_a_state_a_rollback_replaced(project: Project) -> None:
    behind(project)
    before = state(project.prod_url)
    assert project.invoke("full-sync", "--yes").exit_code == 0
    assert project.invoke("rollback", "--yes").exit_code == 0
    assert state(project.prod_url) == before
    # The one committed sync is undone: a second rollback has nothing to undo and refuses,
    # rather than return to the synced state the first rollback replaced.
    again = project.invoke("rollback", "--yes")
    assert again.exit_code == 3, again.output
    assert "no committed sync-data, full-sync or restore to undo" in again.output
    assert state(project.prod_url) == before  # still the pre-sync state, not the synced one
    reasons = [fmt.read_manifest(p).reason for p in prod_backups(project)]
    assert reasons == ["before full-sync", "before rollback"]


@pytest.mark.parametrize(
    "args, reason",
    [
        (["migrate", "rollback", "--target", "prod", "--yes"], "before migrate rollback"),
        (["migrate", "mark", "--target", "prod", "--yes"], "before migrate mark"),
    ],
)
def test_migrate_on_prod_backs_up_first(project: Project, args: list[str], reason: str) -> None:
    migrate(project.dev_url)
    migrate(project.prod_url)
    seed_stale_prod(project.prod_url)
    result = project.invoke(*args)
    assert result.exit_code == 0, result.output
    (backup,) = prod_backups(project)
    manifest = fmt.read_manifest(backup)
    assert manifest.reason == reason
    assert manifest.migrations[-1] == HEAD  # taken before the write
    assert manifest.rows > 0


def test_migrate_apply_on_prod_backs_up_only_when_something_runs(project: Project) -> None:
    migrate(project.dev_url)
    migrate(project.prod_url, OLD)
    assert project.invoke("migrate", "apply", "--target", "prod", "--dry-run").exit_code == 0
    assert prod_backups(project) == []
    assert project.invoke("migrate", "apply", "--target", "prod", "--yes").exit_code == 0
    (backup,) = prod_backups(project)
    assert fmt.read_manifest(backup).migrations[-1] == OLD
    assert project.invoke("migrate", "apply", "--target", "prod", "--yes").exit_code == 0
    assert len(prod_backups(project)) == 1  # nothing pending: no new backup


def test_migrate_on_prod_is_refused_while_a_sync_holds_the_lock(project: Project) -> None:
    from dbtools import db

    migrate(project.dev_url)
    migrate(project.prod_url, OLD)
    holder = db.connect(
        db.Target("prod", project.prod_url, project.prod_name), purpose="lock", autocommit=True
    )
    try:
        with db.advisory_lock(holder, "sync", "sync"):
            result = project.invoke("migrate", "apply", "--target", "prod", "--yes")
    finally:
        holder.close()
    assert result.exit_code == 3
    assert "another dbtools sync is running" in result.output


@pytest.mark.parametrize(
    "name, value", [("DBTOOLS_LOCK_TIMEOUT", "ten"), ("DBTOOLS_CONNECT_TIMEOUT", "2.5")]
)
def test_bad_timeout_in_the_environment_is_a_config_error(
    project: Project, monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    result = project.invoke("verify")
    assert result.exit_code == 2
    assert f"{name} must be" in result.stderr


def test_pg_dump_gets_a_query_string_password_through_its_environment(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[list[str], dict[str, str]]] = []
    real_run = subprocess.run

    def spy(args: Any, *a: Any, **kw: Any) -> Any:
        if args and args[0] == "pg_dump":
            seen.append((list(args), dict(kw.get("env") or {})))
        return real_run(args, *a, **kw)

    monkeypatch.setattr(subprocess, "run", spy)
    monkeypatch.setenv("PROD_DATABASE_URL", project.prod_url + "?password=Qs-Secret-55")
    sync.backup(load_settings(project.root))
    ((args, env),) = seen
    assert not any("Qs-Secret-55" in a for a in args)
    assert env["PGPASSWORD"] == "Qs-Secret-55"
    assert any(a.startswith("--lock-wait-timeout=") for a in args)


@pytest.mark.parametrize(
    "args",
    [
        ["rollback", "--yes"],
        ["backup"],
        ["migrate", "rollback", "--target", "prod", "--yes"],
    ],
    ids=lambda a: " ".join(a[:2]),
)
def test_an_unreachable_dev_stops_prod_writers_instead_of_skipping_the_distinct_rule(
    project: Project, args: list[str]
) -> None:
    """A configured dev that cannot be reached is not "no dev": the rule "dev and prod are two
    databases" cannot be checked, so nothing that writes prod (or backs it up as prod) goes on."""
    from support.pgpeer import free_port

    behind(project)
    assert project.invoke("full-sync", "--yes").exit_code == 0
    synced = state(project.prod_url)
    backups = prod_backups(project)
    project.env["DEV_DATABASE_URL"] = f"postgresql://postgres@127.0.0.1:{free_port()}/x"
    result = project.invoke(*args)
    assert result.exit_code == 3, result.output
    assert "cannot check that it is not the dev database" in result.output
    assert "Traceback" not in result.output
    assert state(project.prod_url) == synced
    assert prod_backups(project) == backups
