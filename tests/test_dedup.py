"""An unchanged table is not written again: the archive grows with what changed (#13.2)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from dbtools.snapshot import format as fmt

from support.db import execute, no_writer_running
from support.pipeline import migrate, seed_dev
from support.project import Project


def _snapshot(project: Project) -> dict:
    no_writer_running()
    result = project.invoke("snapshot", "create", "--target", "dev", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def _files(path: Path) -> dict[str, Path]:
    manifest = fmt.read_manifest(path)
    return {rel: path / rel for e in manifest.tables.values() for rel in e.files}


def _seeded(project: Project) -> None:
    migrate(project.dev_url)
    seed_dev(project.dev_url)


def test_an_unchanged_database_writes_no_data_file_the_second_time(project: Project) -> None:
    _seeded(project)
    first = _snapshot(project)
    second = _snapshot(project)

    with_rows = [k for k, e in fmt.read_manifest(Path(first["path"])).tables.items() if e.files]
    assert sorted(second["tables_reused"]) == sorted(with_rows)
    assert second["bytes_reused"] > 0
    a, b = _files(Path(first["path"])), _files(Path(second["path"]))
    assert a.keys() == b.keys()
    for rel in a:  # the same file under two names, no byte written or copied
        assert os.stat(a[rel]).st_ino == os.stat(b[rel]).st_ino
    assert fmt.verify_dir(Path(second["path"]))[1] == []


def test_only_the_changed_table_is_written_and_pruning_the_first_keeps_the_second(
    project: Project,
) -> None:
    _seeded(project)
    first = _snapshot(project)
    execute(project.dev_url, "UPDATE \"User\" SET name = 'changed' WHERE id = 'liam'")
    second = _snapshot(project)

    assert "public.User" not in second["tables_reused"]
    assert "public.BuilderProfile" in second["tables_reused"]
    user = fmt.read_manifest(Path(second["path"])).tables["public.User"]
    assert (
        user.content_hash
        != fmt.read_manifest(Path(first["path"])).tables["public.User"].content_hash
    )
    # the first snapshot deleted: the second keeps every file it names
    fmt.remove_tree(Path(first["path"]))
    assert fmt.verify_dir(Path(second["path"]))[1] == []
    restored = project.invoke("snapshot", "verify", second["path"], "--restore", "--json")
    assert restored.exit_code == 0, restored.output


def test_a_row_rewritten_with_the_same_values_or_a_damaged_file_is_exported_again(
    project: Project,
) -> None:
    _seeded(project)
    first = Path(_snapshot(project)["path"])
    # same content, but a new row version: reuse cannot prove it unchanged, so it exports
    execute(project.dev_url, "UPDATE \"User\" SET name = name WHERE id = 'liam'")
    # a damaged file of the previous snapshot is never linked into a new one
    entry = fmt.read_manifest(first).tables["public.BuilderProfile"]
    damaged = first / next(iter(entry.files))
    os.chmod(damaged, 0o600)
    damaged.write_bytes(damaged.read_bytes() + b"x")
    second = _snapshot(project)

    assert "public.User" not in second["tables_reused"]
    assert "public.BuilderProfile" not in second["tables_reused"]
    assert fmt.verify_dir(Path(second["path"]))[1] == []
