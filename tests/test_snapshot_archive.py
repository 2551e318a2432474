"""The archive: list, show, verify, prune (retention, keep-newest, newest verified backup,
leftovers of crashed runs), and the format's publish/verify rules."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from dbtools.cli import main
from dbtools.config import Settings, load_settings
from dbtools.snapshot import archive
from dbtools.snapshot import format as fmt

from support.archive import NOW, fake_snapshot
from support.project import Project
from support.snapshot import setup_schema


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    (tmp_path / "setup.cfg").write_text("[dbtools]\nretention_days = 30\nkeep_min = 1\n")
    return load_settings(tmp_path, {"DBTOOLS_SNAPSHOT_DIR": str(tmp_path / "snaps")})


@pytest.mark.pure
def test_prune_applies_retention_and_keeps_the_restore_point(settings: Settings) -> None:
    snaps = settings.snapshot_dir
    prod_good_old = fake_snapshot(snaps, "prod", 40)
    prod_bad_35 = fake_snapshot(snaps, "prod", 35, corrupt=True)
    prod_bad_31 = fake_snapshot(snaps, "prod", 31, corrupt=True)
    dev_50, dev_45, dev_1 = (fake_snapshot(snaps, "dev", d) for d in (50, 45, 1))
    crashed = snaps / "dev" / f"{fmt.TMP_PREFIX}20250601T000000Z-999999999-abcdef"
    running = snaps / "dev" / f"{fmt.TMP_PREFIX}20250601T000000Z-{os.getpid()}-abcdef"
    half = snaps / "prod" / "20250629T000000Z"
    for d in (crashed, running, half):
        d.mkdir()

    plan = archive.prune(settings, dry_run=True, now=NOW)
    doomed = {Path(d["path"]) for d in plan.deleted}
    assert doomed == {prod_bad_35, dev_50, dev_45, crashed, half}
    assert all(p.exists() for p in doomed)  # a dry run deletes nothing

    result = archive.prune(settings, dry_run=False, now=NOW)
    assert {Path(d["path"]) for d in result.deleted} == doomed
    assert not any(p.exists() for p in doomed)
    for kept in (prod_good_old, prod_bad_31, dev_1, running):
        assert kept.exists()
    reasons = {Path(k["path"]): k["reason"] for k in result.kept}
    assert reasons[prod_good_old] == (
        "newest verified snapshot of database db-prod (source not recorded: an older snapshot)"
    )
    assert reasons[prod_bad_31] == "among the newest 1"


@pytest.mark.pure
def test_newest_verified_skips_damaged_and_names_them(settings: Settings) -> None:
    good = fake_snapshot(settings.snapshot_dir, "prod", 3)
    bad = fake_snapshot(settings.snapshot_dir, "prod", 1, corrupt=True)
    path, failed = archive.newest_verified(settings, "prod")
    assert path == good
    assert [p for p, _ in failed] == [bad]
    assert "schema.sql: checksum mismatch" in failed[0][1][0]


@pytest.mark.pure
def test_list_is_newest_first_and_flags_bad_ones(settings: Settings) -> None:
    old = fake_snapshot(settings.snapshot_dir, "dev", 5)
    new = fake_snapshot(settings.snapshot_dir, "prod", 1, corrupt=True)
    incomplete = settings.snapshot_dir / "dev" / "20250630T110000Z"
    incomplete.mkdir()
    infos = archive.list_snapshots(settings, verify=True)
    assert [i.path for i in infos] == [incomplete, new, old]
    assert [i.verified for i in infos] == [False, False, True]
    assert infos[0].complete is False and "no manifest.json" in infos[0].problems[0]
    assert infos[2].migration_head == "0001_initial"


@pytest.mark.pure
def test_publish_never_overwrites_a_snapshot(settings: Settings) -> None:
    first = fake_snapshot(settings.snapshot_dir, "dev", 2)
    second = fake_snapshot(settings.snapshot_dir, "dev", 2)
    assert first != second and second.name == first.name + "-1"
    assert fmt.parse_stamp(second.name) == fmt.parse_stamp(first.name)
    assert archive.verify_snapshot(first).ok and archive.verify_snapshot(second).ok


@pytest.mark.pure
def test_unlisted_parquet_file_fails_verification(settings: Settings) -> None:
    path = fake_snapshot(settings.snapshot_dir, "dev", 2)
    (path / "public.Smuggled.parquet").write_bytes(b"PAR1")
    result = archive.verify_snapshot(path)
    assert not result.ok
    assert result.problems == ["public.Smuggled.parquet: not listed in the manifest"]


def test_cli_archive_commands(project: Project) -> None:
    setup_schema(project.dev_url)
    created = project.invoke("snapshot", "create", "--target", "dev", "--json")
    assert created.exit_code == 0, created.output
    path = Path(json.loads(created.output)["path"])

    listed = project.invoke("snapshot", "list", "--json")
    assert listed.exit_code == 0, listed.output
    [entry] = json.loads(listed.output)["snapshots"]
    assert entry["path"] == str(path) and entry["verified"] is True
    assert entry["tables"] == 6 and entry["rows"] == 4 + 3 + 2 + 25 + 3 + 1
    text = project.invoke("snapshot", "list")
    assert path.name in text.output and "yes" in text.output

    shown = project.invoke("snapshot", "show", str(path))
    assert shown.exit_code == 0
    assert "public.Counter" in shown.output and "25" in shown.output
    assert f"column types: dbtools snapshot show {path} TABLE" in shown.output
    # Named tables: each column's PostgreSQL type and how an analyst gets it.
    shown = project.invoke("snapshot", "show", str(path), "User")
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    assert any(line.split() == ["roles", '"UserRole"[]', "list<string>"] for line in lines)
    assert any(line.split()[:2] == ["createdAt", "timestamp(3)"] for line in lines)
    assert "public.Counter" not in shown.output
    shown = project.invoke("snapshot", "show", str(path), "BuilderProfile", "--json")
    [entry] = json.loads(shown.output)["tables"]
    assert entry["stored_as"]["badges"] == "list<string>"
    assert entry["column_types"]["portfolioItems"] == "jsonb[]"
    missing = project.invoke("snapshot", "show", str(path), "Nope")
    assert missing.exit_code == 1
    assert missing.output.startswith("error: the snapshot has no table 'Nope' (tables: ")

    verified = project.invoke("snapshot", "verify", path.name)
    assert verified.exit_code == 0 and "verified" in verified.output

    # prune without a terminal and without --yes refuses when it would delete something
    crashed = path.parent / f"{fmt.TMP_PREFIX}20250101T000000Z-999999999-x"
    crashed.mkdir()
    refused = project.invoke("snapshot", "prune")
    assert refused.exit_code == 4 and crashed.exists()
    dry = project.invoke("snapshot", "prune", "--dry-run", "--json")
    assert dry.exit_code == 0 and crashed.exists()
    assert [d["path"] for d in json.loads(dry.output)["deleted"]] == [str(crashed)]
    done = project.invoke("snapshot", "prune", "--yes")
    assert done.exit_code == 0 and not crashed.exists() and path.exists()


@pytest.mark.pure
def test_query_without_duckdb_says_how_to_install(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    path = fake_snapshot(settings.snapshot_dir, "dev", 1)
    monkeypatch.setitem(sys.modules, "duckdb", None)
    monkeypatch.chdir(settings.root)
    result = CliRunner().invoke(
        main,
        ["snapshot", "query", str(path), "SELECT 1"],
        env={"DBTOOLS_SNAPSHOT_DIR": str(settings.snapshot_dir)},
    )
    assert result.exit_code == 2
    assert "pip install" in result.output
