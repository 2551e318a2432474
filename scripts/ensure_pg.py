#!/usr/bin/env python3
"""Make sure a PostgreSQL server answers at DBTOOLS_PG_URL; print the URL to use on stdout.

1. If the server answers, done.
2. If the machine has a Debian cluster that is down, start it with pg_ctlcluster.
3. If no server is installed at all, fall back to an embedded server from the `pgserver`
   package (it ships PostgreSQL binaries). As root, pgserver creates a system user and
   loosens directory permissions so that user can run the server: this script says so on
   stderr before doing it, and only does it when DBTOOLS_ALLOW_PGSERVER is not "0".
Messages go to stderr so that `$(python scripts/ensure_pg.py)` captures just the URL.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def say(msg: str) -> None:
    print(f"ensure_pg: {msg}", file=sys.stderr)


def answers(url: str) -> bool:
    try:
        import psycopg2
    except ImportError:
        return subprocess.run(["pg_isready", "-d", url], capture_output=True).returncode == 0
    try:
        psycopg2.connect(url, connect_timeout=3).close()
        return True
    except psycopg2.Error:
        return False


def start_debian_clusters() -> bool:
    if not shutil.which("pg_ctlcluster") or not Path("/etc/postgresql").is_dir():
        return False
    for version in sorted(os.listdir("/etc/postgresql")):
        for cluster in sorted(os.listdir(f"/etc/postgresql/{version}")):
            say(f"starting local PostgreSQL {version}/{cluster}")
            subprocess.run(
                ["pg_ctlcluster", "--skip-systemctl-redirect", version, cluster, "start"],
                stdout=sys.stderr,
                stderr=sys.stderr,
            )
    return True


def start_pgserver(root: Path) -> str | None:
    if os.environ.get("DBTOOLS_ALLOW_PGSERVER", "1") == "0":
        return None
    say(
        "no PostgreSQL installed: using the embedded server of the `pgserver` package in "
        f"{root}. Running as root, pgserver creates a system user and loosens directory "
        "permissions so that user can run postgres (set DBTOOLS_ALLOW_PGSERVER=0 to refuse)."
    )
    try:
        import pgserver  # type: ignore[import-not-found]
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "pgserver"], check=True)
        import pgserver  # type: ignore[import-not-found]
    server = pgserver.get_server(root, cleanup_mode=None)
    return str(server.get_uri())


def main() -> int:
    url = os.environ.get("DBTOOLS_PG_URL", DEFAULT_URL)
    if answers(url):
        print(url)
        return 0
    if start_debian_clusters():
        for _ in range(30):
            if answers(url):
                print(url)
                return 0
            time.sleep(1)
        say(f"the local cluster did not answer at {url}")
        return 1
    embedded = start_pgserver(Path(__file__).resolve().parent.parent / ".pgserver")
    if embedded and answers(embedded):
        print(embedded)
        return 0
    say(f"no PostgreSQL server at {url} and none could be started")
    return 1


if __name__ == "__main__":
    sys.exit(main())
