#!/usr/bin/env python3
"""`make demo`: the main job on two local databases named like the real ones.

Creates Buildappswith-dev and Buildappswith-prod on the local server (DBTOOLS_PG_URL) if
they are missing and runs `dbtools verify` against them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from urllib.parse import urlsplit, urlunsplit

import psycopg2

SERVER = os.environ.get("DBTOOLS_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
NAMES = {"dev": "Buildappswith-dev", "prod": "Buildappswith-prod"}


def url_for(name: str) -> str:
    p = urlsplit(SERVER)
    return urlunsplit((p.scheme, p.netloc, "/" + name, p.query, ""))


def ensure_database(name: str) -> None:
    conn = psycopg2.connect(SERVER)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        if cur.fetchone() is None:
            cur.execute(f'CREATE DATABASE "{name}"')
            print(f"demo: created database {name}")
    conn.close()


def main() -> int:
    for name in NAMES.values():
        ensure_database(name)
    env = dict(os.environ)
    env["DEV_DATABASE_URL"] = url_for(NAMES["dev"])
    env["PROD_DATABASE_URL"] = url_for(NAMES["prod"])
    dbtools = [sys.executable, "-m", "dbtools"]
    return subprocess.run([*dbtools, "verify"], env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
