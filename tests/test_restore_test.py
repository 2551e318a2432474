"""`snapshot verify --restore`: a snapshot is restored into a scratch database that is created
and dropped, and every table's content hash and every sequence is compared (#13.4)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from dbtools.config import load_settings
from dbtools.snapshot import format as fmt
from dbtools.snapshot.restore_test import restore_test

from support.db import SERVER_URL, execute
from support.pipeline import migrate, seed_dev
from support.project import Project


def _scratch_databases() -> list[str]:
    rows = execute(
        SERVER_URL, "SELECT datname FROM pg_database WHERE datname LIKE 'dbtools_rtest_%'"
    )
    return [r[0] for r in rows]


def _dev_snapshot(project: Project) -> Path:
    migrate(project.dev_url)
    seed_dev(project.dev_url)
    execute(project.dev_url, "CREATE SEQUENCE free_seq START 40; SELECT nextval('free_seq')")
    result = project.invoke("snapshot", "create", "--target", "dev", "--json")
    assert result.exit_code == 0, result.output
    return Path(json.loads(result.output)["path"])


def _forge_content_hash(path: Path) -> str:
    """A manifest whose every checksum holds (written by the library, as a faulty exporter
    would have written it) but whose content hash of one table is wrong: only restoring the
    files shows they are not what it promises. Returns that table."""
    manifest = fmt.read_manifest(path)
    table = next(k for k, v in manifest.tables.items() if v.rows > 0)
    manifest.tables[table] = dataclasses.replace(manifest.tables[table], content_hash="v1:0:0")
    fmt.write_manifest(path, manifest)
    assert fmt.verify_dir(path)[1] == []
    return table


def test_a_good_snapshot_restores_exactly(project: Project) -> None:
    path = _dev_snapshot(project)
    before = _scratch_databases()

    got = restore_test(load_settings(), path)

    assert got.ok, got.problems
    manifest = fmt.read_manifest(path)
    assert got.tables == len(manifest.tables) and got.rows == manifest.rows
    assert got.sequences == len(manifest.sequence_values()) > 0
    assert got.seconds > 0
    assert _scratch_databases() == before  # dropped


def test_a_snapshot_whose_rows_do_not_match_its_manifest_fails(project: Project) -> None:
    path = _dev_snapshot(project)
    table = _forge_content_hash(path)
    before = _scratch_databases()

    got = restore_test(load_settings(), path)

    assert not got.ok
    assert any(table in p and "content hash" in p for p in got.problems), got.problems
    assert _scratch_databases() == before


def test_the_cli_reports_the_restore_and_its_time(project: Project) -> None:
    path = _dev_snapshot(project)

    result = project.invoke("snapshot", "verify", "dev:latest", "--restore", "--json")

    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["path"] == str(path) and data["restore"]["ok"] is True
    assert data["restore"]["seconds"] > 0 and data["restore"]["tables"] > 0
    text = project.invoke("snapshot", "verify", str(path), "--restore")
    assert text.exit_code == 0, text.output
    assert "restored exactly into a scratch database" in text.output


def test_the_cli_exits_1_naming_what_did_not_restore(project: Project) -> None:
    path = _dev_snapshot(project)
    table = _forge_content_hash(path)

    result = project.invoke("snapshot", "verify", str(path), "--restore")

    assert result.exit_code == 1, result.output
    assert f"error: snapshot {path} did not restore exactly" in result.output
    assert table in result.output
