"""Benchmark: promoting dev to prod when dev differs in 1% of a 1M-row table, while an
application reads and writes prod.

    python bench/sync_bench.py [--rows 1000000] [--no-write]   (run by `make bench` too)

Two databases get the same table `big` (bigint key, text, numeric, timestamptz, bool, text);
dev then differs in 1% of its rows (a quarter inserted, half updated, a quarter deleted).
Each way of promoting dev runs on a fresh copy of that pair, as a real process (peak RSS from
wait4), while two threads act as the application on prod: a reader fetching a random row by
key and a writer inserting a row of its own, each in its own autocommit connection, every
5 ms. The longest single read and write during the run is how long prod's users waited.

  dbtools sync-data       the short-lock path: backup and staging while the app goes on,
                          the changed rows written under a write lock (reads never wait)
  dbtools plan + apply    `plan --save`, then `apply PLAN --yes` (measured separately)
  dbtools restore (full)  `restore <dev snapshot> --target prod`: today's full reload
  pg_dump + pg_restore    the manual alternative: pg_dump -Fc of prod (the backup) and of
                          dev, then pg_restore --clean --if-exists --single-transaction

Every run must leave prod's rows (those the application did not write) equal to dev's.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
from run import admin, db_url, machine, run_sql, write_block  # noqa: E402

APP_IDS = 100_000_000  # the application's own rows start here: never in dev
_APP_ROW = itertools.count(APP_IDS + 1)  # one sequence for every App of the run

DDL = """
CREATE TABLE big (id bigint PRIMARY KEY, name text, price numeric(12,2), at timestamptz,
                  ok bool, note text);
CREATE TABLE app_log (id bigint PRIMARY KEY, at timestamptz, what text);
"""
FILL = """
INSERT INTO big SELECT g, 'name ' || g, (g % 100000) / 100.0,
       timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second', g % 2 = 0,
       repeat(md5(g::text), 2)
FROM generate_series(1, {rows}) g
"""
# 1% of the rows: 0.25% deleted, 0.5% updated, 0.25% inserted (ids past the end)
CHANGE = """
DELETE FROM big WHERE id % 400 = 1;
UPDATE big SET name = 'changed ' || id WHERE id % 200 = 3;
INSERT INTO big SELECT {rows} + g, 'new ' || g, 1.5, now(), true, 'new'
FROM generate_series(1, {rows} / 400) g;
"""
SAME = "SELECT count(*), md5(string_agg(t::text, ',' ORDER BY id)) FROM big t WHERE id < {app}"


@dataclass
class Waits:
    """The longest single statement of the application's reader and writer."""

    read: float = 0.0
    write: float = 0.0
    reads: int = 0
    writes: int = 0
    errors: list[str] = field(default_factory=list)


class App:
    """A reader and a writer on prod, every 5 ms, until stopped."""

    def __init__(self, url: str, rows: int, table: str = "big") -> None:
        self.url, self.rows, self.table = url, rows, table
        self.waits = Waits()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._loop, args=(self._read,), daemon=True),
            threading.Thread(target=self._loop, args=(self._write,), daemon=True),
        ]

    def _read(self, cur: Any) -> None:
        start = time.perf_counter()
        cur.execute("SELECT * FROM big WHERE id = %s", (random.randint(1, self.rows),))
        cur.fetchall()
        self.waits.read = max(self.waits.read, time.perf_counter() - start)
        self.waits.reads += 1

    def _write(self, cur: Any) -> None:
        row = next(_APP_ROW)
        start = time.perf_counter()
        if self.table == "big":
            sql = "INSERT INTO big VALUES (%s, 'app', 1, now(), true, 'written by the app')"
        else:
            sql = "INSERT INTO app_log VALUES (%s, now(), 'written by the app')"
        cur.execute(sql, (row,))
        self.waits.write = max(self.waits.write, time.perf_counter() - start)
        self.waits.writes += 1

    def _loop(self, step: Any) -> None:
        conn = psycopg2.connect(self.url)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                while not self._stop.is_set():
                    try:
                        step(cur)
                    except psycopg2.Error as exc:  # the manual restore drops the table
                        self.waits.errors.append(str(exc).splitlines()[0])
                        time.sleep(0.05)
                    time.sleep(0.005)
        finally:
            conn.close()

    def __enter__(self) -> App:
        for t in self._threads:
            t.start()
        time.sleep(0.3)  # the application is running before the sync starts
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()


@dataclass
class Run:
    name: str
    seconds: float
    peak_rss_mb: float
    waits: Waits
    exact: bool
    lock: dict[str, Any] = field(default_factory=dict)
    note: str = ""


def _timed(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, str]:
    """Run one process; its seconds, its own peak RSS (wait4) and its stdout."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=cwd)
    # read both pipes while it runs (a full pipe would stall it), then reap it with wait4
    chunks: dict[str, bytes] = {}

    def drain(name: str, stream: Any) -> None:
        chunks[name] = stream.read()

    readers = [
        threading.Thread(target=drain, args=("out", proc.stdout)),
        threading.Thread(target=drain, args=("err", proc.stderr)),
    ]
    for r in readers:
        r.start()
    _, status, usage = os.wait4(proc.pid, 0)
    for r in readers:
        r.join()
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        err = (chunks.get("out", b"") + chunks.get("err", b"")).decode()[-2000:]
        raise SystemExit(f"{' '.join(argv[:4])} failed ({proc.returncode}): {err}")
    return seconds, usage.ru_maxrss / 1024, chunks.get("out", b"").decode()


class Pair:
    """dev and prod databases with the table, dev 1% different, and a project for the CLI."""

    def __init__(self, rows: int, work: Path) -> None:
        tag = uuid.uuid4().hex[:8]
        self.rows = rows
        self.dev_name, self.prod_name = f"dbt_bench_{tag}_dev", f"dbt_bench_{tag}_prod"
        for name in (self.dev_name, self.prod_name):
            admin(f'CREATE DATABASE "{name}"')
        self.dev, self.prod = db_url(self.dev_name), db_url(self.prod_name)
        for url in (self.dev, self.prod):
            run_sql(url, DDL)
            run_sql(url, FILL.format(rows=rows))
        run_sql(self.dev, CHANGE.format(rows=rows))
        for url in (self.dev, self.prod):
            run_sql(url, "VACUUM ANALYZE big")
        self.root = work / tag
        (self.root / "migrations").mkdir(parents=True)
        checks = self.root / "checks"
        checks.mkdir()
        (checks / "rows.sql").write_text(
            "-- check: rows\n-- description: prod has rows\n-- expect: > 0\n"
            "SELECT count(*) FROM big WHERE id < 10;\n"
        )
        (self.root / "setup.cfg").write_text(
            "[dbtools]\n"
            f"dev_database = {self.dev_name}\nprod_database = {self.prod_name}\n"
            f"migrations_dir = {self.root / 'migrations'}\nchecks_dir = {checks}\n"
            "preserved_tables = app_log\n"
            "lock_timeout_seconds = 10\n"
        )
        self.env = {
            **os.environ,
            "DEV_DATABASE_URL": self.dev,
            "PROD_DATABASE_URL": self.prod,
            "DBTOOLS_SNAPSHOT_DIR": str(self.root / "snapshots"),
            "PYTHONPATH": str(REPO),
        }
        self.env.pop("DBTOOLS_DEV_DATABASE", None)
        self.env.pop("DBTOOLS_PROD_DATABASE", None)

    def cli(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "dbtools", *args]

    def exact(self) -> bool:
        sql = SAME.format(app=APP_IDS)
        return run_sql(self.dev, sql) == run_sql(self.prod, sql)

    def drop(self) -> None:
        for name in (self.dev_name, self.prod_name):
            admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _sync_data(pair: Pair) -> list[Run]:
    with App(pair.prod, pair.rows) as app:
        s, rss, out = _timed(pair.cli("sync-data", "--yes", "--json"), pair.env, pair.root)
    data = json.loads(out)
    return [Run("dbtools sync-data", s, rss, app.waits, pair.exact(), data.get("lock") or {})]


def _plan_apply(pair: Pair) -> list[Run]:
    # The application writes app_log (preserved: prod keeps its rows) here: a plan is stale,
    # and refused, once rows it compared in prod have changed.
    with App(pair.prod, pair.rows, "app_log") as app:
        s, rss, out = _timed(pair.cli("plan", "--save", "--json"), pair.env, pair.root)
    saved = json.loads(out)["saved"]
    note = "reads only; the application writes app_log, a preserved table, during plan and apply"
    runs = [Run("dbtools plan --save", s, rss, app.waits, True, note=note)]
    with App(pair.prod, pair.rows, "app_log") as app:
        s, rss, out = _timed(pair.cli("apply", saved, "--yes", "--json"), pair.env, pair.root)
    data = json.loads(out)
    runs.append(Run("dbtools apply PLAN", s, rss, app.waits, pair.exact(), data.get("lock") or {}))
    return runs


def _restore_full(pair: Pair) -> list[Run]:
    _, _, out = _timed(
        pair.cli("snapshot", "create", "--target", "dev", "--json"), pair.env, pair.root
    )
    snap = json.loads(out)["path"]
    with App(pair.prod, pair.rows) as app:
        s, rss, _ = _timed(
            pair.cli(
                "restore", snap, "--target", "prod", "--allow-other-source", "--yes", "--json"
            ),
            pair.env,
            pair.root,
        )
    note = "backup + full reload under ACCESS EXCLUSIVE (the pre-#12 sync-data)"
    return [Run("dbtools restore --target prod", s, rss, app.waits, pair.exact(), note=note)]


def _manual(pair: Pair) -> list[Run]:
    backup, dump = pair.root / "prod.dump", pair.root / "dev.dump"
    with App(pair.prod, pair.rows) as app:
        start = time.perf_counter()
        t1, r1, _ = _timed(
            ["pg_dump", "-Fc", "-f", str(backup), "-d", pair.prod], pair.env, pair.root
        )
        t2, r2, _ = _timed(
            ["pg_dump", "-Fc", "-t", "big", "-f", str(dump), "-d", pair.dev], pair.env, pair.root
        )
        t3, r3, _ = _timed(
            [
                "pg_restore",
                "--clean",
                "--if-exists",
                "--single-transaction",
                "-d",
                pair.prod,
                str(dump),
            ],
            pair.env,
            pair.root,
        )
        s = time.perf_counter() - start
    note = f"pg_dump prod {t1:.2f} s + pg_dump dev {t2:.2f} s + pg_restore {t3:.2f} s"
    return [
        Run(
            "pg_dump ×2 + pg_restore --single-transaction",
            s,
            max(r1, r2, r3),
            app.waits,
            pair.exact(),
            note=note,
        )
    ]


CASES = {
    "sync-data": _sync_data,
    "plan+apply": _plan_apply,
    "restore": _restore_full,
    "manual": _manual,
}


def run(rows: int) -> list[Run]:
    work = Path(tempfile.mkdtemp(prefix="dbtools-syncbench-"))
    out: list[Run] = []
    try:
        for case in CASES.values():
            pair = Pair(rows, work)
            try:
                out += case(pair)
            finally:
                pair.drop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def report(rows: int, runs: list[Run]) -> str:
    lines = [
        f"### Promotion: {rows:,} rows, dev differs in 1% (sync while the app reads and writes)",
        "",
        "| run | seconds | peak RSS MB | longest read | longest write | writes held | exact |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in runs:
        held = r.lock.get("seconds")
        mode = r.lock.get("mode", "")
        held_s = f"{held:.2f} s ({mode})" if isinstance(held, (int, float)) else "-"
        lines.append(
            f"| {r.name} | {r.seconds:.2f} | {r.peak_rss_mb:.0f} | {r.waits.read * 1000:.0f} ms "
            f"| {r.waits.write * 1000:.0f} ms | {held_s} | {'exact' if r.exact else 'NOT exact'} |"
        )
    lines.append("")
    for r in runs:
        extra = "; ".join(x for x in (r.note, r.lock.get("reason", "")) if x)
        if r.waits.errors:
            extra += f"; the application saw {len(r.waits.errors)} errors: {r.waits.errors[0]}"
        if extra:
            lines.append(f"- {r.name}: {extra}")
    lines += [
        "",
        "Longest read/write: the slowest single statement of the application's reader and "
        "writer (every 5 ms, autocommit) during the run. Writes held: from the lock to the "
        "commit, as the run reports it (`lock.seconds` in --json). Exact: prod's rows other "
        "than the application's own equal dev's.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--no-write", action="store_true", help="do not write docs/BENCHMARKS.md")
    args = parser.parse_args()
    text = report(args.rows, run(args.rows))
    print(machine())
    print(text)
    if not args.no_write:
        write_block("bench:sync", text)


if __name__ == "__main__":
    main()
