"""Fixtures against a real PostgreSQL server: every test gets its own databases, dropped after.

The server is DBTOOLS_PG_URL (default postgresql://postgres@127.0.0.1:5432/postgres); `make
test` starts the machine's local server first if it is down (scripts/ensure_pg.py).

Tests of pure logic are marked `pure` and never ask for the server: `pytest -m pure` runs
them where no PostgreSQL is reachable. Every other test checks the server once per session
and stops the run at once if it is down. Helpers live in tests/support/, not here.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg2
import pytest

from support.db import SERVER_URL, create_database, drop_database
from support.diverged import diverge
from support.project import REPO, Project
from support.s3 import Bucket, moto_server, new_bucket
from support.types_pair import two_databases


@pytest.fixture(scope="session")
def _server_up() -> None:
    try:
        psycopg2.connect(SERVER_URL, connect_timeout=5).close()
    except psycopg2.Error as exc:
        pytest.exit(
            f"no PostgreSQL at DBTOOLS_PG_URL ({exc}); run `make test`, "
            "or `pytest -m pure` for the tests that need no server",
            returncode=2,
        )


@pytest.fixture(autouse=True)
def _server(request: pytest.FixtureRequest) -> None:
    """Every test needs the server except the ones marked `pure`."""
    if request.node.get_closest_marker("pure") is None:
        request.getfixturevalue("_server_up")


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


@pytest.fixture
def diverged(project: Project, tmp_path: Path) -> Project:
    """The project's dev and prod diverged in known ways (support/diverged.py)."""
    return diverge(project, tmp_path / "checks")


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[psycopg2.extensions.connection, psycopg2.extensions.connection]]:
    """A source and a target database shared by a module's tests (hypothesis needs that):
    the type suites' round trips (support/types_pair.py)."""
    yield from two_databases()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's standalone S3 server over real HTTP on 127.0.0.1, one per session."""
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def s3_project(
    project: Project, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Project, Bucket]]:
    """The project with its archive in a fresh bucket (`s3://<bucket>/archive`), reached
    through the standard AWS variables, as an operator would set them."""
    bucket = new_bucket(s3_endpoint)
    env = {**bucket.env, "DBTOOLS_SNAPSHOT_DIR": f"s3://{bucket.name}/archive"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    project.env.update(env)
    yield project, bucket
