"""The archive in object storage (`snapshot_dir = s3://bucket/prefix`, #13 item 1): every
archive command against moto's S3 server over real HTTP, as against a bucket."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import signal
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pytest

from dbtools import read_snapshot
from dbtools.config import load_settings
from dbtools.config.archive import parse_s3
from dbtools.errors import ConfigError, SnapshotError
from dbtools.snapshot import encryption, store
from dbtools.snapshot import format as fmt
from dbtools.snapshot.parquet_files import NO_COLUMNS_FIELD, PartWriter
from dbtools.snapshot.retention import prune
from dbtools.snapshot.upload import RemoteBuild

from support.db import execute, no_writer_running
from support.diverged import synced_digests
from support.pipeline import OLD, migrate, seed_dev, seed_stale_prod, state
from support.processes import cli_env, start_cli, wait_marker
from support.project import Project, configure
from support.s3 import Bucket, free_port, moto_server
from support.snapshot import table_digests

PREFIX = "archive"


def _seeded(project: Project) -> None:
    migrate(project.dev_url)
    seed_dev(project.dev_url)


def _ok(project: Project, *args: str) -> dict:
    result = project.invoke(*args, "--json")
    assert result.exit_code == 0, result.output
    # No command ever shows the secret key (nor the private folder standing for the bucket).
    assert os.environ["AWS_SECRET_ACCESS_KEY"] not in result.output
    assert "dbtools-archive-" not in result.output
    return json.loads(result.output)


def test_a_snapshot_lands_in_the_bucket_and_every_reader_sees_it(
    s3_project: tuple[Project, Bucket],
) -> None:
    project, bucket = s3_project
    _seeded(project)
    made = _ok(project, "snapshot", "create", "--target", "dev")
    stamp = made["path"].rsplit("/", 1)[1]
    assert made["path"] == f"s3://{bucket.name}/{PREFIX}/dev/{stamp}"
    keys = bucket.keys(f"{PREFIX}/dev/{stamp}")
    assert "manifest.json" in keys and "schema.sql" in keys
    assert any(k.endswith(".parquet") for k in keys)
    assert not (project.root / "snapshots").exists()  # nothing written locally
    # Streamed: no Parquet file ever lay in the private folder that stands for the bucket.
    assert not list(load_settings().snapshot_dir.rglob("*.parquet"))

    listed = _ok(project, "snapshot", "list")
    assert [s["ref"] for s in listed["snapshots"]] == [f"dev/{stamp}"]
    assert listed["snapshots"][0]["path"] == made["path"]
    shown = _ok(project, "snapshot", "show", f"dev/{stamp}")
    assert shown["rows"] == made["rows"]
    verified = _ok(project, "snapshot", "verify", made["path"])
    assert verified["ok"], verified


def test_verify_restore_query_and_read_snapshot_read_the_bucket(
    s3_project: tuple[Project, Bucket],
) -> None:
    project, _ = s3_project
    _seeded(project)
    made = _ok(project, "snapshot", "create", "--target", "dev")
    restored = _ok(project, "snapshot", "verify", "dev:latest", "--restore")
    assert restored["ok"] and restored["restore"]["ok"] is True, restored
    assert restored["path"] == restored["restore"]["path"] == made["path"]

    users = table_digests(project.dev_url, ["User"])["User"][0]
    queried = _ok(project, "snapshot", "query", made["path"], 'SELECT count(*) AS n FROM "User"')
    assert queried["rows"] == [[users]] or queried["rows"] == [{"n": users}], queried
    frame = read_snapshot("dev:latest", "User")
    assert len(frame) == users > 0

    # restore from the bucket: dev changed after the snapshot is back to it exactly.
    before = state(project.dev_url)
    execute(project.dev_url, "UPDATE \"User\" SET name = 'changed' WHERE id = 'liam'")
    assert state(project.dev_url) != before
    back = project.invoke("restore", made["path"], "--target", "dev", "--yes")
    assert back.exit_code == 0, back.output
    assert made["path"] in back.output
    assert state(project.dev_url) == before


def test_an_unchanged_second_backup_uploads_no_data_file(
    s3_project: tuple[Project, Bucket],
) -> None:
    project, bucket = s3_project
    _seeded(project)
    no_writer_running()
    first = _ok(project, "snapshot", "create", "--target", "dev")
    no_writer_running()
    second = _ok(project, "snapshot", "create", "--target", "dev")
    assert second["tables_reused"] and second["bytes_reused"] > 0
    stamp = second["path"].rsplit("/", 1)[1]
    own = bucket.keys(f"{PREFIX}/dev/{stamp}")
    assert sorted(own) == ["manifest.json", "schema.sql"]  # no Parquet object at all
    assert second["bytes_written"] == sum(own.values())
    # Its files are the first snapshot's, and every reader finds them there.
    assert _ok(project, "snapshot", "verify", second["path"])["ok"]
    frames = [read_snapshot(ref, "User") for ref in (first["path"], second["path"])]
    assert frames[0].equals(frames[1])


def _backdated(project: Project, bucket: Bucket, stamp: str) -> None:
    """A crashed upload: objects under a stamp's prefix, no manifest.json."""
    with bucket.fs.open_output_stream(f"{bucket.name}/{PREFIX}/prod/{stamp}/x.User.parquet") as f:
        f.write(b"half a file")


def test_prune_drops_crashed_uploads_and_keeps_what_kept_snapshots_refer_to(
    s3_project: tuple[Project, Bucket],
) -> None:
    project, bucket = s3_project
    configure(project, "keep_min = 1\nretention_days = 1")
    _seeded(project)
    no_writer_running()
    first = _ok(project, "snapshot", "create", "--target", "dev")
    no_writer_running()
    second = _ok(project, "snapshot", "create", "--target", "dev")
    assert second["tables_reused"]
    _backdated(project, bucket, "20200101T000000Z")
    # Never listed, never a snapshot: no manifest.
    assert [s["path"] for s in _ok(project, "snapshot", "list")["snapshots"]] == [
        second["path"],
        first["path"],
    ]

    # Within the hour a manifest-less prefix may be an upload still running: kept.
    fresh = prune(load_settings(), dry_run=True)
    assert not [d for d in fresh.deleted if "20200101T000000Z" in d["path"]]

    later = datetime.now(timezone.utc) + timedelta(days=3)
    dry = prune(load_settings(), dry_run=True, now=later)
    gone = {d["path"] for d in dry.deleted}
    assert gone == {first["path"], f"s3://{bucket.name}/{PREFIX}/prod/20200101T000000Z"}
    assert bucket.keys(f"{PREFIX}/prod/20200101T000000Z")  # a dry run deletes nothing

    before = bucket.keys(f"{PREFIX}/dev/{first['path'].rsplit('/', 1)[1]}")
    prune(load_settings(), dry_run=False, now=later)
    assert not bucket.keys(f"{PREFIX}/prod/20200101T000000Z")
    left = bucket.keys(f"{PREFIX}/dev/{first['path'].rsplit('/', 1)[1]}")
    # The first snapshot is gone (no manifest, not listed); the files the second refers to stay.
    assert "manifest.json" not in left and left
    assert set(left) == {k for k in before if k.endswith(".parquet")}
    listed = _ok(project, "snapshot", "list")["snapshots"]
    assert [s["path"] for s in listed] == [second["path"]] and listed[0]["verified"]
    assert _ok(project, "snapshot", "verify", second["path"])["ok"]
    # A later prune does not see those referenced files as a crashed upload.
    assert prune(load_settings(), dry_run=True, now=later).deleted == []
    cli = _ok(project, "snapshot", "prune", "--dry-run")
    assert cli["deleted"] == [] and [k["path"] for k in cli["kept"]] == [second["path"]]


def test_full_sync_then_rollback_from_the_bucket_restores_prod_exactly(
    s3_project: tuple[Project, Bucket],
) -> None:
    project, bucket = s3_project
    migrate(project.dev_url)
    migrate(project.prod_url, OLD)
    seed_dev(project.dev_url)
    seed_stale_prod(project.prod_url)
    # Per table: md5 of its rows; fingerprint and migrations too (support.pipeline.state).
    state_before = state(project.prod_url)
    dry = project.invoke("full-sync", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert f"s3://{bucket.name}/{PREFIX}/prod" in dry.output  # where the backup would go
    synced = project.invoke("full-sync", "--yes")
    assert synced.exit_code == 0, synced.output
    assert state(project.prod_url) != state_before
    assert bucket.keys(f"{PREFIX}/prod")  # the backup went to the bucket
    plan = project.invoke("plan", "--json")
    assert plan.exit_code == 0, plan.output
    preview = project.invoke("rollback", "--dry-run", "--json")
    assert preview.exit_code == 0, preview.output
    backup = json.loads(preview.output)["plan"]["backup"]
    assert backup.startswith(f"s3://{bucket.name}/{PREFIX}/prod/")
    listed = _ok(project, "snapshot", "list", "--env", "prod")  # plan's snapshot is newer
    assert listed["rollback_target"] == backup in [s["path"] for s in listed["snapshots"]]
    assert state(project.prod_url) != state_before  # a dry run changes nothing
    result = project.invoke("rollback", "--yes", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["restored"].startswith(f"s3://{bucket.name}/{PREFIX}/prod/")
    assert state(project.prod_url) == state_before
    # prod's history names its backups by their URL: another host's run finds them.
    history = project.invoke("history", "--json")
    assert history.exit_code == 0, history.output
    assert f"s3://{bucket.name}/{PREFIX}/prod/" in history.output
    assert "dbtools-archive-" not in history.output  # never the process's private folder
    assert not (project.root / "snapshots").exists()


def _run(project: Project, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    full = {**cli_env(project, None), **env}
    return subprocess.run(
        [sys.executable, "-m", "dbtools", *args],
        cwd=project.root,
        env=full,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _one_clear_line(done: subprocess.CompletedProcess[str], secret: str, bucket: str) -> str:
    out = done.stdout + done.stderr
    assert done.returncode == 2, out
    assert "Traceback" not in out and secret not in out
    first = done.stderr.strip().splitlines()[0]
    assert first.startswith("error: cannot list the snapshot archive s3://"), out
    assert bucket in first
    return out


def test_bad_credentials_are_one_line_and_exit_2(s3_project: tuple[Project, Bucket]) -> None:
    project, bucket = s3_project
    with moto_server(auth=True) as checking:
        # The same bucket name on a server that checks keys: it knows none of them.
        env = {**bucket.env, "AWS_ENDPOINT_URL_S3": checking}
        done = _run(project, env, "snapshot", "list")
    out = _one_clear_line(done, bucket.env["AWS_SECRET_ACCESS_KEY"], bucket.name)
    assert "AWS_ACCESS_KEY_ID" in out  # the hint says where credentials come from


def test_an_unreachable_endpoint_is_one_line_and_exit_2(s3_project: tuple[Project, Bucket]) -> None:
    project, bucket = s3_project
    env = {**bucket.env, "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{free_port()}"}
    for args in (("snapshot", "list"), ("snapshot", "create", "--target", "dev")):
        done = _run(project, env, *args)
        _one_clear_line(done, bucket.env["AWS_SECRET_ACCESS_KEY"], bucket.name)


def test_a_missing_bucket_is_said_not_shown_as_empty(s3_project: tuple[Project, Bucket]) -> None:
    project, bucket = s3_project
    env = {"DBTOOLS_SNAPSHOT_DIR": f"s3://{bucket.name}-typo/archive"}
    for args in (("snapshot", "list"), ("snapshot", "create", "--target", "dev")):
        done = _run(project, env, *args)
        out = _one_clear_line(done, bucket.env["AWS_SECRET_ACCESS_KEY"], f"{bucket.name}-typo")
        assert "does not exist" in out


@pytest.mark.pure
def test_an_s3_location_never_carries_credentials() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_s3("s3://AKIA:hunter2@bucket/prefix")
    assert "hunter2" not in str(caught.value)
    assert parse_s3("s3://bucket/a/b/").url == "s3://bucket/a/b"
    assert parse_s3("s3://bucket").key("prod", "x") == "bucket/prod/x"
    for bad in ("s3://", "s3://bucket/../x", "s3://bucket/a//b", "file:///tmp"):
        with pytest.raises(ConfigError):
            parse_s3(bad)


@pytest.mark.usefixtures("diverged")  # dev and prod diverged in known ways
def test_a_plan_saved_against_the_bucket_applies_exactly(
    s3_project: tuple[Project, Bucket],
) -> None:
    project, bucket = s3_project
    plan = _ok(project, "plan", "--save")
    path = Path(plan["saved"])
    # The plan is kept in the project (apply reads it by path); it names its dev snapshot by
    # its URL in the bucket, which outlives the command that made it.
    assert path.is_relative_to(project.root / "snapshots" / "plans")
    assert plan["dev"]["path"].startswith(f"s3://{bucket.name}/{PREFIX}/dev/")
    planned_dev = synced_digests(project.dev_url)
    applied = project.invoke("apply", str(path), "--yes", "--json")
    assert applied.exit_code == 0, applied.output
    assert synced_digests(project.prod_url) == planned_dev


def test_a_damaged_object_fails_verify_and_is_never_read(
    s3_project: tuple[Project, Bucket],
) -> None:
    project, bucket = s3_project
    _seeded(project)
    made = _ok(project, "snapshot", "create", "--target", "dev")
    stamp = made["path"].rsplit("/", 1)[1]
    victim = next(k for k in bucket.keys(f"{PREFIX}/dev/{stamp}") if "User" in k)
    with bucket.fs.open_output_stream(f"{bucket.name}/{PREFIX}/dev/{stamp}/{victim}") as f:
        f.write(b"not the file the manifest names")
    result = project.invoke("snapshot", "verify", made["path"], "--json")
    assert result.exit_code == 1, result.output
    assert any("checksum mismatch" in p for p in json.loads(result.output)["problems"])
    with pytest.raises(SnapshotError, match="checksum mismatch"):
        read_snapshot(made["path"], "User")

    # An object gone from the bucket is named as missing, as a file gone from a folder.
    again = _ok(project, "snapshot", "create", "--target", "dev")
    stamp = again["path"].rsplit("/", 1)[1]
    gone = next(k for k in bucket.keys(f"{PREFIX}/dev/{stamp}") if k.endswith(".parquet"))
    bucket.fs.delete_file(f"{bucket.name}/{PREFIX}/dev/{stamp}/{gone}")
    result = project.invoke("snapshot", "verify", again["path"], "--json")
    assert result.exit_code == 1, result.output
    assert f"{gone}: missing" in " ".join(json.loads(result.output)["problems"])


def test_part_files_rotate_inside_the_bucket_without_a_local_copy(
    s3_project: tuple[Project, Bucket],
) -> None:
    """A table split into part files: the first file moves server-side under the table's
    folder, and each file's sha256 is the one of the bytes that reached the bucket."""
    _, bucket = s3_project
    remote = store.remote_for(load_settings().snapshot_dir)
    assert remote is not None
    created = fmt.utc_now()
    build = RemoteBuild(remote, "dev", created)
    out = PartWriter(build, "public.t", [], max_rows=3)
    for _ in range(3):
        out.write(pa.RecordBatch.from_arrays([pa.nulls(2)], names=[NO_COLUMNS_FIELD]))
    out.close()
    assert out.files == [f"public.t/part-0000{n}.parquet" for n in range(2)]
    keys = bucket.keys(f"{PREFIX}/dev/{build.stamp}")
    assert sorted(keys) == out.files  # the first file's old name is gone
    # A prefix in use, even without a manifest, is never shared by another upload.
    assert RemoteBuild(remote, "dev", created).stamp == f"{build.stamp}-1"
    for rel in out.files:
        with bucket.fs.open_input_stream(build.key(rel)) as f:
            data = f.read()
        assert (len(data), hashlib.sha256(data).hexdigest()) == build.written[rel]
    build.discard()
    assert not bucket.keys(f"{PREFIX}/dev/{build.stamp}")


def test_a_backup_killed_before_its_manifest_is_never_seen_and_prune_clears_it(
    s3_project: tuple[Project, Bucket],
) -> None:
    project, bucket = s3_project
    _seeded(project)
    # Held after every object went up, just before the manifest: then killed outright.
    proc = start_cli(project, ["snapshot", "create", "--target", "dev"], "snapshot.publish=600")
    try:
        wait_marker(proc, "snapshot.publish")
    finally:
        proc.kill()
        proc.wait()
    keys = bucket.keys(f"{PREFIX}/dev")
    assert any(k.endswith(".parquet") for k in keys)
    assert not any(k.endswith("manifest.json") for k in keys)
    assert _ok(project, "snapshot", "list")["snapshots"] == []
    latest = project.invoke("snapshot", "verify", "dev:latest")
    assert latest.exit_code == 2 and "does not exist" in latest.output

    later = datetime.now(timezone.utc) + timedelta(hours=2)
    done = prune(load_settings(), dry_run=False, now=later)
    assert [d["reason"] for d in done.deleted] == [
        "incomplete upload: no manifest.json, untouched for over 60 minutes"
    ]
    assert bucket.keys(f"{PREFIX}/dev") == {}


def test_an_interrupted_backup_removes_its_objects(s3_project: tuple[Project, Bucket]) -> None:
    project, bucket = s3_project
    _seeded(project)
    proc = start_cli(project, ["snapshot", "create", "--target", "dev"], "snapshot.publish=600")
    try:
        wait_marker(proc, "snapshot.publish")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert b"no snapshot of dev was written (the partial one was removed)" in err
    assert bucket.keys(f"{PREFIX}/dev") == {}


def test_an_encrypted_archive_in_the_bucket_holds_no_row_and_restores(
    s3_project: tuple[Project, Bucket], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both halves of #13 at once: with DBTOOLS_ARCHIVE_KEY set, what is streamed into the
    bucket is sealed (Parquet and schema.sql), and every reader still reads it with the key."""
    project, bucket = s3_project
    _seeded(project)
    canary_row, canary_comment = "CANARY-s3-row-41d2", "CANARY-s3-comment-41d2"
    execute(project.dev_url, f"UPDATE \"User\" SET name = '{canary_row}' WHERE id = 'liam'")
    execute(project.dev_url, f"COMMENT ON TABLE \"User\" IS '{canary_comment}'")
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    monkeypatch.setenv(encryption.KEY_ENV, key)
    project.env[encryption.KEY_ENV] = key

    made = _ok(project, "snapshot", "create", "--target", "dev")
    stamp = made["path"].rsplit("/", 1)[1]
    keys = bucket.keys(f"{PREFIX}/dev/{stamp}")
    assert any(k.endswith(".parquet") for k in keys) and "schema.sql" in keys
    for rel in keys:
        with bucket.fs.open_input_stream(f"{bucket.name}/{PREFIX}/dev/{stamp}/{rel}") as fh:
            data = fh.read()
        assert canary_row.encode() not in data, rel
        assert key.encode() not in data, rel
        if rel != "manifest.json":  # the manifest holds names and counts, by design
            assert canary_comment.encode() not in data, rel

    verified = _ok(project, "snapshot", "verify", "dev:latest", "--restore")
    assert verified["ok"] and verified["restore"]["ok"] is True, verified
    frame = read_snapshot("dev:latest", "User")
    assert canary_row in set(frame["name"])

    before = state(project.dev_url)
    execute(project.dev_url, "UPDATE \"User\" SET name = 'changed' WHERE id = 'liam'")
    back = project.invoke("restore", made["path"], "--target", "dev", "--yes")
    assert back.exit_code == 0, back.output
    assert key not in back.output
    assert state(project.dev_url) == before

    # Without the key: one line naming what is needed, exit 2, nothing read.
    monkeypatch.delenv(encryption.KEY_ENV)
    project.env.pop(encryption.KEY_ENV)
    refused = project.invoke("snapshot", "query", made["path"], 'SELECT count(*) FROM "User"')
    assert refused.exit_code == 2, refused.output
    assert "Traceback" not in refused.output and encryption.KEY_ENV in refused.output
