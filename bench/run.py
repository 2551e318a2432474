"""Benchmark: dbtools' table export/load against pg_dump/pg_restore and naive pandas.

    python bench/run.py [--rows 1000000 [--rows 3000000]] [--only dbtools] [--no-write]
    (make bench; BENCH_ARGS="--rows 1000000 --rows 3000000" adds the 3M memory point)

Then, unless --no-sync, the promotion case of bench/sync_bench.py (sync-data, plan + apply,
a full reload and pg_dump + pg_restore while an application reads and writes prod) at the
smallest --rows.

Generates a mixed-type table on DBTOOLS_PG_URL's server, then times, each in its own
subprocess so that its peak RSS can be read from wait4():
  dbtools export      export_table(): COPY csv -> Arrow -> zstd Parquet, plus the content hash
                      on a second connection in the same snapshot (hash_conn), concurrently
  dbtools load        load_table() into an empty copy of the table (TRUNCATE + COPY FREEZE in
                      the text format), then the verification content_hash
  pg_dump -Fc -t      / pg_restore --data-only into an empty copy
  pandas (naive)      pd.read_sql + DataFrame.to_parquet; pd.read_parquet + DataFrame.to_csv
                      into COPY FROM STDIN (SQLAlchemy is not installed, so no to_sql)
Prints a table and, unless --no-write, writes docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg2

REPO = Path(__file__).resolve().parent.parent
SERVER_URL = os.environ.get("DBTOOLS_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
TABLE = "bench"

DDL = """
CREATE TYPE bench_role AS ENUM ('CLIENT', 'BUILDER', 'ADMIN', 'SUBSCRIBER');
CREATE TABLE bench (
  id int8 PRIMARY KEY, n int4, big int8, price numeric(12,2), ratio float8, name text,
  flag bool, created timestamp(3), seen timestamptz, meta jsonb, tags text[], uid uuid,
  role bench_role
);
"""

FILL = """
INSERT INTO bench
SELECT g, ((g * 7919) % 100000)::int4, g * 1000003, round((random() * 1e6)::numeric, 2),
       CASE WHEN g % 1000 = 0 THEN NULL ELSE random() END,
       CASE WHEN g % 500 = 0 THEN '' ELSE repeat(md5(g::text), (1 + g % 6)::int) END,
       g % 3 = 0, timestamp '2020-01-01' + g * interval '1.234 second',
       timestamptz '2024-01-01 00:00:00+00' - g * interval '61.000123 second',
       jsonb_build_object('k', g, 'name', md5(g::text), 'ok', g % 2 = 0),
       ARRAY['a' || g % 10, 'tag "' || g % 100 || '"'], md5(g::text)::uuid,
       (enum_range(NULL::bench_role))[(1 + g % 4)::int]
FROM generate_series(1::int8, {rows}) g
"""


def db_url(name: str) -> str:
    parts = urlsplit(SERVER_URL)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, ""))


def admin(sql: str) -> None:
    conn = psycopg2.connect(SERVER_URL)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


def run_sql(url: str, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


# --- the measured steps, each run in a child process ----------------------------------------


def _dbtools_conn(url: str) -> Any:
    from dbtools import db

    return db.connect(db.Target(env="dev", url=url, expected_name=""), purpose="copy")


def step_dbtools_export(url: str, out: Path, concurrent_hash: bool = True) -> dict[str, Any]:
    """As `snapshot create` runs it: the hash on a second connection in the same snapshot."""
    from dbtools import catalog
    from dbtools.snapshot.export import export_table

    conn = _dbtools_conn(url)
    conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
    hash_conn = None
    if concurrent_hash:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_export_snapshot()")
            snapshot_id = cur.fetchone()[0]
        hash_conn = _dbtools_conn(url)
        hash_conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
        with hash_conn.cursor() as cur:
            cur.execute("SET TRANSACTION SNAPSHOT %s", (snapshot_id,))
    table = catalog.read_catalog(conn, ["public"]).table(f"public.{TABLE}")
    result = export_table(conn, table, out, hash_conn=hash_conn)
    conn.rollback()
    if hash_conn is not None:
        hash_conn.rollback()
    return {"rows": result.rows, "bytes": result.bytes, "hash": result.content_hash}


def step_dbtools_export_serial(url: str, out: Path) -> dict[str, Any]:
    return step_dbtools_export(url, out, concurrent_hash=False)


def step_dbtools_load(
    url: str, out: Path, freeze: bool = True, verify: bool = True
) -> dict[str, Any]:
    from dbtools import catalog
    from dbtools.snapshot.hashing import content_hash
    from dbtools.snapshot.load import load_table

    manifest = json.loads((out / "export.json").read_text())
    conn = _dbtools_conn(url)
    table = catalog.read_catalog(conn, ["public"]).table(f"public.{TABLE}")
    with conn.cursor() as cur:
        cur.execute(f"TRUNCATE {table.qualified}")
    start = time.perf_counter()
    rows = load_table(conn, table, out, manifest["files"], manifest["columns"], freeze=freeze)
    loaded = time.perf_counter()
    digest = content_hash(conn, table, [c["name"] for c in manifest["columns"]]) if verify else ""
    conn.commit()
    return {
        "rows": rows,
        "hash": digest,
        "load_table_s": round(loaded - start, 2),
        "content_hash_s": round(time.perf_counter() - loaded, 2),
    }


def step_pandas_export(url: str, out: Path) -> dict[str, Any]:
    import warnings

    import pandas as pd

    warnings.simplefilter("ignore")
    conn = psycopg2.connect(url)
    frame = pd.read_sql(f"SELECT * FROM {TABLE}", conn)
    frame.to_parquet(out / "pandas.parquet")
    return {"rows": len(frame), "bytes": (out / "pandas.parquet").stat().st_size}


def step_pandas_load(url: str, out: Path) -> dict[str, Any]:
    import io

    import pandas as pd

    frame = pd.read_parquet(out / "pandas.parquet")
    # The minimum that makes PostgreSQL accept the frame at all: pandas prints dicts and
    # lists as Python reprs. Nothing else is corrected (NaN/None and '' stay as pandas has them).
    for name in frame.columns:
        sample = frame[name].dropna()
        first = sample.iloc[0] if len(sample) else None
        if isinstance(first, dict):
            frame[name] = frame[name].map(lambda v: None if v is None else json.dumps(v))
        elif first is not None and hasattr(first, "__len__") and not isinstance(first, str):
            frame[name] = frame[name].map(_pg_array)
    buf = io.StringIO()
    frame.to_csv(buf, index=False, header=False)
    buf.seek(0)
    conn = psycopg2.connect(url)
    with conn.cursor() as cur:
        cur.execute(f"TRUNCATE {TABLE}")
        cur.copy_expert(f"COPY {TABLE} FROM STDIN WITH (FORMAT csv)", buf)
    conn.commit()
    return {"rows": len(frame)}


def _pg_array(value: Any) -> str | None:
    if value is None:
        return None
    items = ['"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"' for v in value]
    return "{" + ",".join(items) + "}"


STEPS = {
    "dbtools_export": step_dbtools_export,
    "dbtools_export_serial": step_dbtools_export_serial,
    "dbtools_load": step_dbtools_load,
    "pandas_export": step_pandas_export,
    "pandas_load": step_pandas_load,
}


# --- the driver ---------------------------------------------------------------------------------


@dataclass
class Measure:
    name: str
    seconds: float
    peak_rss_mb: float
    info: dict[str, Any]


def _measure(name: str, argv: list[str], env: dict[str, str] | None = None) -> Measure:
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    # wait4 gives this child's own rusage; RUSAGE_CHILDREN would be the max over all steps.
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    assert proc.stdout is not None and proc.stderr is not None
    stdout, stderr = proc.stdout.read(), proc.stderr.read()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed ({proc.returncode}): {stderr.decode()[-2000:]}")
    info: dict[str, Any] = {}
    if stdout.strip().startswith(b"{"):
        info = json.loads(stdout)
    return Measure(name, seconds, usage.ru_maxrss / 1024, info)


def _python_step(step: str, url: str, out: Path) -> list[str]:
    return [sys.executable, __file__, "--step", step, "--url", url, "--out", str(out)]


def prepare(rows: int, src_name: str, dst_name: str) -> tuple[str, str, int]:
    admin(f'CREATE DATABASE "{src_name}"')
    admin(f'CREATE DATABASE "{dst_name}"')
    src, dst = db_url(src_name), db_url(dst_name)
    run_sql(src, DDL)
    run_sql(dst, DDL)
    run_sql(src, FILL.format(rows=int(rows)))
    run_sql(src, "VACUUM ANALYZE bench")
    size = run_sql(src, "SELECT pg_total_relation_size('bench')")[0][0]
    return src, dst, int(size)


def same_rows(src: str, dst: str) -> bool:
    sql = "SELECT count(*), sum(('x' || left(md5(t::text), 16))::bit(64)::bigint) FROM bench t"
    return run_sql(src, sql) == run_sql(dst, sql)


def run(rows: int, only: str | None) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    src_name, dst_name = f"dbtools_bench_{tag}_src", f"dbtools_bench_{tag}_dst"
    work = Path(tempfile.mkdtemp(prefix="dbtools-bench-"))
    results: dict[str, Measure] = {}
    exact: dict[str, bool] = {}
    try:
        src, dst, size = prepare(rows, src_name, dst_name)
        m = _measure("dbtools export", _python_step("dbtools_export", src, work))
        results["dbtools export"] = m
        (work / "export.json").write_text(
            json.dumps(
                {
                    "files": ["public.bench.parquet"],
                    "columns": _columns_of(work / "public.bench.parquet"),
                }
            )
        )
        results["dbtools load"] = _measure("dbtools load", _python_step("dbtools_load", dst, work))
        exact["dbtools"] = same_rows(src, dst)
        if results["dbtools load"].info.get("hash") != m.info.get("hash"):
            exact["dbtools"] = False
        if only != "dbtools":
            dump = work / "bench.dump"
            results["pg_dump -Fc"] = _measure(
                "pg_dump", ["pg_dump", "-Fc", "-t", TABLE, "-f", str(dump), "-d", src]
            )
            run_sql(dst, "TRUNCATE bench")
            results["pg_restore --data-only"] = _measure(
                "pg_restore", ["pg_restore", "--data-only", "-d", dst, str(dump)]
            )
            exact["pg_dump"] = same_rows(src, dst)
            results["pandas export"] = _measure(
                "pandas export", _python_step("pandas_export", src, work)
            )
            results["pandas load"] = _measure("pandas load", _python_step("pandas_load", dst, work))
            exact["pandas"] = same_rows(src, dst)
        sizes = {
            "parquet (dbtools)": (work / "public.bench.parquet").stat().st_size,
        }
        if (work / "bench.dump").exists():
            sizes["pg_dump -Fc"] = (work / "bench.dump").stat().st_size
        if (work / "pandas.parquet").exists():
            sizes["parquet (pandas)"] = (work / "pandas.parquet").stat().st_size
    finally:
        shutil.rmtree(work, ignore_errors=True)
        admin(f'DROP DATABASE IF EXISTS "{src_name}" WITH (FORCE)')
        admin(f'DROP DATABASE IF EXISTS "{dst_name}" WITH (FORCE)')
    return {"rows": rows, "table_bytes": size, "results": results, "exact": exact, "sizes": sizes}


def _columns_of(path: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    return [{"name": n} for n in pq.read_schema(path).names]


def report(runs: list[dict[str, Any]]) -> str:
    lines: list[str] = []
    for r in runs:
        res: dict[str, Measure] = r["results"]
        lines.append(
            f"### {r['rows']:,} rows ({r['table_bytes'] / 2**20:.0f} MB in PostgreSQL, "
            "table and primary key)"
        )
        lines.append("")
        lines.append("| step | seconds | peak RSS MB | vs pg_dump/pg_restore |")
        lines.append("|---|---:|---:|---:|")
        dump = res.get("pg_dump -Fc")
        restore = res.get("pg_restore --data-only")
        for name, m in res.items():
            base = dump if "export" in name or "dump" in name else restore
            ratio = f"{m.seconds / base.seconds:.2f}x" if base else "-"
            lines.append(f"| {name} | {m.seconds:.2f} | {m.peak_rss_mb:.0f} | {ratio} |")
        lines.append("")
        exact = ", ".join(f"{k}: {'exact' if v else 'NOT exact'}" for k, v in r["exact"].items())
        sizes = ", ".join(f"{k} {v / 2**20:.1f} MB" for k, v in r["sizes"].items())
        inner = res.get("dbtools load")
        if inner and "load_table_s" in inner.info:
            lines.append(
                f"Inside `dbtools load`: load_table {inner.info['load_table_s']} s, then the "
                f"verification content_hash {inner.info['content_hash_s']} s.  "
            )
        lines.append(f"Row-for-row comparison after the round trip: {exact}.  ")
        lines.append(f"Output sizes: {sizes}.")
        lines.append("")
    return "\n".join(lines)


def machine() -> str:
    server = run_sql(SERVER_URL, "SELECT current_setting('server_version')")[0][0]
    import pyarrow

    return (
        f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"pyarrow {pyarrow.__version__}, PostgreSQL {server} on the same machine"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, action="append", help="rows (repeatable)")
    parser.add_argument("--only", choices=["dbtools"], help="measure dbtools only")
    parser.add_argument(
        "--compare-up-to",
        type=int,
        default=1_000_000,
        help="larger --rows runs measure dbtools only (pandas at 3M needs ~8 GB)",
    )
    parser.add_argument("--no-write", action="store_true", help="do not write docs/BENCHMARKS.md")
    parser.add_argument(
        "--no-sync", action="store_true", help="skip the sync-data / plan+apply case (sync_bench)"
    )
    parser.add_argument("--step", choices=sorted(STEPS), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        print(json.dumps(STEPS[args.step](args.url, Path(args.out))))
        return
    runs = [
        run(rows, "dbtools" if rows > args.compare_up_to else args.only)
        for rows in (args.rows or [1_000_000])
    ]
    text = report(runs)
    print(machine())
    print(text)
    if not args.no_sync:  # the promotion case, in the same run (bench/sync_bench.py)
        import sync_bench

        sync_rows = min(args.rows or [1_000_000])
        sync_text = sync_bench.report(sync_rows, sync_bench.run(sync_rows))
        print(sync_text)
        if not args.no_write:
            write_block("bench:sync", sync_text)
    if not args.no_write:
        write_block("bench:results", text)


def write_block(name: str, text: str) -> None:
    """Put `text`, stamped with the time and machine, between the two `<!-- name -->`
    markers of docs/BENCHMARKS.md (at its end the first time)."""
    target = REPO / "docs" / "BENCHMARKS.md"
    body = target.read_text() if target.exists() else "# Benchmarks\n"
    marker = f"<!-- {name} -->"
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    block = f"{marker}\nMeasured {stamp} on {machine()}.\n\n{text}{marker}"
    if body.count(marker) == 2:
        head, _, rest = body.partition(marker)
        _, _, tail = rest.partition(marker)
        body = head + block + tail
    else:
        body = body.rstrip("\n") + "\n\n" + block + "\n"
    target.write_text(body)
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
