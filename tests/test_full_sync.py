"""`dbtools full-sync`: verify -> backup -> sync-schema -> sync-data -> check, and its plan."""

from __future__ import annotations

import json

import psycopg2
import pytest

from dbtools import db, sync
from dbtools.config import load_settings
from dbtools.snapshot import format as fmt

from support.db import execute
from support.pipeline import (
    HEAD,
    INSERT_USER,
    OLD,
    PRESERVED,
    data_of,
    migrate,
    prod_backups,
    seed_dev,
    seed_stale_prod,
    state,
)
from support.project import Project


@pytest.fixture
def behind(project: Project) -> Project:
    """The demo's starting point: dev at head and seeded, prod at an older migration, stale."""
    migrate(project.dev_url)
    migrate(project.prod_url, OLD)
    seed_dev(project.dev_url)
    seed_stale_prod(project.prod_url)
    return project


def test_full_sync_migrates_copies_and_ends_green(behind: Project) -> None:
    dev_before = state(behind.dev_url)
    result = behind.invoke("full-sync", "--yes", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [(s["name"], s["status"]) for s in data["steps"]] == [
        ("verify", "ok"),
        ("backup", "ok"),
        ("sync-schema", "ok"),
        ("sync-data", "ok"),
        ("check", "ok"),
    ]
    after = state(behind.prod_url)
    assert after["migrations"] == dev_before["migrations"]
    assert after["fingerprint"] == dev_before["fingerprint"]
    assert data_of(behind.prod_url, PRESERVED) == data_of(behind.dev_url, PRESERVED)
    assert all(c["ok"] for c in data["checks"]["checks"])
    # the backup was taken before the schema changed: it is prod at the old migration
    manifest = fmt.read_manifest(fmt.snapshot_dirs(behind.snapshot_dir / "prod")[0])
    assert manifest.migrations[-1] == OLD
    assert data["path"] == str(prod_backups(behind)[0])
    # (g) dev was only read
    assert state(behind.dev_url) == dev_before


def test_full_sync_summary_says_where_the_backup_is_and_how_to_undo(behind: Project) -> None:
    result = behind.invoke("full-sync", "--yes")
    assert result.exit_code == 0, result.output
    assert "full-sync: done" in result.output
    assert f"applied {HEAD}" in result.output
    assert str(prod_backups(behind)[0]) in result.output
    assert "dbtools rollback --yes" in result.output
    assert "FAIL" not in result.output


def test_dry_run_prints_the_plan_and_writes_nothing(behind: Project) -> None:
    before = state(behind.prod_url)
    dev_before = state(behind.dev_url)
    result = behind.invoke("full-sync", "--dry-run")
    assert result.exit_code == 0, result.output
    out = result.output
    assert f"sync-schema would apply on prod: {HEAD}" in out
    assert f"pending migrations on prod: {HEAD}" in out
    assert "pending migrations on dev: none" in out
    assert str(behind.snapshot_dir / "prod") in out
    assert "public.User" in out and "keep prod's rows" in out
    assert state(behind.prod_url) == before
    assert state(behind.dev_url) == dev_before
    assert not behind.snapshot_dir.exists()  # not even a snapshot


def test_stops_at_first_failure_with_next_action(behind: Project) -> None:
    """A check failing in sync-data: migrations and data roll back together (one transaction),
    the check step is skipped, and there is nothing to roll back."""
    execute(behind.dev_url, INSERT_USER, ("ai", "Old", "liam@buildappswith.ai", False, "{CLIENT}"))
    before = state(behind.prod_url)
    result = behind.invoke("full-sync", "--yes", "--json")
    assert result.exit_code == 1
    data = json.loads(result.output)
    status = {s["name"]: s["status"] for s in data["steps"]}
    assert status == {
        "verify": "ok",
        "backup": "ok",
        "sync-schema": "ok",
        "sync-data": "failed",
        "check": "skipped",
    }
    failed = next(s for s in data["steps"] if s["status"] == "failed")
    assert "no_buildappswith_ai" in failed["detail"]
    assert "rolled back together" in failed["next_action"]
    assert "dbtools rollback" not in failed["next_action"]  # nothing committed: nothing to undo
    # prod is exactly what it was: the stale rows AND the old schema (the migration rolled back)
    assert state(behind.prod_url) == before
    assert state(behind.prod_url)["migrations"][-1] == OLD


def test_verify_failure_stops_before_anything_is_written(behind: Project) -> None:
    cfg = behind.root / "setup.cfg"
    cfg.write_text(cfg.read_text().replace(behind.prod_name, "Buildappswith-prod"))
    before = state(behind.prod_url)
    result = behind.invoke("full-sync", "--yes")
    assert result.exit_code == 1, result.output
    assert "full-sync stopped at verify" in result.output
    assert "next: nothing was changed" in result.output
    assert state(behind.prod_url) == before
    assert prod_backups(behind) == []


@pytest.mark.parametrize("command", ["full-sync", "sync-data", "rollback"])
def test_second_sync_is_refused_while_one_holds_the_lock(behind: Project, command: str) -> None:
    """(c) the lock a running sync holds on prod refuses every other prod writer at once."""
    migrate(behind.prod_url)  # so sync-data's schema check is not what refuses it
    if command == "rollback":
        sync.backup(load_settings(behind.root))  # something to roll back to
    backups = prod_backups(behind)
    holder = db.connect(
        db.Target("prod", behind.prod_url, behind.prod_name), purpose="lock", autocommit=True
    )
    before = state(behind.prod_url)
    try:
        with db.advisory_lock(holder, "sync", "sync"):
            result = behind.invoke(command, "--yes")
    finally:
        holder.close()
    assert result.exit_code == 3, result.output
    assert "another dbtools sync is running" in result.output
    assert state(behind.prod_url) == before
    assert prod_backups(behind) == backups


def test_lock_is_on_prod_and_released_after_a_run(behind: Project) -> None:
    result = behind.invoke("full-sync", "--yes")
    assert result.exit_code == 0, result.output
    conn = psycopg2.connect(behind.prod_url)
    try:
        with conn.cursor() as cur:
            # Other databases on the same server may hold their own locks: count prod's only.
            cur.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database = "
                "(SELECT oid FROM pg_database WHERE datname = current_database())"
            )
            assert cur.fetchone() == (0,)
    finally:
        conn.close()
    again = behind.invoke("full-sync", "--yes", "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.output)["steps"][2]["detail"] == "up to date"


def test_guarded_sync_schema_backs_up_only_when_it_will_migrate(behind: Project) -> None:
    settings = load_settings(behind.root)
    run = sync.sync_schema(settings)
    assert run.result.applied == [HEAD]
    assert run.backup is not None
    (backup,) = prod_backups(behind)
    assert fmt.read_manifest(backup).migrations[-1] == OLD  # taken before the migration
    again = sync.sync_schema(settings)
    assert again.result.applied == [] and again.backup is None
    assert prod_backups(behind) == [backup]  # nothing to do: no new backup
