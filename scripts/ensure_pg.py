#!/usr/bin/env python3
"""Make sure a PostgreSQL server answers at DBTOOLS_PG_URL; print the URL to use on stdout.

1. If the server answers, done.
2. If the machine has Debian clusters (pg_lsclusters), start the one cluster behind the URL:
   the one whose port is the URL's port, and only if the URL's host is this machine. Other
   clusters are never touched; a port no cluster uses, a cluster that is running but does
   not answer, or several clusters on one port are said on stderr, and nothing is started.
3. If no server is installed at all, fall back to an embedded server from the `pgserver`
   package (it ships PostgreSQL binaries). As root, pgserver creates a system user and
   loosens directory permissions so that user can run the server: this script says so on
   stderr before doing it, and only does it when DBTOOLS_ALLOW_PGSERVER is not "0".
Messages go to stderr so that `$(python scripts/ensure_pg.py)` captures just the URL.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
LOCAL_HOSTS = ("", "localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class Cluster:
    """One row of pg_lsclusters."""

    version: str
    name: str
    port: int
    status: str  # "online", "down", "online,recovery", ...

    @property
    def label(self) -> str:
        return f"{self.version}/{self.name}"


def say(msg: str) -> None:
    print(f"ensure_pg: {msg}", file=sys.stderr)


def shown(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        from dbtools.config import mask_url

        return str(mask_url(url))
    except ImportError:
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def url_params(url: str) -> dict[str, str]:
    """host and port of a URL or keyword/value string, as libpq reads them."""
    try:
        from psycopg2.extensions import parse_dsn

        return dict(parse_dsn(url))
    except ImportError:
        parts = urlsplit(url)
        params = {k: unquote(v) for k, _, v in (p.partition("=") for p in parts.query.split("&"))}
        if parts.hostname:
            params["host"] = parts.hostname
        if parts.port:
            params["port"] = str(parts.port)
        return params
    except Exception:  # a malformed URL: libpq would not reach any cluster with it
        return {"host": "?"}


def url_port(params: dict[str, str], environ: dict[str, str]) -> int:
    """The port libpq connects to (the first one of a multi-host URL): the URL's, else
    PGPORT, else 5432."""
    port = (params.get("port") or environ.get("PGPORT") or "5432").split(",")[0].strip()
    return int(port) if port.isdigit() else 5432


def is_local(params: dict[str, str], environ: dict[str, str]) -> bool:
    """Whether every host of the URL is this machine (a name of it or a socket directory)."""
    hosts = (params.get("host") or environ.get("PGHOST") or "").split(",")
    return all(h.strip() in LOCAL_HOSTS or h.strip().startswith("/") for h in hosts)


def parse_clusters(listing: str) -> list[Cluster]:
    """pg_lsclusters' output (its header line, if any, is skipped)."""
    out = []
    for line in listing.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[2].isdigit():
            out.append(Cluster(fields[0], fields[1], int(fields[2]), fields[3]))
    return out


def cluster_to_start(clusters: list[Cluster], port: int) -> tuple[Cluster | None, str]:
    """The one cluster behind `port` that is down, or None and why nothing is started."""
    on_port = [c for c in clusters if c.port == port]
    if not on_port:
        others = ", ".join(f"{c.label} on {c.port}" for c in clusters) or "none"
        return None, f"no local cluster uses port {port} (clusters: {others}); nothing started"
    running = [c for c in on_port if c.status.startswith("online")]
    if running:
        return None, (
            f"cluster {running[0].label} on port {port} is running but does not answer; "
            "nothing started"
        )
    if len(on_port) > 1:
        names = ", ".join(c.label for c in on_port)
        return None, (
            f"clusters {names} all use port {port}; start the one you mean with "
            "pg_ctlcluster VERSION NAME start"
        )
    return on_port[0], ""


def list_clusters() -> str | None:
    """pg_lsclusters' output, or None where Debian's PostgreSQL tools are not installed."""
    if not shutil.which("pg_lsclusters") or not shutil.which("pg_ctlcluster"):
        return None
    done = subprocess.run(["pg_lsclusters", "--no-header"], capture_output=True, text=True)
    return done.stdout if done.returncode == 0 else None


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


def start_cluster(url: str, listing: str) -> bool:
    """Start the cluster behind url and wait for it to answer; False (said why) otherwise."""
    params = url_params(url)
    if not is_local(params, dict(os.environ)):
        say(f"{shown(url)} is not on this machine: no local cluster is started for it")
        return False
    cluster, why = cluster_to_start(parse_clusters(listing), url_port(params, dict(os.environ)))
    if cluster is None:
        say(why)
        return False
    say(f"starting local PostgreSQL {cluster.label} (port {cluster.port})")
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", cluster.version, cluster.name, "start"],
        stdout=sys.stderr,
        stderr=sys.stderr,
    )
    for _ in range(30):
        if answers(url):
            return True
        time.sleep(1)
    say(f"cluster {cluster.label} did not answer at {shown(url)}")
    return False


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
    listing = list_clusters()
    if listing is not None:
        if start_cluster(url, listing):
            print(url)
            return 0
        return 1
    embedded = start_pgserver(Path(__file__).resolve().parent.parent / ".pgserver")
    if embedded and answers(embedded):
        print(embedded)
        return 0
    say(f"no PostgreSQL server at {shown(url)} and none could be started")
    return 1


if __name__ == "__main__":
    sys.exit(main())
