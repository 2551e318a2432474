#!/usr/bin/env python3
"""`make demo`: the main job, end to end, on two local databases named like the real ones.

On the local server (DBTOOLS_PG_URL) it (re)creates exactly two databases, literally named
Buildappswith-dev and Buildappswith-prod, and puts them where the seed's process started:
dev migrated to head and seeded with the marketplace (18 builders), prod at an older
migration with stale data (Liam as liam@buildappswith.ai, one builder). Then it runs
`dbtools full-sync --yes` and `dbtools check --target prod` as a user would, and exits
non-zero if either fails. Running it again starts over from the same point: it drops and
recreates those two databases, and nothing else, and refuses any server that is not local.

It ends with what a newcomer needs to drive dbtools from their own shell: the two URL exports
it used (never a password: the local server is trust auth), how to put dbtools on PATH and
turn on tab completion, and three commands to try next (`next_steps`).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg2

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))

from dbtools.config import mask_url  # noqa: E402
from dbtools.db import Target  # noqa: E402
from dbtools.migrations import apply_all  # noqa: E402

SERVER = os.environ.get("DBTOOLS_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
NAMES = {"dev": "Buildappswith-dev", "prod": "Buildappswith-prod"}
PROD_START = "0002_marketplace_fields"  # prod starts one migration behind dev


def url_for(name: str) -> str:
    p = urlsplit(SERVER)
    return urlunsplit((p.scheme, p.netloc, "/" + name, p.query, ""))


# What to try after the demo: read-only, and meaningful on the two databases it leaves.
TRY_NEXT = (
    ("dbtools diff", "dev vs prod: they match; preserved tables keep prod's rows"),
    ("dbtools history", "prod's own record of the sync the demo just made"),
    ("dbtools rollback --dry-run", "what an emergency rollback would restore (writes nothing)"),
)


def without_password(url: str) -> str:
    p = urlsplit(url)
    if p.password is None:
        return url
    netloc = p.netloc.rpartition("@")[2]
    if p.username is not None:
        netloc = f"{p.netloc.rpartition('@')[0].partition(':')[0]}@{netloc}"
    return urlunsplit((p.scheme, netloc, p.path, p.query, p.fragment))


def next_steps(dev_url: str, prod_url: str, prefix: Path, cwd: Path) -> list[str]:
    """The demo's last lines: the exports it used, dbtools on PATH, completion, what to try.
    dbtools finds its project from the current directory, so a cwd outside the repository
    gets a `cd` first."""
    lines = ["to drive dbtools yourself from this shell:"]
    here = cwd
    if cwd != REPO and REPO not in cwd.parents:
        lines.append(f"  cd {shlex.quote(str(REPO))}")
        here = REPO
    bin_dir = prefix / "bin"
    try:
        shown_bin = bin_dir.relative_to(here)
    except ValueError:
        shown_bin = bin_dir
    for name, url in (("DEV_DATABASE_URL", dev_url), ("PROD_DATABASE_URL", prod_url)):
        lines.append(f"  export {name}={shlex.quote(without_password(url))}")
    if any(without_password(u) != u for u in (dev_url, prod_url)):
        lines.append("  # (the password is left out: libpq reads it from PGPASSWORD or ~/.pgpass)")
    activate = shlex.quote(str(shown_bin / "activate"))
    lines += [
        f"  source {activate}    # puts dbtools on PATH (or run {shown_bin / 'dbtools'})",
        '  eval "$(_DBTOOLS_COMPLETE=bash_source dbtools)"    # tab completion (zsh: zsh_source)',
        "then try:",
    ]
    width = max(len(cmd) for cmd, _ in TRY_NEXT)
    lines += [f"  {cmd.ljust(width)}    # {what}" for cmd, what in TRY_NEXT]
    return lines


def say(text: str) -> None:
    print(f"demo: {text}", flush=True)


def recreate(name: str) -> None:
    conn = psycopg2.connect(SERVER)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone() is not None:
                say(f"dropping the previous demo database {name}")
                cur.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            cur.execute(f'CREATE DATABASE "{name}"')
            say(f"created database {name}")
    finally:
        conn.close()


def main() -> int:
    server = Target("server", SERVER, "")
    if not server.is_local:
        print(
            f"demo: refusing: DBTOOLS_PG_URL ({mask_url(SERVER)}) is not a local server; the "
            "demo drops and recreates databases and only ever does so locally",
            file=sys.stderr,
        )
        return 3
    say(
        f"local server {mask_url(SERVER)}: dropping and recreating only the two demo databases "
        f"{NAMES['dev']} and {NAMES['prod']}"
    )
    try:
        from seed_demo import seed, seed_stale_prod

        for name in NAMES.values():
            recreate(name)
        dev_url, prod_url = url_for(NAMES["dev"]), url_for(NAMES["prod"])
        applied = apply_all(dev_url, REPO / "migrations")
        say(f"dev migrated to head: {', '.join(applied)}")
        applied = apply_all(prod_url, REPO / "migrations", upto=PROD_START)
        say(f"prod migrated to an older migration: {', '.join(applied)}")
        counts = seed(dev_url)
        say(f"dev seeded: {counts.get('User')} users, {counts.get('BuilderProfile')} builders")
        seed_stale_prod(prod_url)
        say("prod given stale data: liam@buildappswith.ai and one builder")
    except Exception as exc:  # one line for the operator, never a traceback
        print(f"demo: setup failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2

    env = {k: v for k, v in os.environ.items() if not k.startswith("DBTOOLS_")}
    env["DBTOOLS_PG_URL"] = SERVER
    env["DEV_DATABASE_URL"] = dev_url
    env["PROD_DATABASE_URL"] = prod_url
    env["DBTOOLS_SNAPSHOT_DIR"] = os.environ.get("DBTOOLS_SNAPSHOT_DIR") or str(REPO / "snapshots")
    dbtools = [sys.executable, "-m", "dbtools"]
    for args in (["full-sync", "--yes"], ["check", "--target", "prod"]):
        say(f"$ dbtools {' '.join(args)}")
        code = subprocess.run([*dbtools, *args], env=env, cwd=REPO).returncode
        if code != 0:
            say(f"dbtools {args[0]} failed (exit {code})")
            return code
    say("done: prod matches dev and every check is green")
    # Without the "demo: " prefix, so that the lines can be copied as they are.
    print("\n" + "\n".join(next_steps(dev_url, prod_url, Path(sys.prefix), Path.cwd())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
