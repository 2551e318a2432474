"""A full-sync opens each side once (#11.2): verify, the guard and the final checks share one
connection per database. The snapshots' export pools (a coordinator and its parallel COPY
workers) are the only other connections, and they are counted apart."""

from __future__ import annotations

import collections
import traceback
from typing import Any

import psycopg2
import pytest

from support.pipeline import OLD, migrate, seed_dev, seed_stale_prod
from support.project import Project

_SNAPSHOT_MODULE = "dbtools/snapshot/create.py"


def test_full_sync_opens_each_side_once(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    migrate(project.dev_url)
    migrate(project.prod_url, OLD)
    seed_dev(project.dev_url)
    seed_stale_prod(project.prod_url)
    opened: collections.Counter[tuple[str, str]] = collections.Counter()
    real = psycopg2.connect

    def counting(*args: Any, **kwargs: Any) -> Any:
        conn = real(*args, **kwargs)
        with conn.cursor() as cur:
            cur.execute("SELECT current_database()")
            name = cur.fetchone()[0]
        conn.rollback()
        stack = traceback.extract_stack()
        who = "snapshot" if any(_SNAPSHOT_MODULE in f.filename for f in stack) else "run"
        opened[(name, who)] += 1
        return conn

    monkeypatch.setattr(psycopg2, "connect", counting)
    result = project.invoke("full-sync", "--yes")
    assert result.exit_code == 0, result.output
    for name in (project.dev_name, project.prod_name):
        assert opened[(name, "run")] == 1, dict(opened)
        assert opened[(name, "snapshot")] >= 1  # the backup of prod, the snapshot of dev
    assert {n for n, _ in opened} == {project.dev_name, project.prod_name}
