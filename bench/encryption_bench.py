"""Benchmark: the cost of encryption at rest (DBTOOLS_ARCHIVE_KEY) on snapshot create and read.

    python bench/encryption_bench.py [--rows 200000] [--runs 3]

Fills bench/run.py's mixed-type table on DBTOOLS_PG_URL's server, then alternates, each run
in a fresh archive (so no table is reused from an earlier run) and its own process:
`dbtools snapshot create --target prod` without and with a key, and `dbtools snapshot verify
--restore` of each (schema.sql into a scratch database, the full load, every hash compared).
Prints the wall times (median) and the archive sizes; docs/BENCHMARKS.md quotes them.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import DDL, FILL, admin, db_url, run_sql


def _dbtools(args: list[str], env: dict[str, str]) -> tuple[float, dict[str, object]]:
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "dbtools", *args, "--json"],
        env=env,
        cwd=env["DBTOOLS_SNAPSHOT_DIR"],
        capture_output=True,
        text=True,
    )
    seconds = time.monotonic() - start
    if done.returncode != 0:
        raise SystemExit(f"dbtools {' '.join(args)} failed: {done.stdout}{done.stderr}")
    return seconds, json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    opts = parser.parse_args()
    name = f"dbt_encbench_{uuid.uuid4().hex[:8]}"
    admin(f'CREATE DATABASE "{name}"')
    url = db_url(name)
    times: dict[str, list[float]] = {}
    sizes: dict[str, int] = {}
    try:
        run_sql(url, DDL)
        run_sql(url, FILL.format(rows=opts.rows))
        run_sql(url, "ANALYZE bench")
        key = base64.b64encode(secrets.token_bytes(32)).decode()
        for _ in range(opts.runs):
            for label, extra in (("plain", {}), ("encrypted", {"DBTOOLS_ARCHIVE_KEY": key})):
                with tempfile.TemporaryDirectory() as archive:
                    Path(archive, "setup.cfg").write_text(f"[dbtools]\nprod_database = {name}\n")
                    env = {
                        **{k: v for k, v in os.environ.items() if not k.startswith("DBTOOLS_AR")},
                        **extra,
                        "PROD_DATABASE_URL": url,
                        "DBTOOLS_PROD_DATABASE": name,
                        "DBTOOLS_SNAPSHOT_DIR": archive,
                    }
                    took, out = _dbtools(["snapshot", "create", "--target", "prod"], env)
                    times.setdefault(f"create {label}", []).append(took)
                    sizes[label] = int(str(out["bytes"]))
                    took, _ = _dbtools(["snapshot", "verify", str(out["path"]), "--restore"], env)
                    times.setdefault(f"verify --restore {label}", []).append(took)
    finally:
        admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(f"{opts.rows:,} rows, {opts.runs} runs each, median wall time (all runs)")
    for what, values in times.items():
        shown = ", ".join(f"{v:.2f}" for v in values)
        print(f"  {what:28} {statistics.median(values):6.2f} s   ({shown})")
    for label, size in sizes.items():
        print(f"  archive {label:20} {size / 1e6:6.1f} MB")


if __name__ == "__main__":
    main()
