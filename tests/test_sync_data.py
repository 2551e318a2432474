"""`dbtools sync-data`: dev's data into prod in one transaction, after a verified backup.

Also holds the helpers the other sync test modules import (migrate, seed, fingerprint a
database's whole state).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from dbtools import sync
from dbtools.config import load_settings
from dbtools.errors import EXIT_CHECK_FAILED, SnapshotError
from dbtools.snapshot import format as fmt
from dbtools.sync import session

from support.db import execute
from support.pipeline import (
    HEAD,
    INSERT_ACCOUNT,
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
def synced(project: Project) -> Project:
    """dev and prod both at head; dev seeded, prod stale."""
    migrate(project.dev_url)
    migrate(project.prod_url)
    seed_dev(project.dev_url)
    seed_stale_prod(project.prod_url)
    return project


def test_sync_data_copies_dev_keeps_auth_rows_and_reports_counts(synced: Project) -> None:
    dev_before = state(synced.dev_url)
    prod_before = state(synced.prod_url)
    result = synced.invoke("sync-data", "--yes", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)

    # prod now holds dev's data, except the preserved auth tables which kept prod's rows
    assert data_of(synced.prod_url, PRESERVED) == data_of(synced.dev_url, PRESERVED)
    for name in PRESERVED:
        assert state(synced.prod_url)["tables"][name] == prod_before["tables"][name]
    assert execute(synced.prod_url, 'SELECT access_token FROM "Account"') == [
        ("prod-secret-token",)
    ]
    # before -> after per table
    tables = {t["table"]: t for t in data["tables"]}
    assert tables["public.User"]["rows_before"] == 1 and tables["public.User"]["rows_after"] == 7
    assert tables["public.Account"]["preserved"] is True
    assert data["checks"]["ok"] is True
    # the backup ("path") verifies and holds prod as it was before
    backup = Path(data["path"])
    assert fmt.verify_dir(backup)[1] == []
    manifest = fmt.read_manifest(backup)
    assert manifest.env == "prod" and manifest.tables["public.User"].rows == 1
    # (g) dev was only read
    assert state(synced.dev_url) == dev_before


def test_sync_data_human_summary(synced: Project) -> None:
    result = synced.invoke("sync-data", "--yes")
    assert result.exit_code == 0, result.output
    assert re.search(r"public\.BuilderProfile +1 +-> +6", result.output), result.output
    assert "kept prod's rows" in result.output
    assert "dbtools rollback --yes" in result.output
    assert str(prod_backups(synced)[-1]) in result.output


def test_failing_check_rolls_the_load_back(synced: Project) -> None:
    """(a) dev holds data that breaks a check: nothing of the load reaches prod."""
    execute(
        synced.dev_url,
        INSERT_USER,
        ("ai", "Old Liam", "liam@buildappswith.ai", False, "{CLIENT}"),
    )
    before = state(synced.prod_url)
    result = synced.invoke("sync-data", "--yes")
    assert result.exit_code == 1, result.output
    assert "no_buildappswith_ai" in result.output
    assert "rolled back" in result.output
    assert state(synced.prod_url) == before


def test_schema_mismatch_refused_before_any_backup(project: Project) -> None:
    migrate(project.dev_url)
    migrate(project.prod_url, OLD)
    seed_dev(project.dev_url)
    before = state(project.prod_url)
    result = project.invoke("sync-data", "--yes")
    assert result.exit_code == 3, result.output
    assert "schemas do not match" in result.output
    assert HEAD in result.output
    assert "sync-schema" in result.output
    assert state(project.prod_url) == before
    assert prod_backups(project) == []


def test_preserved_rows_whose_user_is_gone_fail_the_load(synced: Project) -> None:
    execute(
        synced.prod_url, INSERT_USER, ("ghost", "Ghost", "ghost@example.com", False, "{CLIENT}")
    )
    execute(synced.prod_url, INSERT_ACCOUNT, ("acc-ghost", "ghost", "google", "g-1", "t"))
    before = state(synced.prod_url)
    result = synced.invoke("sync-data", "--yes")
    assert result.exit_code == 1, result.output
    assert "public.Account" in result.output and "nothing was changed" in result.output
    assert state(synced.prod_url) == before


def test_without_terminal_and_without_yes_refuses(synced: Project) -> None:
    before = state(synced.prod_url)
    result = synced.invoke("sync-data")
    assert result.exit_code == 4
    assert "--yes" in result.output
    assert state(synced.prod_url) == before
    assert prod_backups(synced) == []


def test_dry_run_writes_nothing(synced: Project) -> None:
    before = state(synced.prod_url)
    result = synced.invoke("sync-data", "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)["plan"]
    users = next(t for t in plan["tables"] if t["table"] == "public.User")
    assert (users["prod_rows"], users["dev_rows"]) == (1, 7)
    assert state(synced.prod_url) == before
    assert not synced.snapshot_dir.exists()


# (d) no path writes prod without a fresh verified backup ----------------------------------


def test_unwritable_archive_means_prod_untouched(synced: Project) -> None:
    synced.snapshot_dir.parent.mkdir(parents=True, exist_ok=True)
    synced.snapshot_dir.write_text("not a directory")
    before = state(synced.prod_url)
    failed = f"error: snapshot of prod failed writing {synced.snapshot_dir / 'prod'}"
    for command in (["sync-data", "--yes"], ["full-sync", "--yes"]):
        result = synced.invoke(*command)
        assert result.exit_code != 0, result.output
        # exit 1: the backup (a snapshot) failed; the one error line says where and why
        assert result.exit_code == EXIT_CHECK_FAILED, (command, result.output)
        assert result.output.rstrip().splitlines()[-1].startswith(failed), result.output
        assert "Not a directory" in result.output
        assert "Traceback" not in result.output
        if command[0] == "full-sync":
            assert "full-sync stopped at backup" in result.output
            assert "prod was not changed" in result.output
        assert state(synced.prod_url) == before, command
        assert synced.snapshot_dir.read_text() == "not a directory"  # nothing written there


def test_backup_that_does_not_verify_stops_the_sync(
    synced: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The backup is verified after it is written: a corrupted one stops everything."""
    real = session.create_snapshot

    def corrupting(settings: Any, env: str, **kw: Any) -> Any:
        snap = real(settings, env, **kw)
        if env == "prod":
            victim = next(snap.path.glob("*User*.parquet"))
            victim.write_bytes(victim.read_bytes()[:-20] + b"\0" * 20)
        return snap

    monkeypatch.setattr(session, "create_snapshot", corrupting)
    before = state(synced.prod_url)
    with pytest.raises(SnapshotError, match="does not verify"):
        sync.sync_data(load_settings(synced.root))
    assert state(synced.prod_url) == before
