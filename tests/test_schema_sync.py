"""`dbtools sync-schema` and `dbtools diff`: dev first, prod only what dev has, nothing else."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable

import pytest

from dbtools import migrations, schema_sync, sync
from dbtools.config import load_settings
from dbtools.errors import MigrationError, SafetyError
from dbtools.migrations.lock import locked
from dbtools.migrations.session import open_session

from support.db import applied_migrations, execute, schema_objects
from support.project import REPO, Project

sys.path.insert(0, str(REPO / "scripts"))
from seed_demo import seed_stale_prod

MIGRATIONS = REPO / "migrations"
HEAD = migrations.migration_ids(MIGRATIONS)


def _sync_schema(before_write: Callable[[], None]) -> schema_sync.SchemaSyncResult:
    """schema_sync.sync_schema with the test's own backup hook, inside the write session that
    every prod writer needs (sync.guarded_prod_write: the lock; the hook replaces its backup)."""
    settings = load_settings()
    with sync.guarded_prod_write(settings, what="sync-schema", progress=None):
        return schema_sync.sync_schema(settings, before_write=before_write)


def test_sync_applies_to_prod_what_dev_has_and_keeps_prod_data(project: Project) -> None:
    migrations.apply_all(project.dev_url, MIGRATIONS)
    migrations.apply_all(project.prod_url, MIGRATIONS, upto="0002_marketplace_fields")
    seed_stale_prod(project.prod_url)
    calls: list[str] = []

    result = _sync_schema(before_write=lambda: calls.append("backup"))
    assert result.applied == ["0003_rename_user_image"]
    assert calls == ["backup"]
    assert result.schema_match is True
    assert applied_migrations(project.prod_url) == HEAD
    assert schema_objects(project.prod_url) == schema_objects(project.dev_url)
    assert execute(project.prod_url, 'SELECT email, image FROM "User"') == [
        ("liam@buildappswith.ai", "https://images.buildappswith.com/u/liam.png")
    ]

    # up to date: nothing applied, and the backup hook is not called
    again = _sync_schema(before_write=lambda: calls.append("x"))
    assert again.applied == [] and calls == ["backup"]


def test_cli_sync_schema_backs_up_prod_and_says_what_it_applied(project: Project) -> None:
    migrations.apply_all(project.dev_url, MIGRATIONS)
    migrations.apply_all(project.prod_url, MIGRATIONS, upto="0002_marketplace_fields")
    seed_stale_prod(project.prod_url)
    result = project.invoke("sync-schema", "--yes")
    assert result.exit_code == 0, result.output
    assert "applied to prod database" in result.output
    assert "0003_rename_user_image" in result.output
    assert "backed up prod first" in result.output
    assert list(project.snapshot_dir.glob("prod/*/manifest.json"))
    assert applied_migrations(project.prod_url) == HEAD

    result = project.invoke("sync-schema", "--yes", "--json")
    assert result.exit_code == 0
    assert json.loads(result.output)["applied"] == []


def test_refuses_when_prod_would_get_a_migration_dev_has_not_applied(project: Project) -> None:
    migrations.apply_all(project.dev_url, MIGRATIONS, upto="0002_marketplace_fields")
    migrations.apply_all(project.prod_url, MIGRATIONS, upto="0001_initial")
    before = schema_objects(project.prod_url)
    calls: list[str] = []
    with pytest.raises(SafetyError, match="0003_rename_user_image") as info:
        _sync_schema(before_write=lambda: calls.append("x"))
    assert "0002_marketplace_fields" not in str(info.value)
    assert calls == []
    assert schema_objects(project.prod_url) == before
    assert applied_migrations(project.prod_url) == HEAD[:1]

    result = project.invoke("sync-schema", "--yes")
    assert result.exit_code == 3
    assert "not applied on dev: 0003_rename_user_image" in result.output


def test_dry_run_prints_the_sql_and_changes_nothing(project: Project) -> None:
    migrations.apply_all(project.dev_url, MIGRATIONS)
    result = project.invoke("sync-schema", "--dry-run")
    assert result.exit_code == 0, result.output
    assert 'CREATE TABLE "User"' in result.output
    assert 'RENAME COLUMN "imageUrl" TO "image"' in result.output
    # not even yoyo's own tables were created on prod
    assert execute(
        project.prod_url, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
    ) == [(0,)]


def test_a_failing_backup_hook_stops_before_prod_is_touched(project: Project) -> None:
    migrations.apply_all(project.dev_url, MIGRATIONS)
    migrations.apply_all(project.prod_url, MIGRATIONS, upto="0002_marketplace_fields")
    before = schema_objects(project.prod_url)

    def broken_backup() -> None:
        raise MigrationError("backup did not verify")

    with pytest.raises(MigrationError, match="backup did not verify"):
        _sync_schema(before_write=broken_backup)
    assert schema_objects(project.prod_url) == before
    assert applied_migrations(project.prod_url) == HEAD[:2]


def test_refuses_when_prod_is_not_named_as_expected(project: Project) -> None:
    migrations.apply_all(project.dev_url, MIGRATIONS)
    project.env["DBTOOLS_PROD_DATABASE"] = "Buildappswith-prod"
    result = project.invoke("sync-schema", "--yes")
    assert result.exit_code == 3
    assert "expected 'Buildappswith-prod'" in result.output
    assert applied_migrations(project.prod_url) == []


def test_refuses_when_dev_and_prod_are_one_database(project: Project) -> None:
    migrations.apply_all(project.dev_url, MIGRATIONS)
    project.env["PROD_DATABASE_URL"] = project.dev_url.replace("127.0.0.1", "localhost")
    project.env["DBTOOLS_PROD_DATABASE"] = project.dev_name
    result = project.invoke("sync-schema", "--yes")
    assert result.exit_code == 3
    assert "same database" in result.output


def test_refuses_on_drift_of_an_applied_file(project: Project) -> None:
    own = project.root / "migrations"
    shutil.copytree(MIGRATIONS, own)
    cfg = project.root / "setup.cfg"
    cfg.write_text(
        cfg.read_text().replace(f"migrations_dir = {MIGRATIONS}", f"migrations_dir = {own}")
    )
    migrations.apply_all(project.dev_url, own)
    migrations.apply_all(project.prod_url, own, upto="0002_marketplace_fields")
    path = own / "0001_initial.sql"
    path.write_text(path.read_text().replace('"name" TEXT,', '"name" TEXT NOT NULL,', 1))
    result = project.invoke("sync-schema", "--yes")
    assert result.exit_code == 1
    assert "0001_initial" in result.output and "changed" in result.output
    assert applied_migrations(project.prod_url) == HEAD[:2]


def test_a_hand_made_alter_on_prod_shows_up_by_name_in_diff(project: Project) -> None:
    migrations.apply_all(project.dev_url, MIGRATIONS)
    migrations.apply_all(project.prod_url, MIGRATIONS)
    result = project.invoke("diff")
    assert result.exit_code == 0, result.output
    assert "schema: identical" in result.output

    execute(project.prod_url, 'ALTER TABLE "BuilderProfile" ADD COLUMN "hotfix" text')
    execute(project.prod_url, 'ALTER TABLE "User" ALTER COLUMN "name" SET NOT NULL')
    result = project.invoke("diff")
    assert result.exit_code == 1
    assert "only in prod: column public.BuilderProfile.hotfix" in result.output
    assert "differs: column public.User.name" in result.output

    data = json.loads(project.invoke("diff", "--json").output)
    assert data["differs"] is True
    assert data["dev_fingerprint"] != data["prod_fingerprint"]


def test_diff_reports_row_counts_and_migrations(project: Project) -> None:
    migrations.apply_all(project.dev_url, MIGRATIONS)
    migrations.apply_all(project.prod_url, MIGRATIONS, upto="0002_marketplace_fields")
    seed_stale_prod(project.prod_url)
    data = json.loads(project.invoke("diff", "--json").output)
    assert data["migrations_only_dev"] == ["0003_rename_user_image"]
    assert data["row_counts"]["public.User"] == {"dev": 0, "prod": 1}
    assert "only in dev: column public.User.image" in data["schema_lines"]


def test_sync_after_hand_made_change_reports_the_mismatch(project: Project) -> None:
    migrations.apply_all(project.dev_url, MIGRATIONS)
    migrations.apply_all(project.prod_url, MIGRATIONS, upto="0002_marketplace_fields")
    execute(project.prod_url, 'CREATE INDEX "handmade_idx" ON "Booking"("pathway")')
    result = project.invoke("sync-schema", "--yes", "--json")
    assert result.exit_code == 1
    data = json.loads(result.output)
    assert data["applied"] == ["0003_rename_user_image"]
    assert data["schema_match"] is False
    assert "only in prod: index public.handmade_idx" in data["differences"]


def test_up_to_date_prod_with_a_hand_made_change_is_not_ok(project: Project) -> None:
    migrations.apply_all(project.dev_url, MIGRATIONS)
    migrations.apply_all(project.prod_url, MIGRATIONS)
    assert project.invoke("sync-schema", "--yes").exit_code == 0
    execute(project.prod_url, 'ALTER TABLE "Skill" DROP COLUMN "pathways"')
    result = project.invoke("sync-schema", "--yes")
    assert result.exit_code == 1
    assert "up to date" in result.output
    assert "only in dev: column public.Skill.pathways" in result.output


def test_concurrent_sync_fails_clearly(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBTOOLS_LOCK_TIMEOUT", "1")
    migrations.apply_all(project.dev_url, MIGRATIONS)
    from dbtools import db

    t = db.Target("prod", project.prod_url, project.prod_name)
    with open_session(t, MIGRATIONS) as s, locked(s, 1):
        result = project.invoke("sync-schema", "--yes")
    assert result.exit_code == 3
    assert "another dbtools migration run holds the lock" in result.output
    assert applied_migrations(project.prod_url) == []
