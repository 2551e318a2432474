"""Rows wider than the CSV reader's block (#10.3): any row PostgreSQL stores snapshots and
restores, and the peak memory of `snapshot create` and of the load follows the widest row,
not the table.

Each case runs the real CLI in a child of a small wrapper that reports the child's peak RSS
(getrusage(RUSAGE_CHILDREN)): `snapshot create --target dev`, then `restore <it> --target dev`
(the load path: TRUNCATE + COPY FROM + verification hash) into the same database. The
figures are printed (pytest -s) and bounded by 300 MB + 5 x the widest row's COPY text
(measured 2026-12-04: 300 MB + 2.4x for a 50 MB text value, + 3.4x for a 50 MB bytea's
100 MB of hex; docs/TYPES.md); a memory that followed the table would blow the 1,000 x 5 MB
case's bound.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from support.db import execute
from support.project import REPO, Project

MB = 1 << 20
_WRAPPER = (
    "import resource, subprocess, sys\n"
    "done = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
    "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024\n"
    # stdout last: the JSON line of --json ends the text, after stderr's progress lines
    "print(done.returncode, peak, repr(done.stderr + done.stdout))\n"
)


def _run_measured(project: Project, *args: str) -> tuple[int, int, str]:
    """(exit code, peak RSS in bytes, output) of one `python -m dbtools` process."""
    env = {**os.environ, **{k: v for k, v in project.env.items() if v}, "PYTHONPATH": str(REPO)}
    env.pop("DBTOOLS_DEV_DATABASE", None)
    env.pop("DBTOOLS_PROD_DATABASE", None)
    out = subprocess.run(
        [sys.executable, "-c", _WRAPPER, sys.executable, "-m", "dbtools", *args],
        cwd=project.root,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    code, peak, text = out.split(" ", 2)
    return int(code), int(peak), str(eval(text))  # the wrapper printed repr()


def _md5s(url: str) -> list[tuple]:
    return execute(url, "SELECT id, md5(v::text), octet_length(v::text) FROM wide ORDER BY id")


def _round_trip(project: Project, widest_text: int, label: str) -> None:
    before = _md5s(project.dev_url)
    create_args = ("snapshot", "create", "--target", "dev", "--json")
    code, create_rss, text = _run_measured(project, *create_args)
    assert code == 0, text
    path = json.loads(text.splitlines()[-1])["path"]
    manifest = json.loads((Path(path) / "manifest.json").read_text())
    assert manifest["tables"]["public.wide"]["rows"] == len(before)
    execute(project.dev_url, "UPDATE wide SET v = NULL")  # the restore must bring them back
    code, load_rss, text = _run_measured(project, "restore", path, "--target", "dev", "--yes")
    assert code == 0, text
    assert _md5s(project.dev_url) == before
    bound = 300 * MB + 5 * widest_text
    print(
        f"\n[wide rows] {label}: snapshot create peak RSS {create_rss / MB:.0f} MB, "
        f"restore (load) peak RSS {load_rss / MB:.0f} MB; widest row {widest_text / MB:.0f} MB "
        f"as COPY text; bound {bound / MB:.0f} MB"
    )
    assert create_rss <= bound, create_rss
    assert load_rss <= bound, load_rss


@pytest.fixture
def wide(project: Project) -> Project:
    execute(project.dev_url, "CREATE TABLE wide (id int PRIMARY KEY, v text)")
    return project


@pytest.mark.slow
def test_a_50mb_text_value_snapshots_and_restores(wide: Project) -> None:
    # Not compressible into a small TOAST value by accident: md5 chunks are distinct.
    execute(
        wide.dev_url,
        "INSERT INTO wide SELECT 1, string_agg(md5(g::text), '') FROM generate_series(1, %s) g",
        (50 * MB // 32,),
    )
    execute(wide.dev_url, "INSERT INTO wide VALUES (2, 'small'), (3, NULL)")
    _round_trip(wide, 50 * MB, "one 50 MB text value")


@pytest.mark.slow
def test_a_50mb_bytea_value_snapshots_and_restores(project: Project) -> None:
    execute(project.dev_url, "CREATE TABLE wide (id int PRIMARY KEY, v bytea)")
    execute(
        project.dev_url,
        "INSERT INTO wide SELECT 1, decode(string_agg(md5(g::text), ''), 'hex') "
        "FROM generate_series(1, %s) g",
        (50 * MB // 16,),
    )
    execute(project.dev_url, "INSERT INTO wide VALUES (2, '\\x00ff'), (3, NULL)")
    # 50 MB of bytes travel as 100 MB of hex text
    _round_trip(project, 100 * MB, "one 50 MB bytea value")


@pytest.mark.slow
def test_a_thousand_rows_of_5mb_snapshot_and_restore(wide: Project) -> None:
    execute(
        wide.dev_url,
        "INSERT INTO wide SELECT i, i || repeat(md5(i::text), %s) FROM generate_series(1, 1000) i",
        (5 * MB // 32,),
    )
    _round_trip(wide, 5 * MB, "1,000 rows of 5 MB")
