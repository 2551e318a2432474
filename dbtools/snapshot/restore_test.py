"""`snapshot verify --restore`: the proof that a backup restores, by restoring it.

A scratch database is created on the server of the snapshot's own database (or of
`--scratch-url`), given the snapshot's schema (its schema.sql, pg_dump's DDL, run by psql
with ON_ERROR_STOP), loaded with the ordinary one-transaction load (which verifies every
table's row count and content hash against the manifest and the schema fingerprint before
and after), and its sequences are read back and compared with the manifest's. The scratch
database is dropped in every case, also on failure or interruption. Nothing else is written.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg2

from dbtools import db, permit
from dbtools.config import Settings
from dbtools.config.redaction import redact
from dbtools.db import Progress, say
from dbtools.errors import ConfigError, DbtoolsError
from dbtools.snapshot import encryption, store
from dbtools.snapshot import format as fmt
from dbtools.snapshot.restore import load_snapshot, verified_manifest


@dataclass
class RestoreTest:
    path: Path
    server: str  # masked URL of the server the scratch database was made on
    seconds: float = 0.0
    tables: int = 0
    rows: int = 0
    sequences: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": store.shown(self.path),
            "ok": self.ok,
            "server": self.server,
            "seconds": round(self.seconds, 3),
            "tables": self.tables,
            "rows": self.rows,
            "sequences": self.sequences,
            "problems": self.problems,
        }


def _on_server(t: db.Target, name: str) -> db.Target:
    """The same server and credentials, another database: only the URL's path changes."""
    head, _, tail = t.url.partition("?")
    base = head.rsplit("/", 1)[0]
    url = f"{base}/{quote(name)}" + (f"?{tail}" if tail else "")
    return db.Target(env=t.env, url=url, expected_name=name)


def _load_schema(t: db.Target, path: Path, manifest: fmt.Manifest) -> None:
    """Run the snapshot's schema.sql in the scratch database (psql, one transaction). It
    reaches psql on its standard input, decrypted in memory: never as a plaintext file."""
    text = encryption.read_text(path / fmt.SCHEMA_SQL, path, manifest)
    if text.startswith("-- pg_dump could not be used"):
        raise DbtoolsError(
            "the snapshot's schema.sql holds no runnable DDL (pg_dump was not available when "
            "it was taken): it cannot be restored into an empty database"
        )
    if re.search(r"^CREATE SCHEMA public;$", text, re.MULTILINE):
        # pg_dump creates public itself; a new database already has it
        conn = db.connect(t, autocommit=True)
        try:
            db.execute(conn, "DROP SCHEMA IF EXISTS public CASCADE")
        finally:
            conn.close()
    conninfo, env = db.subprocess_target(t)
    args = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction"]
    try:
        done = subprocess.run(
            [*args, "-f", "-", "--dbname", conninfo],
            env=env,
            input=text,
            capture_output=True,
            text=True,
            timeout=600,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise ConfigError(f"cannot run psql to create the schema: {exc}") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["psql failed"])[-1]
        raise DbtoolsError(f"the snapshot's schema.sql does not run: {redact(last)}")


def _sequence_problems(conn: db.Conn, manifest: fmt.Manifest) -> tuple[int, list[str]]:
    """(sequences compared, those whose value differs from the manifest's)."""
    problems = []
    values = manifest.sequence_values()
    for name, expected in sorted(values.items()):
        if expected[0] is None:
            continue
        schema, _, seq = name.partition(".")
        rows = db.execute(conn, f"SELECT last_value, is_called FROM {db.qualified(schema, seq)}")
        got = list(rows[0]) if rows else None
        if got != list(expected):
            problems.append(
                f"sequence {name} is {got} after the restore, the manifest has {expected}"
            )
    return len(values), problems


def restore_test(
    settings: Settings,
    path: Path,
    *,
    scratch_url: str | None = None,
    progress: Progress = None,
) -> RestoreTest:
    """Restore the snapshot at `path` into a scratch database and compare it (module doc)."""
    path = Path(path)
    manifest = verified_manifest(path)
    if scratch_url:
        admin_t = db.Target(env="scratch", url=scratch_url, expected_name="")
    else:
        admin_t = db.target(settings, manifest.env)
    result = RestoreTest(path=path, server=admin_t.masked.rsplit("/", 1)[0])
    name = f"dbtools_rtest_{uuid.uuid4().hex[:10]}"
    start = time.monotonic()
    admin = db.connect(admin_t, settings=settings, autocommit=True)
    try:
        try:
            db.execute(admin, f'CREATE DATABASE "{name}"')
        except psycopg2.Error as exc:
            raise ConfigError(
                f"cannot create a scratch database on {result.server}: {db.describe_error(exc)}",
                hint="give the role CREATEDB, or pass --scratch-url of a server where it may",
            ) from None
        try:
            scratch_t = _on_server(admin_t, name)
            say(progress, f"restore test: scratch database {name} on {result.server}")
            _load_schema(scratch_t, path, manifest)
            # the snapshot's own schemas and exclusions: what it was taken with
            own = dataclasses.replace(
                settings,
                _schemas=tuple(manifest.schemas),
                _excluded_tables=tuple(manifest.excluded_tables),
            )
            conn = db.connect(scratch_t, settings=settings, autocommit=True)
            try:
                ident = db.identity(conn)
                with permit.granted(permit.Permit("scratch", "restore test", ident)):
                    load = load_snapshot(conn, path, settings=own, progress=progress)
                result.tables, result.rows = len(load.tables), load.rows
                result.sequences, result.problems = _sequence_problems(conn, manifest)
            finally:
                conn.close()
        except DbtoolsError as exc:
            result.problems.append(exc.message)
        finally:
            db.execute(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.close()
    result.seconds = time.monotonic() - start
    return result
