"""Encryption at rest (snapshot/encryption.py): with DBTOOLS_ARCHIVE_KEY set no stored byte shows
a row's text, every reader still reads, a wrong or missing key is one line, a key that cannot
encrypt writes nothing, and old keys keep reading after a rotation."""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dbtools
from dbtools.errors import ConfigError, SnapshotError
from dbtools.snapshot import encryption
from dbtools.snapshot import format as fmt
from dbtools.snapshot.export import TableExport, export_table
from dbtools.snapshot.hashing import content_hash
from dbtools.snapshot.load import load_table

from support.db import execute
from support.project import Project, configure
from support.snapshot import setup_schema, table_digests
from support.types_pair import create_both, rows_text, table_of

CANARY_ROW = "CANARY-row-7f3a91"
CANARY_KEY = "CANARY-key-7f3a91"  # a primary key only prod has: a saved plan names it
CANARY_COMMENT = "CANARY-comment-7f3a91"


def new_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def use_keys(project: Project, mp: pytest.MonkeyPatch, key: str | None, old: str = "") -> None:
    """The key of the next commands (the CLI runner's environment and this process's)."""
    for name, value in ((encryption.KEY_ENV, key or ""), (encryption.OLD_KEYS_ENV, old)):
        if value:
            mp.setenv(name, value)
            project.env[name] = value
        else:
            mp.delenv(name, raising=False)
            project.env.pop(name, None)


@pytest.fixture
def prod(project: Project) -> Project:
    """dev and prod with the snapshot schema; prod's rows and comment hold the canaries."""
    checks = project.root / "checks"
    checks.mkdir()
    (checks / "users.sql").write_text(
        "-- check: users_present\n-- description: users arrived\n-- expect: > 0\n"
        'SELECT count(*) FROM "User";\n'
    )
    configure(project, f"checks_dir = {checks}\npreserved_tables = Account")
    setup_schema(project.dev_url)
    setup_schema(project.prod_url)
    for url in (project.dev_url, project.prod_url):
        execute(url, f"COMMENT ON TABLE \"App\" IS '{CANARY_COMMENT}'")
    # a change in a table without list columns too: DuckDB decrypts that one itself in staging
    execute(project.dev_url, "UPDATE \"Ticket\" SET note = 'dev only' WHERE note = 'one'")
    execute(
        project.prod_url,
        'INSERT INTO "User" (id, email, name) '
        f"VALUES ('{CANARY_KEY}', 'c@example.com', '{CANARY_ROW}')",
    )
    return project


def _ok(project: Project, *args: str) -> dict:
    result = project.invoke(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def _backup(project: Project) -> Path:
    return Path(_ok(project, "snapshot", "create", "--target", "prod")["path"])


def _stored_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def _one_line_refusal(result: object, *needles: str) -> None:
    out = result.output  # type: ignore[attr-defined]
    assert result.exit_code == 2, out  # type: ignore[attr-defined]
    assert "Traceback" not in out
    lines = [line for line in out.splitlines() if line.strip()]
    assert any(all(n in line for n in needles) for line in lines), out
    assert len(lines) <= 2, out  # the line, and at most its hint


def test_no_stored_byte_shows_a_row_and_every_reader_reads(
    prod: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = new_key()
    use_keys(prod, monkeypatch, key)
    before = table_digests(prod.prod_url)
    path = _backup(prod)
    manifest = fmt.read_manifest(path)
    assert manifest.encryption == {"scheme": encryption.SCHEME, "key_id": _key_id(key)}

    files = _stored_files(prod.snapshot_dir)
    assert any(p.suffix == ".parquet" for p in files) and (path / fmt.SCHEMA_SQL) in files
    for stored in files:
        data = stored.read_bytes()
        assert CANARY_ROW.encode() not in data, stored
        assert CANARY_COMMENT.encode() not in data, stored
        assert key.encode() not in data and base64.b64decode(key) not in data, stored
        if stored.suffix == ".parquet":  # the footer too: no column name, no statistics
            assert data.endswith(b"PARE"), stored
            assert b"invitedById" not in data and b"c@example.com" not in data, stored
    # the manifest says what is not encrypted: names, counts, hashes
    assert manifest.table("User").rows == 5

    assert _ok(prod, "snapshot", "verify", str(path))["ok"] is True
    restored = _ok(prod, "snapshot", "verify", str(path), "--restore")
    assert restored["ok"] is True, restored
    query = _ok(
        prod, "snapshot", "query", str(path), f"SELECT name FROM \"User\" WHERE id = '{CANARY_KEY}'"
    )
    assert query["rows"] == [[CANARY_ROW]]
    frame = dbtools.read_snapshot("prod:latest", "public.User")
    assert CANARY_ROW in set(frame["name"])
    # the documented one-liners over it (docs/OPERATIONS.md, "Encryption at rest")
    df = dbtools.read_snapshot("prod:latest", "User")  # noqa: F841 (DuckDB reads it by name)
    roles = duckdb.sql("SELECT roles FROM df WHERE id = 'u1'").fetchall()
    assert roles == [(["CLIENT", "BUILDER", "ADMIN"],)]
    polars = pl.from_pandas(dbtools.read_snapshot("prod:latest", "User"))
    assert polars.filter(pl.col("id") == CANARY_KEY)["name"].to_list() == [CANARY_ROW]
    shown = _ok(prod, "snapshot", "show", str(path))
    assert shown["encryption"]["key_id"] == _key_id(key)

    # a saved plan names rows by key: encrypted too; apply reads it, rollback undoes it
    assert table_digests(prod.prod_url) == before
    plan = _ok(prod, "plan", "--save")
    assert plan["totals"]["deleted"] == 1 and plan["totals"]["updated"] == 1, plan
    saved = Path(plan["saved"])
    assert CANARY_KEY.encode() not in saved.read_bytes()
    assert CANARY_KEY in json.dumps(plan)  # (the output shows it: it is not stored)
    applied = _ok(prod, "apply", str(saved), "--yes")
    assert applied["lock"]["mode"] == "short", applied["lock"]  # staged, not a full reload
    assert table_digests(prod.prod_url) == table_digests(prod.dev_url)
    _ok(prod, "rollback", "--yes")
    assert table_digests(prod.prod_url) == before
    # sync-data: staging reads both encrypted snapshots in DuckDB
    synced = _ok(prod, "sync-data", "--yes")
    assert synced["lock"]["mode"] == "short", synced["lock"]
    assert table_digests(prod.prod_url) == table_digests(prod.dev_url)
    after = _ok(prod, "plan")["totals"]
    assert after["inserted"] == after["updated"] == after["deleted"] == 0, after
    _ok(prod, "rollback", "--yes")
    assert table_digests(prod.prod_url) == before
    for stored in _stored_files(prod.snapshot_dir):
        data = stored.read_bytes()
        assert CANARY_ROW.encode() not in data and CANARY_KEY.encode() not in data, stored


def _key_id(key: str) -> str:
    return encryption.key_id(base64.b64decode(key))


def test_a_wrong_or_missing_key_is_one_line(prod: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    key = new_key()
    use_keys(prod, monkeypatch, key)
    path = _backup(prod)
    wrong = new_key()
    for keys in ((wrong, ""), (None, "")):
        use_keys(prod, monkeypatch, *keys)
        for cmd in (
            ("snapshot", "verify", str(path)),
            ("snapshot", "query", str(path), 'SELECT count(*) FROM "User"'),
            ("restore", str(path), "--target", "dev", "--yes"),
        ):
            result = prod.invoke(*cmd)
            _one_line_refusal(result, "encrypted", _key_id(key), encryption.KEY_ENV)
            assert wrong not in result.output and key not in result.output
    with pytest.raises(encryption.KeyUnavailable, match=_key_id(key)):
        dbtools.read_snapshot(str(path), "User")
    # the manifest is no secret: show and list still work without the key
    assert _ok(prod, "snapshot", "show", str(path))["encryption"]["key_id"] == _key_id(key)
    listed = prod.invoke("snapshot", "list", "--json")  # (it verifies by default)
    assert "Traceback" not in listed.output
    (info,) = json.loads(listed.output)["snapshots"]
    assert info["verified"] is False and _key_id(key) in info["problems"][0], info


@pytest.mark.parametrize("bad", ["not base64 !!", base64.b64encode(b"short").decode()])
def test_a_malformed_key_writes_nothing(
    prod: Project, monkeypatch: pytest.MonkeyPatch, bad: str
) -> None:
    use_keys(prod, monkeypatch, bad)
    before = table_digests(prod.prod_url)
    for cmd in (("backup",), ("sync-data", "--yes"), ("plan", "--save")):
        result = prod.invoke(*cmd)
        _one_line_refusal(result, encryption.KEY_ENV, "nothing was written")
        assert bad not in result.output
        written = [p for p in prod.snapshot_dir.rglob("*")] if prod.snapshot_dir.exists() else []
        made = [p for p in written if p.is_file() or p.name.startswith(fmt.TMP_PREFIX)]
        assert made + [p for p in written if fmt.is_stamp(p.name)] == [], (cmd, written)
    assert table_digests(prod.prod_url) == before


def test_no_cryptography_means_no_snapshot_not_a_plaintext_one(
    prod: Project, tmp_path: Path
) -> None:
    """A broken install (cryptography cannot be imported) with a key set: refused, nothing
    written; run as a real process whose `cryptography` import fails."""
    shim = tmp_path / "shim" / "cryptography"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ImportError('cryptography is broken here')\n")
    env = {**prod.env, encryption.KEY_ENV: new_key(), "PYTHONPATH": str(shim.parent)}
    done = subprocess.run(
        [sys.executable, "-m", "dbtools", "backup"],
        cwd=prod.root,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "cannot encrypt" in done.stderr + done.stdout
    assert "Traceback" not in done.stderr
    assert not (prod.snapshot_dir / "prod").exists() or not any(
        (prod.snapshot_dir / "prod").iterdir()
    )


def test_rotation_old_keys_read_and_new_files_are_not_reused(
    prod: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, new = new_key(), new_key()
    use_keys(prod, monkeypatch, old)
    first = _backup(prod)
    # same key, nothing changed: the files are linked (dedup), as without encryption. (A
    # transaction of another test open on the server holds a snapshot's xmin back, and dedup
    # then cannot prove the rows older: the next snapshot, with a later xmin, can.)
    latest = first
    for _ in range(10):
        again = _ok(prod, "snapshot", "create", "--target", "prod")
        latest = Path(again["path"])
        if again["tables_reused"]:
            break
        time.sleep(0.5)
    assert again["tables_reused"], again
    use_keys(prod, monkeypatch, new, old=old)
    assert _ok(prod, "snapshot", "verify", str(first))["ok"] is True
    rotated = _ok(prod, "snapshot", "create", "--target", "prod")
    assert rotated["tables_reused"] == [], rotated  # never a file of the old key
    second = Path(rotated["path"])
    assert fmt.read_manifest(second).encryption["key_id"] == _key_id(new)  # type: ignore[index]
    old_inodes = {p.stat().st_ino for p in latest.rglob("*.parquet")}
    assert not old_inodes & {p.stat().st_ino for p in second.rglob("*.parquet")}
    # the old snapshot, restored with the old key among the old ones
    _ok(prod, "snapshot", "verify", str(first), "--restore")
    # the old key alone no longer writes nor reads the new snapshot
    use_keys(prod, monkeypatch, old)
    _one_line_refusal(prod.invoke("snapshot", "verify", str(second)), _key_id(new))


def test_a_plaintext_archive_is_unchanged(prod: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    use_keys(prod, monkeypatch, None)
    path = _backup(prod)
    raw = json.loads((path / fmt.MANIFEST).read_text())
    assert "encryption" not in raw
    assert all("key_salt" not in t for t in raw["tables"].values())
    assert CANARY_ROW.encode() in b"".join(p.read_bytes() for p in path.rglob("*.parquet"))
    assert "not encrypted" in prod.invoke("snapshot", "show", str(path)).output
    # with a key set, a plaintext snapshot still reads (restores) as it was written, and it
    # is never reused by an encrypted one
    key = new_key()
    use_keys(prod, monkeypatch, key)
    assert _ok(prod, "snapshot", "verify", str(path), "--restore")["ok"] is True
    encrypted = _ok(prod, "snapshot", "create", "--target", "prod")
    assert encrypted["tables_reused"] == []
    shown = prod.invoke("snapshot", "show", encrypted["path"]).output
    assert f"encrypted with key id {_key_id(key)}" in shown


@pytest.mark.pure
def test_the_envelope_refuses_truncation_and_edits() -> None:
    key = secrets.token_bytes(32)
    ring = encryption.Keyring(key, {encryption.key_id(key): key})
    chunk = 64 << 10
    for size in (0, 1, chunk, 2 * chunk + 7):
        data = secrets.token_bytes(size)
        sealed = encryption.seal(data, key)
        assert encryption.unseal(sealed, ring, "x") == data
        damaged = [sealed[:-1], sealed[:60]]  # a byte short; the header alone
        if size > chunk:
            damaged.append(sealed[: len(sealed) - (size % chunk) - 16])  # a whole chunk short
        flipped = bytearray(sealed)
        flipped[-1] ^= 1
        damaged.append(bytes(flipped))
        for bad in damaged:
            with pytest.raises(SnapshotError, match=r"does not decrypt|not an encrypted"):
                encryption.unseal(bad, ring, "x")
    other = secrets.token_bytes(32)
    with pytest.raises(encryption.KeyUnavailable, match=encryption.key_id(key)):
        encryption.unseal(encryption.seal(b"x", key), encryption.Keyring(other), "x")


@pytest.mark.pure
def test_key_parsing_names_the_variable_never_the_value() -> None:
    assert encryption.keyring({}).current is None
    good = new_key()
    ring = encryption.keyring({encryption.KEY_ENV: good})
    assert ring.current == base64.b64decode(good)
    short, long = (base64.b64encode(b"y" * n).decode() for n in (31, 33))
    for bad in ("x" * 10, short, long):
        with pytest.raises(ConfigError) as info:
            encryption.keyring({encryption.KEY_ENV: bad})
        assert encryption.KEY_ENV in str(info.value) and bad not in str(info.value)
    with pytest.raises(ConfigError, match="old keys only read"):
        encryption.keyring({encryption.OLD_KEYS_ENV: good})


def _sealed_roundtrip(
    src: Any, dst: Any, name: str, dest: Path, **kwargs: Any
) -> tuple[list[str], list[str], TableExport]:
    """Export `name` from src encrypted, load it into dst's empty copy with the table's key."""
    ring = encryption.keyring({encryption.KEY_ENV: new_key()})
    sealing = encryption.table_key(ring)
    assert sealing is not None
    src.set_session(isolation_level="REPEATABLE READ")
    try:
        exp = export_table(src, table_of(src, name), dest, sealing=sealing, **kwargs)
    finally:
        src.rollback()
        src.set_session(isolation_level="READ COMMITTED")
    assert exp.key_salt == sealing.salt
    target = table_of(dst, name)
    with dst.cursor() as cur:
        cur.execute(f"TRUNCATE {target.qualified}")
    loaded = load_table(dst, target, dest, exp.files, exp.columns, secret=sealing.secret)
    assert loaded == exp.rows
    assert content_hash(dst, target, [c["name"] for c in exp.columns]) == exp.content_hash
    dst.commit()
    return rows_text(src, name), rows_text(dst, name), exp


def test_part_files_and_text_fallbacks_are_encrypted_and_load_back(
    pair: tuple[Any, Any], tmp_path: Path
) -> None:
    src, dst = pair
    create_both(
        src,
        dst,
        "CREATE TABLE enc_parts (id int PRIMARY KEY, note text, at timestamptz, "
        "amount numeric(8,2), tags text[])",
    )
    with src.cursor() as cur:
        cur.execute(
            "INSERT INTO enc_parts SELECT g, 'CANARY-part-' || g, "
            "CASE WHEN g = 7 THEN 'infinity' ELSE now() END, "
            "CASE WHEN g = 9 THEN 'NaN'::numeric ELSE g END, ARRAY['CANARY-tag', g::text] "
            "FROM generate_series(1, 2500) g"
        )
    src.commit()
    before, after, exp = _sealed_roundtrip(
        src, dst, "enc_parts", tmp_path, max_file_rows=1000, batch_bytes=16 << 10
    )
    assert before == after
    assert len(exp.files) == 3 and set(exp.fallbacks) == {"at", "amount"}, exp
    for rel in exp.files:
        data = (tmp_path / rel).read_bytes()
        assert b"CANARY" not in data and b"tags" not in data, rel
        with pytest.raises(OSError):  # without the key pyarrow reads nothing, not the schema
            pq.read_schema(tmp_path / rel)


_VALUES = st.tuples(
    st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.binary(max_size=40),
    st.lists(
        st.text(
            alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
            max_size=8,
        )
        | st.none(),
        max_size=4,
    ),
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=st.lists(_VALUES | st.none(), max_size=12))
def test_values_round_trip_exactly_through_encrypted_files(
    pair: tuple[Any, Any], tmp_path: Path, rows: list[Any]
) -> None:
    src, dst = pair
    create_both(
        src,
        dst,
        "DROP TABLE IF EXISTS enc_rt; "
        "CREATE TABLE enc_rt (t text, i int8, f float8, b bytea, a text[])",
    )
    with src.cursor() as cur:
        for row in rows:
            values = row if row is not None else (None,) * 5
            cur.execute("INSERT INTO enc_rt VALUES (%s, %s, %s, %s, %s)", values)
    src.commit()
    dest = Path(tempfile.mkdtemp(dir=tmp_path))
    before, after, _ = _sealed_roundtrip(src, dst, "enc_rt", dest)
    assert before == after
