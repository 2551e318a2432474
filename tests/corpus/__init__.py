"""Real-world-shaped schemas with deterministic data, and the state helpers that compare them.

Each corpus is a schema file (`<name>.sql`, plain SQL run as-is on an empty database), a
data generator (`<name>.py`: `fill(conn, side, scale)`, seeded per side so dev and prod get
different rows, the same ones on every run), a checks directory for the sync's before-commit
checks, and the project settings an operator would write for it (schemas, excluded and
preserved tables, written exactly as they appear in setup.cfg).

The helpers read a database's state the way a user would check it by hand:
`table_states` gives, per relation with storage (tables, partitions, inheritance children,
materialized views), the md5 of its rows' text in sorted order and the row count, reading
each relation with ONLY so that a row in the wrong partition or parent shows up;
`sequence_states` gives every sequence's last_value and is_called; `schema_dump` is pg_dump
--schema-only without comments and SET lines.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import psycopg2.extensions

from dbtools import db

HERE = Path(__file__).resolve().parent

Conn = psycopg2.extensions.connection
Fill = Callable[[Conn, str, int], None]


@dataclass(frozen=True)
class Corpus:
    name: str
    schemas: tuple[str, ...]
    excluded: tuple[str, ...]  # as written in setup.cfg
    preserved: tuple[str, ...]  # as written in setup.cfg
    excluded_keys: tuple[str, ...]  # the same tables as "schema.table"
    preserved_keys: tuple[str, ...]
    fill: Fill

    @property
    def schema_sql(self) -> Path:
        return HERE / f"{self.name}.sql"

    @property
    def checks_dir(self) -> Path:
        return HERE / "checks" / self.name

    def setup_cfg(
        self, dev_name: str, prod_name: str, migrations_dir: Path, lock_timeout: int = 10
    ) -> str:
        """The [dbtools] section an operator writes for this project."""
        return (
            "[dbtools]\n"
            f"dev_database = {dev_name}\n"
            f"prod_database = {prod_name}\n"
            f"schemas = {', '.join(self.schemas)}\n"
            f"excluded_tables = {', '.join(self.excluded)}\n"
            f"preserved_tables = {', '.join(self.preserved)}\n"
            f"migrations_dir = {migrations_dir}\n"
            f"checks_dir = {self.checks_dir}\n"
            f"lock_timeout_seconds = {lock_timeout}\n"
        )


def _corpora() -> dict[str, Corpus]:
    from corpus import ecommerce, media, saas

    return {
        "ecommerce": Corpus(
            name="ecommerce",
            schemas=("public",),
            excluded=("search_log", "email_outbox", "events_archive"),
            preserved=("customer_sessions",),
            excluded_keys=("public.search_log", "public.email_outbox", "public.events_archive"),
            preserved_keys=("public.customer_sessions",),
            fill=ecommerce.fill,
        ),
        "saas": Corpus(
            name="saas",
            schemas=("app", "billing"),
            excluded=('app."naïve ""quote"""',),  # setup.cfg quoting, as documented
            preserved=("billing.50% off",),
            excluded_keys=('app.naïve "quote"',),
            preserved_keys=("billing.50% off",),
            fill=saas.fill,
        ),
        "media": Corpus(
            name="media",
            schemas=("public",),
            excluded=(),
            preserved=("share_links",),
            excluded_keys=(),
            preserved_keys=("public.share_links",),
            fill=media.fill,
        ),
    }


CORPORA = _corpora()


def connect(url: str) -> Conn:
    """A connection whose text output is dbtools' (UTC, ISO dates, exact floats, hex bytea)."""
    conn = psycopg2.connect(url)
    with conn.cursor() as cur:
        cur.execute(db.SESSION_SQL)
    conn.commit()
    return conn


def create_schema(url: str, corpus: Corpus) -> None:
    conn = psycopg2.connect(url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(corpus.schema_sql.read_text(encoding="utf-8"))
    finally:
        conn.close()


def fill(url: str, corpus: Corpus, side: str, scale: int = 1) -> None:
    conn = connect(url)
    try:
        with conn:
            corpus.fill(conn, side, scale)
    finally:
        conn.close()


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


BOOKKEEPING = ("_yoyo_migration", "_yoyo_log", "_yoyo_version", "yoyo_lock")


def table_states(url: str, schemas: tuple[str, ...]) -> dict[str, tuple[str, int]]:
    """ "schema.relation" -> (md5 of its rows' text in order, row count), read with ONLY."""
    conn = connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT n.nspname, c.relname FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relkind IN ('r', 'm') AND n.nspname = ANY(%s) "
                "AND NOT c.relname = ANY(%s) AND c.relname NOT LIKE '\\_dbtools%%' "
                "ORDER BY 1, 2",
                (list(schemas), list(BOOKKEEPING)),
            )
            relations = cur.fetchall()
            out = {}
            for schema, name in relations:
                cur.execute(
                    "SELECT md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')), "
                    f"count(*) FROM ONLY {_quote(schema)}.{_quote(name)} t"
                )
                digest, count = cur.fetchone()
                out[f"{schema}.{name}"] = (digest, int(count))
        conn.rollback()
        return out
    finally:
        conn.close()


def sequence_states(url: str, schemas: tuple[str, ...]) -> dict[str, tuple[int, bool]]:
    """ "schema.sequence" -> (last_value, is_called) for every sequence of the schemas."""
    conn = connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT n.nspname, c.relname FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relkind = 'S' AND n.nspname = ANY(%s) AND c.relname NOT LIKE '\\_yoyo%%' "
                "AND c.relname NOT LIKE '\\_dbtools%%' ORDER BY 1, 2",
                (list(schemas),),
            )
            out = {}
            for schema, name in cur.fetchall():
                cur.execute(f"SELECT last_value, is_called FROM {_quote(schema)}.{_quote(name)}")
                last, called = cur.fetchone()
                out[f"{schema}.{name}"] = (int(last), bool(called))
        conn.rollback()
        return out
    finally:
        conn.close()


def sequence_owners(url: str, schemas: tuple[str, ...]) -> dict[str, str]:
    """ "schema.sequence" -> "schema.table" owning it (serial, identity or OWNED BY)."""
    conn = connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT sn.nspname || '.' || s.relname, tn.nspname || '.' || t.relname "
                "FROM pg_class s JOIN pg_namespace sn ON sn.oid = s.relnamespace "
                "JOIN pg_depend d ON d.objid = s.oid AND d.classid = 'pg_class'::regclass "
                "AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i') "
                "JOIN pg_class t ON t.oid = d.refobjid "
                "JOIN pg_namespace tn ON tn.oid = t.relnamespace "
                "WHERE s.relkind = 'S' AND sn.nspname = ANY(%s)",
                (list(schemas),),
            )
            return dict(cur.fetchall())
    finally:
        conn.close()


def schema_dump(url: str) -> list[str]:
    """pg_dump --schema-only of the whole database, without comment, SET and blank lines
    (and the random key of the \\restrict lines newer pg_dump versions write).

    The _dbtools schema is dbtools' own bookkeeping (prod's history, the rollback record),
    created on prod's first write; it is not part of the application's schema.
    """
    done = subprocess.run(
        ["pg_dump", "--schema-only", "--exclude-schema=_dbtools", "--dbname", url],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return [
        line
        for line in done.stdout.splitlines()
        if line.strip() and not line.startswith(("--", "SET ", "\\restrict ", "\\unrestrict "))
    ]


def copy_database(source_url: str, target_url: str) -> None:
    """pg_dump | psql: the reference copy the helpers must find identical to its source."""
    dump = subprocess.run(
        ["pg_dump", "--dbname", source_url], capture_output=True, check=True, timeout=600
    )
    subprocess.run(
        ["psql", "--quiet", "--no-psqlrc", "-v", "ON_ERROR_STOP=1", "--dbname", target_url],
        input=dump.stdout,
        capture_output=True,
        check=True,
        timeout=600,
    )


def execute(url: str, sql: str, params: object = None) -> list[tuple]:
    conn = connect(url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()
