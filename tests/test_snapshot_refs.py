"""Issue #15.2: snapshots named without ambiguity, the same way by every command and by
`dbtools.read_snapshot`: `prod/STAMP`, `dev/STAMP`, `prod:latest`, `dev:latest`, a path, or a
bare stamp only one side holds; and `snapshot list` shows each one's reference, reason, source
env and rollback's target."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from dbtools import read_snapshot
from dbtools.cli import main
from dbtools.config import load_settings
from dbtools.errors import ConfigError
from dbtools.snapshot import format as fmt

from support.archive import rewrite_manifest
from support.db import execute
from support.pgpeer import free_port
from support.pipeline import migrate, seed_dev, seed_stale_prod
from support.project import Project
from support.snapshot import setup_schema, table_digests

COUNT_USERS = 'SELECT count(*) AS n FROM "User"'
DEV_USERS, PROD_USERS = 4, 1  # setup_schema's users in dev; prod holds one of its own
OLD_STAMP = "20000101T000000Z"
MISSING = "19990101T000000Z"


def _path(result: Result) -> Path:
    assert result.exit_code == 0, result.output
    return Path(json.loads(result.output)["path"])


def _errors(result: Result) -> list[str]:
    assert "Traceback" not in result.output
    return [line for line in result.output.splitlines() if line.startswith("error:")]


@pytest.fixture
def shared(project: Project) -> tuple[Project, str]:
    """A dev snapshot and a prod backup under ONE stamp, as a sync often makes them."""
    setup_schema(project.dev_url)
    setup_schema(project.prod_url, data=False)
    execute(project.prod_url, "INSERT INTO \"User\" (id, email) VALUES ('p1', 'prod@example.com')")
    dev = _path(project.invoke("snapshot", "create", "--target", "dev", "--json"))
    prod = _path(project.invoke("backup", "--json"))
    if dev.name != prod.name:  # taken in different seconds: give dev's the backup's stamp
        _restamp(dev, prod.name)
    return project, prod.name


def _restamp(snapshot: Path, stamp: str) -> Path:
    """The snapshot under another stamp, its manifest's created_at made to agree."""
    moment = fmt.parse_stamp(stamp)
    assert moment is not None
    created = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    moved = snapshot.rename(snapshot.parent / stamp)
    rewrite_manifest(moved, lambda data: data.update(created_at=created))
    return moved


def _users(project: Project, ref: str) -> int:
    result = project.invoke("snapshot", "query", ref, COUNT_USERS, "--json")
    assert result.exit_code == 0, (ref, result.output)
    [[n]] = json.loads(result.output)["rows"]
    return int(n)


def test_every_form_names_one_snapshot_in_every_command(shared: tuple[Project, str]) -> None:
    project, stamp = shared
    snaps = project.snapshot_dir
    copy = shutil.copytree(snaps / "dev" / stamp, snaps / "dev" / "copy")
    old_dev = _restamp(copy, OLD_STAMP)  # a stamp only dev holds
    expected = {
        f"dev/{stamp}": (snaps / "dev" / stamp, DEV_USERS),
        f"prod/{stamp}": (snaps / "prod" / stamp, PROD_USERS),
        "dev:latest": (snaps / "dev" / stamp, DEV_USERS),
        "prod:latest": (snaps / "prod" / stamp, PROD_USERS),
        OLD_STAMP: (old_dev, DEV_USERS),
        str(snaps / "prod" / stamp): (snaps / "prod" / stamp, PROD_USERS),
        str(snaps / "prod" / stamp / "manifest.json"): (snaps / "prod" / stamp, PROD_USERS),
    }
    settings = load_settings(project.root)
    for ref, (path, users) in expected.items():
        shown = project.invoke("snapshot", "show", ref, "--json")
        assert shown.exit_code == 0, (ref, shown.output)
        assert json.loads(shown.output)["path"] == str(path.resolve()), ref
        verified = project.invoke("snapshot", "verify", ref)
        assert verified.exit_code == 0, (ref, verified.output)
        assert verified.output.startswith(f"snapshot {path.resolve()} verified: 6 tables"), ref
        assert _users(project, ref) == users, ref
        assert len(read_snapshot(ref, "User", settings=settings)) == users, ref
    # Without settings, read_snapshot reads the archive of the project it is run in.
    assert len(read_snapshot(f"prod/{stamp}", "User")) == PROD_USERS


def test_restore_takes_a_reference(shared: tuple[Project, str]) -> None:
    project, stamp = shared
    restored = project.invoke("restore", f"prod/{stamp}", "--target", "dev", "--yes", "--json")
    assert restored.exit_code == 0, restored.output
    assert json.loads(restored.output)["path"] == str(project.snapshot_dir / "prod" / stamp)
    assert table_digests(project.dev_url)["User"][0] == PROD_USERS


def test_a_stamp_both_sides_hold_is_refused_naming_both(shared: tuple[Project, str]) -> None:
    project, stamp = shared
    line = f"snapshot {stamp} is ambiguous: it names dev/{stamp} and prod/{stamp}; give one of them"
    dev_before, prod_before = table_digests(project.dev_url), table_digests(project.prod_url)
    for cmd in (
        ["snapshot", "show", stamp],
        ["snapshot", "verify", stamp],
        ["snapshot", "query", stamp, COUNT_USERS],
        ["restore", stamp, "--target", "dev", "--yes"],
        ["restore", stamp, "--target", "prod", "--yes"],
    ):
        result = project.invoke(*cmd)
        assert result.exit_code == 2, (cmd, result.output)
        assert _errors(result) == [f"error: {line}"], (cmd, result.output)
        as_json = project.invoke(*cmd, "--json")
        assert as_json.exit_code == 2
        assert json.loads(as_json.output) == {"ok": False, "error": line, "exit_code": 2}
    assert table_digests(project.dev_url) == dev_before
    assert table_digests(project.prod_url) == prod_before
    with pytest.raises(ConfigError) as refused:
        read_snapshot(stamp, "User", settings=load_settings(project.root))
    assert refused.value.message == line and refused.value.exit_code == 2


def test_an_unknown_reference_says_what_was_looked_for_and_where(project: Project) -> None:
    snaps = project.snapshot_dir
    lines = {
        f"prod/{MISSING}": (
            f"snapshot prod/{MISSING} does not exist: no directory prod/{MISSING}, "
            f"no snapshot {MISSING} in {snaps / 'prod'}"
        ),
        MISSING: (
            f"snapshot {MISSING} does not exist: no directory {MISSING}, "
            f"no snapshot {MISSING} in {snaps / 'dev'} or {snaps / 'prod'}"
        ),
        "dev:latest": f"snapshot dev:latest does not exist: none in {snaps / 'dev'}",
        "no/such/snapshot": (
            "snapshot no/such/snapshot does not exist: no directory no/such/snapshot, and it is "
            "not a snapshot reference (dev/STAMP, prod/STAMP, dev:latest, prod:latest or a STAMP)"
        ),
    }
    for ref, line in lines.items():
        for cmd in (
            ["snapshot", "show", ref],
            ["snapshot", "query", ref, COUNT_USERS],
            ["restore", ref, "--target", "dev", "--yes"],
        ):
            result = project.invoke(*cmd)
            assert result.exit_code == 2, (cmd, result.output)
            assert _errors(result) == [f"error: {line}"], (cmd, result.output)
        with pytest.raises(ConfigError, match="does not exist") as missing:
            read_snapshot(ref, "User")
        assert missing.value.message == line


def _damage(snapshot: Path) -> None:
    """Truncate the User table's Parquet file: the snapshot no longer verifies."""
    part = snapshot / next(iter(fmt.read_manifest(snapshot).table("User").files))
    data = part.read_bytes()
    # A new file, not a write through the old one: an unchanged table's file is shared by
    # hard link with the previous snapshot (dedup), and only this snapshot is to break.
    part.unlink()
    part.write_bytes(data[: len(data) // 2])


def test_latest_is_the_newest_snapshot_that_verifies(shared: tuple[Project, str]) -> None:
    project, stamp = shared
    good = project.snapshot_dir / "prod" / stamp
    newer = _path(project.invoke("backup", "--json"))
    assert newer != good
    assert json.loads(project.invoke("snapshot", "show", "prod:latest", "--json").output)[
        "path"
    ] == str(newer.resolve())
    _damage(newer)
    shown = project.invoke("snapshot", "show", "prod:latest", "--json")
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["path"] == str(good.resolve())
    settings = load_settings(project.root)
    assert len(read_snapshot("prod:latest", "User", settings=settings)) == PROD_USERS

    _damage(good)
    none = project.invoke("snapshot", "query", "prod:latest", COUNT_USERS)
    assert none.exit_code == 2, none.output
    assert _errors(none) == [
        "error: snapshot prod:latest does not exist: none in "
        f"{project.snapshot_dir / 'prod'} verifies (2 found)"
    ]


# --- snapshot list ---------------------------------------------------------------------------


def _synced(project: Project) -> dict[str, dict[str, object]]:
    """One committed sync-data, then a plan: the archive holds a backup (rollback's target), a
    sync's dev snapshot and a plan's two snapshots. Returns the listing by reference."""
    migrate(project.dev_url)
    migrate(project.prod_url)
    seed_dev(project.dev_url)
    seed_stale_prod(project.prod_url)
    assert project.invoke("sync-data", "--yes").exit_code == 0
    assert project.invoke("plan").exit_code == 0
    listed = project.invoke("snapshot", "list", "--json")
    assert listed.exit_code == 0, listed.output
    return {s["ref"]: s for s in json.loads(listed.output)["snapshots"]}


def test_list_shows_reference_reason_env_and_rollback_target(project: Project) -> None:
    rows = _synced(project)
    backups = [r for r in rows.values() if r["reason"] == "before sync-data"]
    [backup] = backups
    plans = {r["env"]: r for r in rows.values() if r["reason"] == "plan"}
    assert set(plans) == {"dev", "prod"}  # dev's plan snapshot is not called "manual"
    assert backup["env"] == "prod" and backup["rollback_target"] is True
    assert [r for r in rows.values() if r["rollback_target"]] == [backup]
    for ref, row in rows.items():
        assert ref == f"{row['env']}/{Path(str(row['path'])).name}"
        assert isinstance(row["source"], dict) and row["source"]["database"]

    listed = project.invoke("snapshot", "list", "--json")
    assert json.loads(listed.output)["rollback_target"] == backup["path"]
    text = project.invoke("snapshot", "list").output.splitlines()
    assert text[0].split() == [
        *("snapshot", "env", "reason", "created", "tables", "rows", "size", "migration"),
        *("verified", "rollback"),
    ]
    [marked] = [line.split() for line in text if line.endswith(" target")]
    assert marked[:4] == [backup["ref"], "prod", "before", "sync-data"]
    dev_plan = next(line.split() for line in text if line.startswith(str(plans["dev"]["ref"])))
    assert dev_plan[:3] == [plans["dev"]["ref"], "dev", "plan"]

    # After a rollback, prod's history names no committed write to undo: no marker.
    assert project.invoke("rollback", "--yes").exit_code == 0
    after = json.loads(project.invoke("snapshot", "list", "--json").output)
    assert after["rollback_target"] is None
    assert not any(s["rollback_target"] for s in after["snapshots"])


def _list_with_prod(project: Project, prod_url: str | None, *args: str) -> Result:
    env: dict[str, str | None] = {**project.env, "PROD_DATABASE_URL": prod_url}
    return CliRunner().invoke(main, ["snapshot", "list", *args], env=env)


def test_list_without_prod_marks_nothing_and_still_lists(project: Project) -> None:
    rows = _synced(project)
    [target] = [ref for ref, r in rows.items() if r["rollback_target"]]

    unset = _list_with_prod(project, None, "--json")
    assert unset.exit_code == 0, unset.output
    data = json.loads(unset.output)
    assert {s["ref"] for s in data["snapshots"]} == set(rows)
    assert data["rollback_target"] is None and data["warnings"] == []
    assert not any(s["rollback_target"] for s in data["snapshots"])

    unreachable = f"postgresql://postgres@127.0.0.1:{free_port()}/x"
    down = _list_with_prod(project, unreachable)
    assert down.exit_code == 0, down.output
    assert target in down.stdout and " target" not in down.stdout
    [warning] = down.stderr.splitlines()
    assert warning.startswith(
        "warning: rollback's target is not marked: cannot connect to prod database "
    )
    as_json = json.loads(_list_with_prod(project, unreachable, "--json").output)
    assert as_json["rollback_target"] is None
    assert len(as_json["snapshots"]) == len(rows)
