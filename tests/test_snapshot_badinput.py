"""Bad input to restore / verify / create: a clear message, the documented exit code, and the
target keeps its data."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import psycopg2
import pytest

from dbtools.snapshot import format as fmt

from support.db import execute
from support.project import Project
from support.snapshot import setup_schema, table_digests


@pytest.fixture
def snap(project: Project) -> tuple[Project, Path]:
    """A good dev snapshot, and a prod with the same schema holding other data."""
    setup_schema(project.dev_url)
    setup_schema(project.prod_url, data=False)
    execute(project.prod_url, "INSERT INTO \"User\" (id, email) VALUES ('p1', 'prod@example.com')")
    result = project.invoke("snapshot", "create", "--target", "dev", "--json")
    assert result.exit_code == 0, result.output
    return project, Path(json.loads(result.output)["path"])


def _user_file(path: Path) -> Path:
    return path / next(iter(fmt.read_manifest(path).table("User").files))


def _truncate(path: Path) -> None:
    f = _user_file(path)
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def _bitflip(path: Path) -> None:
    f = _user_file(path)
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0x10
    f.write_bytes(bytes(data))


def _remove(path: Path) -> None:
    _user_file(path).unlink()


def _edit_manifest(path: Path) -> None:
    m = path / fmt.MANIFEST
    data = json.loads(m.read_text())
    data["tables"]["public.User"]["rows"] = 3
    m.write_text(json.dumps(data))


def _drop_manifest(path: Path) -> None:
    (path / fmt.MANIFEST).unlink()


DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    "missing parquet": (_remove, "missing"),
    "truncated parquet": (_truncate, "checksum mismatch"),
    "bit-flipped parquet": (_bitflip, "checksum mismatch"),
    "edited manifest": (_edit_manifest, "changed after it was written"),
    "no manifest (crashed run)": (_drop_manifest, "incomplete snapshot"),
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_damaged_snapshot_is_refused_and_target_kept(snap: tuple[Project, Path], case: str) -> None:
    project, path = snap
    damage, message = DAMAGE[case]
    damage(path)
    before = table_digests(project.prod_url)
    result = project.invoke(
        "restore", str(path), "--target", "prod", "--allow-other-source", "--yes"
    )
    assert result.exit_code == 1, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert table_digests(project.prod_url) == before
    verify = project.invoke("snapshot", "verify", str(path), "--json")
    assert verify.exit_code == 1
    payload = json.loads(verify.output)
    assert payload["ok"] is False and any(message in p for p in payload["problems"])


def test_bitflip_detected_even_when_checksum_is_fixed_up(snap: tuple[Project, Path]) -> None:
    """A damaged file whose manifest entry was recomputed still fails: the manifest's own
    checksum no longer matches."""
    project, path = snap
    _bitflip(path)
    m = path / fmt.MANIFEST
    data = json.loads(m.read_text())
    rel = next(iter(data["tables"]["public.User"]["files"]))
    data["tables"]["public.User"]["files"][rel] = fmt.sha256_file(path / rel)
    m.write_text(json.dumps(data))
    result = project.invoke("snapshot", "verify", str(path))
    assert result.exit_code == 1
    assert "changed after it was written" in result.output


def test_snapshot_of_another_schema_version_is_refused_with_the_diff(
    snap: tuple[Project, Path],
) -> None:
    project, path = snap
    execute(project.prod_url, 'ALTER TABLE "User" RENAME COLUMN name TO "fullName"')
    before = table_digests(project.prod_url)
    result = project.invoke(
        "restore", str(path), "--target", "prod", "--allow-other-source", "--yes"
    )
    assert result.exit_code == 3, result.output
    assert "only in snapshot: column public.User.name" in result.output
    assert "only in target: column public.User.fullName" in result.output
    assert table_digests(project.prod_url) == before


def test_path_that_does_not_exist(snap: tuple[Project, Path]) -> None:
    project, path = snap
    for cmd in (
        [
            "restore",
            str(path.parent / "20000101T000000Z"),
            "--target",
            "prod",
            "--allow-other-source",
            "--yes",
        ],
        ["snapshot", "verify", "nope"],
        ["snapshot", "show", "/no/such/dir"],
    ):
        result = project.invoke(*cmd)
        assert result.exit_code == 2, (cmd, result.output)
        assert "does not exist" in result.output


def test_restore_by_bare_stamp(snap: tuple[Project, Path]) -> None:
    project, path = snap
    result = project.invoke(
        "restore", path.name, "--target", "prod", "--allow-other-source", "--yes", "--json"
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["path"] == str(path.resolve())
    assert table_digests(project.prod_url) == table_digests(project.dev_url)
    # the restore's backup may share the stamp: the dev snapshot is named with its side
    result = project.invoke("snapshot", "show", f"dev/{path.name}", "--json")
    assert result.exit_code == 0, result.output
    tables = {t["table"]: t for t in json.loads(result.output)["tables"]}
    assert tables["public.User"]["rows"] == 4


@pytest.mark.parametrize(
    ("holder_sql", "table"),
    [
        ('LOCK TABLE "App" IN ACCESS SHARE MODE', "public.App"),
        ("UPDATE \"User\" SET name = 'busy' WHERE id = 'p1'", "public.User"),
        ('LOCK TABLE "Account" IN ACCESS EXCLUSIVE MODE', "public.Account"),
    ],
)
def test_locked_target_table_times_out_and_keeps_data(
    snap: tuple[Project, Path], monkeypatch: pytest.MonkeyPatch, holder_sql: str, table: str
) -> None:
    project, path = snap
    monkeypatch.setenv("DBTOOLS_LOCK_TIMEOUT", "1")
    before = table_digests(project.prod_url)
    holder = psycopg2.connect(project.prod_url)
    try:
        with holder.cursor() as cur:
            cur.execute(holder_sql)
        result = project.invoke(
            "restore", str(path), "--target", "prod", "--allow-other-source", "--yes"
        )
    finally:
        holder.rollback()
        holder.close()
    assert result.exit_code == 3, result.output
    assert f"{table} is locked by another connection" in result.output
    assert table_digests(project.prod_url) == before


def test_create_with_a_locked_table_leaves_no_snapshot(
    snap: tuple[Project, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    project, path = snap
    shutil.rmtree(path)
    monkeypatch.setenv("DBTOOLS_LOCK_TIMEOUT", "1")
    holder = psycopg2.connect(project.dev_url)
    try:
        with holder.cursor() as cur:
            cur.execute('LOCK TABLE "User" IN ACCESS EXCLUSIVE MODE')
        result = project.invoke("snapshot", "create", "--target", "dev")
    finally:
        holder.rollback()
        holder.close()
    assert result.exit_code == 3, result.output
    assert "public.User is locked" in result.output
    assert list((project.snapshot_dir / "dev").iterdir()) == []
