"""A crafted but checksum-consistent snapshot: every field hostile in turn, symlinks out of the
snapshot. Each is refused with one clear line and exit 1 by verify, show and restore, flagged
by list, and never stops list or prune from handling the others; nothing outside the snapshot
is ever read (restore, query, read_snapshot)."""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from dbtools.errors import SnapshotError
from dbtools.snapshot import format as fmt
from dbtools.snapshot import read_snapshot

from support.archive import Data, rewrite_manifest
from support.project import Project
from support.snapshot import setup_schema, table_digests


def _set(*keys: str, value: Any) -> Callable[[Data], None]:
    def edit(data: Data) -> None:
        target = data
        for k in keys[:-1]:
            target = target[k]
        target[keys[-1]] = value

    return edit


def _drop(key: str) -> Callable[[Data], None]:
    return lambda data: data.pop(key)


def _user_file_name(data: Data, value: str) -> None:
    files = data["tables"]["public.User"]["files"]
    checksum = next(iter(files.values()))
    data["tables"]["public.User"]["files"] = {value: checksum}


def _move_table_to_schema(data: Data) -> None:
    entry = data["tables"].pop("public.User")
    entry["schema"] = "audit"
    data["tables"]["audit.User"] = entry


def _seq(name: str, owned_by: str | None = None, last_value: Any = 1) -> Data:
    return {"name": name, "owned_by": owned_by, "last_value": last_value, "is_called": True}


U = 'tables["public.User"]'
C = 'tables["public.Counter"]'

# case -> (edit, the text after "<manifest>: malformed field ")
CASES: dict[str, tuple[Callable[[Data], None], str]] = {
    "created_at unparseable": (
        _set("created_at", value="yesterday"),
        'created_at: "yesterday" is not an ISO 8601 time',
    ),
    "created_at without time zone": (
        _set("created_at", value="2025-01-01T00:00:00"),
        'created_at: "2025-01-01T00:00:00" has no time zone',
    ),
    "created_at in the future": (
        _set("created_at", value="2999-01-01T00:00:00Z"),
        'created_at: "2999-01-01T00:00:00Z" lies in the future (more than 300 seconds of '
        "clock skew)",
    ),
    "created_at not a string": (
        _set("created_at", value=20250101),
        "created_at: expected a non-empty string, got 20250101",
    ),
    "created_at missing": (_drop("created_at"), "created_at: missing"),
    "env unknown": (_set("env", value="staging"), 'env: expected one of dev, prod, got "staging"'),
    "schemas a string": (_set("schemas", value="public"), 'schemas: expected a list, got "public"'),
    "schemas holds a number": (
        _set("schemas", value=["public", 7]),
        "schemas[1]: expected a non-empty string, got 7",
    ),
    "migrations holds null": (
        _set("migrations", value=[None]),
        "migrations[0]: expected a non-empty string, got null",
    ),
    "schema_objects missing": (_drop("schema_objects"), "schema_objects: missing"),
    "schema_objects value a list": (
        _set("schema_objects", value={"table public.User": []}),
        'schema_objects["table public.User"]: expected a string, got []',
    ),
    "schema_sql_sha256 not hex": (
        _set("schema_sql_sha256", value="../../etc/passwd"),
        'schema_sql_sha256: expected a sha256 hex digest, got "../../etc/passwd"',
    ),
    "tables a list": (_set("tables", value=[]), "tables: expected an object, got []"),
    "table entry a string": (
        _set("tables", "public.User", value="x"),
        f'{U}: expected an object, got "x"',
    ),
    "table names another table": (
        _set("tables", "public.User", "name", value="App"),
        f'{U}: the entry names table "public.App"',
    ),
    "table in a schema not recorded": (
        _move_table_to_schema,
        'tables["audit.User"].schema: "audit" is not one of the snapshot\'s schemas (public)',
    ),
    "rows negative": (
        _set("tables", "public.User", "rows", value=-1),
        f"{U}.rows: expected a non-negative integer, got -1",
    ),
    "rows a boolean": (
        _set("tables", "public.User", "rows", value=True),
        f"{U}.rows: expected a non-negative integer, got true",
    ),
    "bytes a string": (
        _set("tables", "public.User", "bytes", value="10"),
        f'{U}.bytes: expected a non-negative integer, got "10"',
    ),
    "file absolute": (
        lambda d: _user_file_name(d, "/etc/passwd.parquet"),
        f'{U}.files["/etc/passwd.parquet"]: is an absolute path; a snapshot lists only files '
        "inside itself",
    ),
    "file with ..": (
        lambda d: _user_file_name(d, "../../prod/x/public.User.parquet"),
        f"{U}.files[\"../../prod/x/public.User.parquet\"]: has an empty, '.' or '..' "
        "component; it could point outside the snapshot",
    ),
    "file not parquet": (
        lambda d: _user_file_name(d, "schema.sql"),
        f'{U}.files["schema.sql"]: is not a .parquet file',
    ),
    "file hidden": (
        lambda d: _user_file_name(d, ".manifest.json.part.parquet"),
        f'{U}.files[".manifest.json.part.parquet"]: names a hidden file; a snapshot lists only '
        "its Parquet files",
    ),
    "file checksum not hex": (
        _set("tables", "public.User", "files", value={"public.User.parquet": 5}),
        f'{U}.files["public.User.parquet"]: expected a string, got 5',
    ),
    "columns a string": (
        _set("tables", "public.User", "columns", value="id"),
        f'{U}.columns: expected a list, got "id"',
    ),
    "column a number": (
        _set("tables", "public.User", "columns", value=[3]),
        f"{U}.columns[0]: expected an object, got 3",
    ),
    "column without name": (
        _set("tables", "public.User", "columns", value=[{"pg_type": "text"}]),
        f"{U}.columns[0].name: missing",
    ),
    "column name a number": (
        _set("tables", "public.User", "columns", value=[{"name": 1, "pg_type": "text"}]),
        f"{U}.columns[0].name: expected a non-empty string, got 1",
    ),
    "column typmod a string": (
        _set(
            "tables",
            "public.User",
            "columns",
            value=[{"name": "id", "pg_type": "text", "typmod": "x"}],
        ),
        f'{U}.columns[0].typmod: expected an integer, got "x"',
    ),
    "column listed twice": (
        _set(
            "tables",
            "public.User",
            "columns",
            value=[{"name": "id", "pg_type": "text"}, {"name": "id", "pg_type": "text"}],
        ),
        f"{U}.columns: lists a column twice",
    ),
    "table sequences a string": (
        _set("tables", "public.Counter", "sequences", value="x"),
        f'{C}.sequences: expected a list, got "x"',
    ),
    "table sequence in another schema": (
        _set(
            "tables",
            "public.Counter",
            "sequences",
            value=[_seq("audit.events_id_seq", "public.Counter.n")],
        ),
        f'{C}.sequences[0].name: sequence "audit.events_id_seq" lies outside the snapshot\'s '
        "schemas (public)",
    ),
    "table sequence owned by another table": (
        _set(
            "tables",
            "public.Counter",
            "sequences",
            value=[_seq("public.Counter_n_seq", "public.App.id")],
        ),
        f'{C}.sequences[0].owned_by: "public.App.id" is not a column of table public.Counter',
    ),
    "free sequence in another schema": (
        _set("sequences", value=[_seq("audit.events_id_seq")]),
        'sequences[0].name: sequence "audit.events_id_seq" lies outside the snapshot\'s '
        "schemas (public)",
    ),
    "free sequence without schema": (
        _set("sequences", value=[_seq("events_id_seq")]),
        'sequences[0].name: expected schema.sequence, got "events_id_seq"',
    ),
    "free sequence last_value a string": (
        _set("sequences", value=[_seq("public.x_seq", last_value="1; DROP TABLE x")]),
        'sequences[0].last_value: expected an integer or null, got "1; DROP TABLE x"',
    ),
    "free sequence owned by a snapshot table": (
        _set("sequences", value=[_seq("public.x_seq", "public.User.id")]),
        'sequences[0].owned_by: "public.User.id" belongs to a table of the snapshot',
    ),
    "sequence listed twice": (
        lambda d: (
            d.__setitem__("sequences", copy.deepcopy(d["tables"]["public.Ticket"]["sequences"]))
            or d["sequences"][0].__setitem__("owned_by", None)
        ),
        'sequences[0].name: sequence "public.Ticket_id_seq" is listed twice',
    ),
    "source oid a string": (
        _set("source", value={"system_identifier": "1", "database_oid": "5", "database": "x"}),
        'source.database_oid: expected a positive integer, got "5"',
    ),
    "source a list": (_set("source", value=[]), "source: expected an object, got []"),
    "reason empty": (_set("reason", value=""), 'reason: expected a non-empty string, got ""'),
}


@pytest.fixture
def base(project: Project) -> tuple[Project, Path]:
    setup_schema(project.dev_url)
    created = project.invoke("snapshot", "create", "--target", "dev", "--json")
    assert created.exit_code == 0, created.output
    return project, Path(json.loads(created.output)["path"])


def _line(output: str, start: str) -> str:
    lines = [ln for ln in output.splitlines() if ln.startswith(start)]
    assert len(lines) == 1, output
    return lines[0]


def test_every_hostile_field_is_one_clear_line_everywhere(base: tuple[Project, Path]) -> None:
    project, good = base
    dev_before = table_digests(project.dev_url)
    wrong: list[str] = []
    for n, (case, (edit, expected)) in enumerate(sorted(CASES.items()), start=1):
        path = good.parent / f"{good.name}-{n}"  # the same stamp, so only `edit` is wrong
        shutil.copytree(good, path)
        rewrite_manifest(path, edit)
        message = f"{path / fmt.MANIFEST}: malformed field {expected}"
        checks = {
            "verify": (project.invoke("snapshot", "verify", str(path)), 1, f"  - {message}"),
            "show": (project.invoke("snapshot", "show", str(path)), 1, f"error: {message}"),
            "restore": (
                project.invoke("restore", str(path), "--target", "dev", "--yes"),
                1,
                f"error: snapshot {path} does not verify: {message}",
            ),
        }
        for cmd, (result, code, line) in checks.items():
            got = [ln for ln in result.output.splitlines() if ln.startswith(line[:12])]
            if result.exit_code != code or got != [line] or "internal error" in result.output:
                wrong.append(f"{case} / {cmd}: exit {result.exit_code}: {result.output!r}")
        listed = project.invoke("snapshot", "list", "--env", "dev")
        if listed.exit_code != 0 or f"dev/{path.name}: {message}" not in listed.output:
            wrong.append(f"{case} / list: {listed.output!r}")
        shutil.rmtree(path)
    assert wrong == []
    assert table_digests(project.dev_url) == dev_before


def test_bad_snapshots_never_break_list_or_prune_for_the_others(
    base: tuple[Project, Path],
) -> None:
    project, good = base
    bad = []
    for n, case in enumerate(
        ["created_at unparseable", "created_at in the future", "columns a string"], start=1
    ):
        path = good.parent / f"{good.name}-{n}"
        shutil.copytree(good, path)
        rewrite_manifest(path, CASES[case][0])
        bad.append(path)
    # A future-dated directory name too: it sorts above every real snapshot.
    future = good.parent / "29990101T000000Z"
    shutil.copytree(good, future)
    rewrite_manifest(future, _set("created_at", value="2999-01-01T00:00:00Z"))
    bad.append(future)

    listed = project.invoke("snapshot", "list", "--json")
    assert listed.exit_code == 0, listed.output
    rows = {Path(s["path"]): s for s in json.loads(listed.output)["snapshots"]}
    assert rows[good]["verified"] is True
    assert all(rows[p]["verified"] is False and rows[p]["problems"] for p in bad)

    dry = project.invoke("snapshot", "prune", "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    kept = {Path(k["path"]): k["reason"] for k in json.loads(dry.output)["kept"]}
    assert kept[good].startswith("among the newest 3; newest verified snapshot of database")
    future_problem = (
        f'{future / fmt.MANIFEST}: malformed field created_at: "2999-01-01T00:00:00Z" lies '
        "in the future (more than 300 seconds of clock skew)"
    )
    assert kept[future] == f"within 30 days; does not verify: {future_problem}"
    done = project.invoke("snapshot", "prune", "--yes")
    assert done.exit_code == 0, done.output
    assert good.exists()


def _outside_copy(project: Project, good: Path) -> tuple[Path, str]:
    """The User file moved outside the snapshot, with the same bytes (so its checksum holds)."""
    rel = next(iter(fmt.read_manifest(good).table("User").files))
    outside = project.root / "elsewhere" / "public.User.parquet"
    outside.parent.mkdir()
    shutil.move(good / rel, outside)
    return outside, rel


def test_symlinked_file_is_never_read(base: tuple[Project, Path]) -> None:
    project, good = base
    outside, rel = _outside_copy(project, good)
    (good / rel).symlink_to(outside)
    dev_before = table_digests(project.dev_url)
    problem = f"{rel}: a symbolic link; a snapshot holds only its own files"

    verify = project.invoke("snapshot", "verify", str(good))
    assert verify.exit_code == 1 and f"  - {problem}" in verify.output.splitlines()
    restore = project.invoke("restore", str(good), "--target", "dev", "--yes")
    assert restore.exit_code == 1
    assert f"error: snapshot {good} does not verify: {problem}" in restore.output.splitlines()
    assert table_digests(project.dev_url) == dev_before

    refused = f"snapshot {good}: table public.User: {rel}: {rel} is a symbolic link"
    with pytest.raises(SnapshotError, match="is a symbolic link") as exc:
        read_snapshot(good, "User")
    assert exc.value.message.startswith(refused)
    query = project.invoke("snapshot", "query", str(good), 'SELECT count(*) FROM "User"')
    assert query.exit_code == 1 and f"error: {refused}" in query.output


def test_symlinked_part_folder_is_never_read(base: tuple[Project, Path]) -> None:
    project, good = base
    outside, rel = _outside_copy(project, good)
    part = "public.User/part-00000.parquet"
    (good / "public.User").symlink_to(outside.parent)
    shutil.move(outside, outside.parent / "part-00000.parquet")

    def edit(data: Data) -> None:
        files = data["tables"]["public.User"]["files"]
        files[part] = files.pop(rel)

    rewrite_manifest(good, edit)
    verify = project.invoke("snapshot", "verify", str(good), "--json")
    assert verify.exit_code == 1
    assert json.loads(verify.output)["problems"] == [
        "public.User: a symbolic link; a snapshot holds only its own files"
    ]
    with pytest.raises(SnapshotError, match=r"public\.User is a symbolic link"):
        read_snapshot(good, "User")
    restore = project.invoke("restore", str(good), "--target", "dev", "--yes")
    assert restore.exit_code == 1 and "symbolic link" in restore.output


def test_symlinked_snapshot_directory_is_refused(base: tuple[Project, Path]) -> None:
    project, good = base
    real = project.root / "real-snapshot"
    shutil.move(good, real)
    good.symlink_to(real)
    message = (
        f"{good} is a symbolic link; a snapshot is read only from a real directory "
        "(pass the directory it points to)"
    )
    verify = project.invoke("snapshot", "verify", good.name)
    assert verify.exit_code == 1 and f"  - {message}" in verify.output.splitlines()
    show = project.invoke("snapshot", "show", str(good))
    assert show.exit_code == 1 and f"error: {message}" in show.output.splitlines()
    restore = project.invoke("restore", good.name, "--target", "dev", "--yes")
    assert restore.exit_code == 1 and message in restore.output
    listed = project.invoke("snapshot", "list", "--json")
    [row] = json.loads(listed.output)["snapshots"]
    assert row["verified"] is False and row["problems"] == [message]


def test_query_cannot_read_files_outside_the_snapshot(base: tuple[Project, Path]) -> None:
    project, good = base
    secret = project.root / "secret.csv"
    secret.write_text("token\nabc\n")
    ok = project.invoke("snapshot", "query", str(good), 'SELECT count(*) AS n FROM "User"')
    assert ok.exit_code == 0 and "4" in ok.output
    for sql in (
        f"SELECT * FROM read_csv('{secret}')",
        f"COPY (SELECT 1) TO '{project.root / 'out.csv'}'",
    ):
        result = project.invoke("snapshot", "query", str(good), sql)
        assert result.exit_code == 1, result.output
        assert "Permission Error" in result.output and "abc" not in result.output
    assert not (project.root / "out.csv").exists()


# --- any JSON anywhere: a clear SnapshotError or a valid manifest, never anything else ---------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)


def _paths(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(data, dict):
        for k, v in data.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out += _paths(v, (*prefix, i))
    return out


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checksum-consistent snapshot with one table, a part folder, and sequences."""
    root = tmp_path_factory.mktemp("tpl")
    temp = fmt.new_temp_dir(root / "dev")
    (temp / fmt.SCHEMA_SQL).write_text("-- x\n")
    col = {"name": "n", "pg_type": "integer", "encoding": "native", "typmod": -1}
    seq = {"name": "public.T_n_seq", "owned_by": "public.T.n", "last_value": 3, "is_called": True}
    manifest = fmt.Manifest(
        created_at="2025-01-01T00:00:00Z",
        env="dev",
        database="d",
        server_version="15",
        tool_version="t",
        schemas=["public"],
        migrations=["0001"],
        schema_fingerprint="sha256:x",
        schema_objects={"table public.T": "table"},
        tables={
            "public.T": fmt.TableEntry(
                "public", "T", 0, 0, {"public.T/part-00000.parquet": "0" * 64}, [col], "h", [seq]
            )
        },
        sequences=[
            {"name": "public.free_seq", "owned_by": None, "last_value": None, "is_called": False}
        ],
        source={"system_identifier": "1", "database_oid": 5, "database": "d"},
    )
    fmt.write_manifest(temp, manifest)
    return temp


@pytest.mark.pure
@hypothesis_settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data(), value=_json)
def test_any_value_in_any_field_is_a_clear_error_or_valid(
    template: Path, data: st.DataObject, value: Any
) -> None:
    original = json.loads((template / fmt.MANIFEST).read_text())
    original.pop("manifest_sha256")
    where = data.draw(st.sampled_from(_paths(original)))
    work = template.parent / "20250101T000000Z"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(template, work)

    def edit(d: Data) -> None:
        target = d
        for k in where[:-1]:
            target = target[k]
        target[where[-1]] = value

    rewrite_manifest(work, edit)
    try:
        manifest = fmt.read_manifest(work)
    except SnapshotError as exc:
        assert "\n" not in exc.message and exc.message.startswith(f"{work / fmt.MANIFEST}")
        return
    # Accepted: then every rule a reader relies on holds.
    for key, entry in manifest.tables.items():
        assert key == entry.key and entry.schema in manifest.schemas
        assert all(fmt.check_relative_name(rel) is None for rel in entry.files)
        assert all(isinstance(c["name"], str) and c["name"] for c in entry.columns)
    for seq in [*manifest.sequences, *(s for t in manifest.tables.values() for s in t.sequences)]:
        assert seq["name"].split(".", 1)[0] in manifest.schemas
    archive_info = fmt.verify_dir(work, read_data=False)
    assert isinstance(archive_info[1], list)
