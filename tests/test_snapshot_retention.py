"""Backups belong to a database, are private, and survive pruning when rollback needs them.

(#9.1) every manifest records its source database; rollback's choice considers only verified
backups of the database being rolled back. (#9.9) the archive is 0700/0600 whatever the umask,
and verify/list warn when it is not. (#9.10) prune never deletes rollback's target nor any
database's newest verified backup, says why it keeps each snapshot, and a killed prune never
leaves a half-deleted snapshot.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import psycopg2
import pytest

from dbtools import db
from dbtools.config import Settings, load_settings
from dbtools.snapshot import archive
from dbtools.snapshot import format as fmt

from support.archive import NOW, fake_snapshot
from support.project import REPO, Project
from support.snapshot import setup_schema

PROD = {"system_identifier": "7300000000000000001", "database_oid": 16384, "database": "app"}
DEV = {"system_identifier": "7300000000000000001", "database_oid": 16385, "database": "app_dev"}
OTHER_CLUSTER = {**PROD, "system_identifier": "7300000000000000002"}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    (tmp_path / "setup.cfg").write_text("[dbtools]\nretention_days = 30\nkeep_min = 1\n")
    return load_settings(tmp_path, {"DBTOOLS_SNAPSHOT_DIR": str(tmp_path / "snaps")})


# --- #9.1 the source of every snapshot -----------------------------------------------------


def test_snapshot_records_the_identity_of_its_database(project: Project) -> None:
    setup_schema(project.dev_url)
    created = project.invoke("snapshot", "create", "--target", "dev", "--json")
    assert created.exit_code == 0, created.output
    manifest = fmt.read_manifest(Path(json.loads(created.output)["path"]))
    conn = psycopg2.connect(project.dev_url)
    try:
        ident = db.identity(conn)
    finally:
        conn.close()
    assert ident.system_identifier  # the test server exposes it
    assert manifest.source == {
        "system_identifier": ident.system_identifier,
        "database_oid": ident.database_oid,
        "database": project.dev_name,
    }
    shown = project.invoke("snapshot", "show", json.loads(created.output)["path"], "--json")
    assert json.loads(shown.output)["source"] == manifest.source


@pytest.mark.pure
def test_rollback_target_is_the_newest_verified_backup_of_that_database(
    settings: Settings,
) -> None:
    snaps = settings.snapshot_dir
    own_old = fake_snapshot(snaps, "prod", 9, source=PROD, reason="before sync-data")
    own = fake_snapshot(snaps, "prod", 7, source=PROD, reason="before full-sync")
    dev_in_prod = fake_snapshot(snaps, "prod", 6, source=DEV, reason="before sync-data")
    other = fake_snapshot(snaps, "prod", 5, source=OTHER_CLUSTER)
    unknown = fake_snapshot(snaps, "prod", 4)
    by_rollback = fake_snapshot(snaps, "prod", 3, source=PROD, reason=fmt.ROLLBACK_REASON)
    damaged = fake_snapshot(snaps, "prod", 2, source=PROD, corrupt=True)

    choice = archive.rollback_target(settings, PROD)
    assert choice.target == own
    assert [p for p, _ in choice.failed] == [damaged]
    assert "schema.sql: checksum mismatch" in choice.failed[0][1][0]
    assert dict(choice.skipped) == {
        by_rollback: "taken before rollback: the state it replaced",
        unknown: "not known to be a backup: database db-prod (source not recorded: an older "
        "snapshot)",
        other: "another database's snapshot: database app (oid 16384, system 7300000000000000002)",
        dev_in_prod: "another database's snapshot: database app_dev (oid 16385, system "
        "7300000000000000001)",
    }
    assert [i.path for i in archive.backups_of(settings, "prod", PROD)] == [
        damaged,
        by_rollback,
        own,
        own_old,
    ]
    # The dev database's own backups are its, and only its.
    assert archive.rollback_target(settings, DEV).target == dev_in_prod
    # Nothing of an unknown database is ever a target.
    stranger = {**PROD, "database_oid": 99}
    assert archive.rollback_target(settings, stranger).target is None
    # newest_verified keeps working for its callers (no source filter).
    assert archive.newest_verified(settings, "prod") == (by_rollback, choice.failed)


@pytest.mark.pure
def test_same_source_needs_system_identifier_and_oid(settings: Settings) -> None:
    assert fmt.same_source(
        PROD, db.Identity("app", "15", 150000, PROD["system_identifier"], 16384, False, "u")
    )
    assert not fmt.same_source(PROD, OTHER_CLUSTER)
    assert not fmt.same_source(PROD, {**PROD, "database_oid": 1})
    assert not fmt.same_source(None, PROD)
    hidden = {**PROD, "system_identifier": None}  # pg_control_system() revoked
    assert fmt.same_source(hidden, hidden)
    assert not fmt.same_source(hidden, {**hidden, "database": "other"})
    assert not fmt.same_source(hidden, PROD)


# --- #9.9 a private archive ------------------------------------------------------------------


@pytest.fixture(params=[0o000, 0o022], ids=["umask000", "umask022"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def _modes(root: Path) -> dict[str, int]:
    out = {".": stat.S_IMODE(root.stat().st_mode)}
    for p in root.rglob("*"):
        out[p.relative_to(root).as_posix()] = stat.S_IMODE(p.lstat().st_mode)
    return out


def test_archive_is_private_whatever_the_umask(project: Project, umask: int) -> None:
    setup_schema(project.dev_url)
    for _ in range(2):  # the second run finds the archive folders already there
        created = project.invoke("snapshot", "create", "--target", "dev")
        assert created.exit_code == 0, created.output
    modes = _modes(project.snapshot_dir)
    assert len(modes) > 10
    wrong = {
        p: oct(m)
        for p, m in modes.items()
        if m != (0o700 if (project.snapshot_dir / p).is_dir() else 0o600)
    }
    assert wrong == {}
    listed = project.invoke("snapshot", "list")
    assert listed.exit_code == 0 and "warning" not in listed.output


@pytest.mark.pure
def test_build_directory_is_private_before_any_file(tmp_path: Path, umask: int) -> None:
    """The build directory and the archive folders above it are 0700 the moment they exist;
    a file another module writes into it is made 0600 by publish, before the rename."""
    archive_dir = tmp_path / "new" / "snaps"
    env_dir = archive_dir / "prod"
    temp = fmt.new_temp_dir(env_dir)
    assert list(temp.iterdir()) == []
    for folder in (tmp_path / "new", archive_dir, env_dir, temp):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    (temp / "public.T").mkdir()  # as export.py makes a part folder, under this umask
    (temp / "public.T" / "part-00000.parquet").write_bytes(b"x")
    (temp / fmt.SCHEMA_SQL).write_text("-- x\n")
    assert stat.S_IMODE((temp / fmt.SCHEMA_SQL).stat().st_mode) == 0o666 & ~umask
    final = fmt.publish(temp, env_dir, NOW)
    assert {p: oct(m) for p, m in _modes(final).items()} == {
        ".": oct(0o700),
        "public.T": oct(0o700),
        "public.T/part-00000.parquet": oct(0o600),
        fmt.SCHEMA_SQL: oct(0o600),
    }


def test_verify_and_list_warn_about_an_exposed_archive(project: Project) -> None:
    setup_schema(project.dev_url)
    created = project.invoke("snapshot", "create", "--target", "dev", "--json")
    path = Path(json.loads(created.output)["path"])
    rel = next(iter(fmt.read_manifest(path).table("User").files))
    os.chmod(path / rel, 0o644)
    os.chmod(path, 0o755)
    verify = project.invoke("snapshot", "verify", str(path))
    assert verify.exit_code == 0  # a warning, not a refusal
    assert (
        f"warning: snapshot {path} can be read or written by other users ({path} has mode 0755 "
        f"and 1 more); it holds prod's data: fix with `chmod -R go-rwx {path}`"
    ) in verify.output.splitlines()
    listed = project.invoke("snapshot", "list", "--json")
    root = project.snapshot_dir
    assert json.loads(listed.output)["warnings"] == [
        f"the snapshot archive {root} can be read or written by other users ({path} has mode "
        f"0755 and 1 more); it holds prod's data: fix with `chmod -R go-rwx {root}`"
    ]
    os.chmod(root, 0o755)
    verify = project.invoke("snapshot", "verify", str(path), "--json")
    assert json.loads(verify.output)["warnings"][0].startswith(
        f"the archive folder {root} can be read or written by other users"
    )
    subprocess.run(["chmod", "-R", "go-rwx", str(root)], check=True)  # the advice works
    assert (
        json.loads(project.invoke("snapshot", "verify", str(path), "--json").output)["warnings"]
        == []
    )
    assert "warning" not in project.invoke("snapshot", "list").output


# --- #9.10 retention keeps what rollback needs --------------------------------------------------


@pytest.mark.pure
def test_prune_keeps_rollbacks_target_over_backups_taken_by_rollbacks(tmp_path: Path) -> None:
    """The issue's case: three recent backups taken by rollbacks, and the one taken before a
    sync, all past retention: the sync one is what rollback restores; it stays."""
    (tmp_path / "setup.cfg").write_text("[dbtools]\nretention_days = 30\nkeep_min = 3\n")
    settings = load_settings(tmp_path, {"DBTOOLS_SNAPSHOT_DIR": str(tmp_path / "snaps")})
    snaps = settings.snapshot_dir
    older = fake_snapshot(snaps, "prod", 50, source=PROD, reason="before sync-data")
    target = fake_snapshot(snaps, "prod", 40, source=PROD, reason="before sync-data")
    by_rollback = [
        fake_snapshot(snaps, "prod", d, source=PROD, reason=fmt.ROLLBACK_REASON)
        for d in (35, 33, 31)
    ]
    result = archive.prune(settings, dry_run=False, now=NOW)
    who = "database app (oid 16384, system 7300000000000000001)"
    assert [d["path"] for d in result.deleted] == [str(older)]
    reasons = {Path(k["path"]): k["reason"] for k in result.kept}
    assert reasons[target] == f"rollback's target for {who}"
    assert reasons[by_rollback[-1]] == f"among the newest 3; newest verified snapshot of {who}"
    assert target.exists() and not older.exists()
    assert archive.rollback_target(settings, PROD).target == target


@pytest.mark.pure
def test_prune_keeps_each_databases_newest_verified_and_what_the_caller_protects(
    settings: Settings,
) -> None:
    snaps = settings.snapshot_dir
    prod_old = fake_snapshot(snaps, "prod", 60, source=PROD)
    prod_new = fake_snapshot(snaps, "prod", 45, source=PROD)
    other_damaged = fake_snapshot(snaps, "prod", 35, source=OTHER_CLUSTER, corrupt=True)
    other_good = fake_snapshot(snaps, "prod", 40, source=OTHER_CLUSTER)
    newest = fake_snapshot(snaps, "prod", 33, source=DEV)
    protected = fake_snapshot(snaps, "dev", 90, source=DEV)
    dev_new = fake_snapshot(snaps, "dev", 80, source=DEV)

    plan = archive.prune(settings, dry_run=True, now=NOW, protect=(protected,))
    assert {Path(d["path"]) for d in plan.deleted} == {prod_old, other_damaged}
    reasons = {Path(k["path"]): k["reason"] for k in plan.kept}
    assert reasons[prod_new] == (
        "newest verified snapshot of database app (oid 16384, system 7300000000000000001); "
        "rollback's target for database app (oid 16384, system 7300000000000000001)"
    )
    assert reasons[other_good].startswith(
        "newest verified snapshot of database app (oid 16384, system 7300000000000000002)"
    )
    assert reasons[newest].startswith("among the newest 1; newest verified snapshot of")
    assert reasons[protected] == "rollback's target, as prod's history records it"
    assert reasons[dev_new].startswith("among the newest 1")
    assert all(p.exists() for p in (prod_old, other_damaged))  # a dry run


def test_prune_dry_run_says_why_each_snapshot_stays(project: Project) -> None:
    snaps = project.snapshot_dir
    kept = fake_snapshot(snaps, "prod", 400, source=PROD)
    text = project.invoke("snapshot", "prune", "--dry-run")
    assert text.exit_code == 0, text.output
    assert text.output.splitlines() == [
        f"keep {kept} (among the newest 3; newest verified snapshot of database app (oid "
        "16384, system 7300000000000000001); rollback's target for database app (oid 16384, "
        "system 7300000000000000001))",
        "would delete 0, kept 1",
    ]


def test_killed_prune_leaves_no_half_deleted_snapshot(project: Project) -> None:
    snaps = project.snapshot_dir
    (project.root / "setup.cfg").write_text(
        (project.root / "setup.cfg").read_text() + "keep_min = 1\nretention_days = 30\n"
    )
    old = [fake_snapshot(snaps, "dev", d, source=DEV) for d in (900, 800)]
    fake_snapshot(snaps, "dev", 1, source=DEV)
    env = {**os.environ, **{k: v for k, v in project.env.items() if v}}
    env.pop("DBTOOLS_DEV_DATABASE", None)
    env.pop("DBTOOLS_PROD_DATABASE", None)
    env["DBTOOLS_TEST_PAUSE"] = "prune.delete=600"
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.Popen(
        [sys.executable, "-m", "dbtools", "snapshot", "prune", "--yes"],
        cwd=project.root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline().decode()
        assert line.strip() == "dbtools-test: paused at prune.delete", line
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # Killed before its first delete: every snapshot is whole and still verifies.
    assert all(archive.verify_snapshot(p).ok for p in old)
    # A delete killed midway leaves a hidden leftover, never a half snapshot under a stamp.
    leftover = snaps / "dev" / f"{fmt.TMP_PREFIX}pruned-999999999-{old[0].name}"
    os.rename(old[0], leftover)
    (leftover / fmt.MANIFEST).unlink()
    listed = project.invoke("snapshot", "list", "--json")
    assert all(Path(s["path"]) != leftover for s in json.loads(listed.output)["snapshots"])
    done = project.invoke("snapshot", "prune", "--yes", "--json")
    assert done.exit_code == 0, done.output
    deleted = {d["path"]: d["reason"] for d in json.loads(done.output)["deleted"]}
    assert deleted == {
        str(leftover): "leftover of a crashed run",
        str(old[1]): "older than 30 days",
    }
    assert sorted(p.name for p in (snaps / "dev").iterdir()) == [
        fmt.stamp_of(NOW - timedelta(days=1))
    ]
