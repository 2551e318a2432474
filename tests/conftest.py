"""Fixtures against a real PostgreSQL server: every test gets its own databases, dropped after.

The server is DBTOOLS_PG_URL (default postgresql://postgres@127.0.0.1:5432/postgres); `make
test` starts the machine's local server first if it is down (scripts/ensure_pg.py).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg2
import pytest
from click.testing import CliRunner, Result

SERVER_URL = os.environ.get("DBTOOLS_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REPO = Path(__file__).resolve().parent.parent


def db_url(name: str, server_url: str = SERVER_URL) -> str:
    """The server URL pointed at another database."""
    parts = urlsplit(server_url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, ""))


def admin_execute(sql: str) -> None:
    conn = psycopg2.connect(SERVER_URL)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


def create_database(name: str) -> str:
    admin_execute(f'CREATE DATABASE "{name}"')
    return db_url(name)


def drop_database(name: str) -> None:
    admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def execute(url: str, sql: str, params: object = None) -> list[tuple]:
    """Run SQL on a database in its own committed transaction; return rows if any."""
    conn = psycopg2.connect(url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def schema_objects(url: str, schemas: tuple[str, ...] = ("public",)) -> dict[str, str]:
    """The schema of a database as catalog sees it: "kind name" -> definition."""
    from dbtools import catalog

    conn = psycopg2.connect(url)
    try:
        return catalog.schema_objects(conn, list(schemas))
    finally:
        conn.close()


def fingerprint(url: str) -> str:
    from dbtools import catalog

    return catalog.fingerprint_of(schema_objects(url))


def applied_migrations(url: str) -> list[str]:
    from dbtools import migrations

    conn = psycopg2.connect(url)
    try:
        return migrations.applied_ids(conn)
    finally:
        conn.close()


@pytest.fixture(scope="session", autouse=True)
def _server() -> None:
    try:
        psycopg2.connect(SERVER_URL, connect_timeout=5).close()
    except psycopg2.Error as exc:
        pytest.exit(f"no PostgreSQL at DBTOOLS_PG_URL ({exc}); run `make test`", returncode=2)


@pytest.fixture
def make_db() -> Iterator[Callable[[str], str]]:
    """Factory: make_db("suffix") creates a fresh database and returns its URL."""
    created: list[str] = []

    def make(suffix: str = "db") -> str:
        name = f"dbt_{uuid.uuid4().hex[:8]}_{suffix}"
        created.append(name)
        return create_database(name)

    yield make
    for name in created:
        drop_database(name)


@dataclass
class Project:
    """A dbtools project in a temp dir with its own dev and prod databases."""

    root: Path
    dev_url: str
    prod_url: str
    dev_name: str
    prod_name: str
    snapshot_dir: Path
    env: dict[str, str]

    def invoke(self, *args: str, input: str | None = None) -> Result:
        from dbtools.cli import main

        runner = CliRunner()
        return runner.invoke(main, list(args), env=self.env, input=input, catch_exceptions=False)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    """dev and prod databases named like the real ones would be, plus a project directory.

    The project directory gets a copy of setup.cfg's [dbtools] section pointing at the
    repository's migrations/ and checks/, and the expected names of the test databases.
    """
    tag = uuid.uuid4().hex[:8]
    dev_name, prod_name = f"dbt_{tag}_dev", f"dbt_{tag}_prod"
    dev_url, prod_url = create_database(dev_name), create_database(prod_name)
    root = tmp_path / "proj"
    root.mkdir()
    (root / "setup.cfg").write_text(
        "[dbtools]\n"
        f"dev_database = {dev_name}\nprod_database = {prod_name}\n"
        f"migrations_dir = {REPO / 'migrations'}\nchecks_dir = {REPO / 'checks'}\n"
        "preserved_tables = Account, Session, VerificationToken\n"
        "lock_timeout_seconds = 3\n"
    )
    snapshot_dir = root / "snapshots"
    env = {
        "DEV_DATABASE_URL": dev_url,
        "PROD_DATABASE_URL": prod_url,
        "DBTOOLS_SNAPSHOT_DIR": str(snapshot_dir),
        "DBTOOLS_DEV_DATABASE": "",
        "DBTOOLS_PROD_DATABASE": "",
    }
    for key, value in env.items():
        if value:
            monkeypatch.setenv(key, value)
        else:
            monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(root)
    try:
        yield Project(root, dev_url, prod_url, dev_name, prod_name, snapshot_dir, env)
    finally:
        drop_database(dev_name)
        drop_database(prod_name)
