"""db.savepoint: a statement the server refuses undoes only itself, never the caller's
transaction (what identity and snapshot create rely on for pg_control_system() revoked on a
managed service and for a database yoyo never touched)."""

from __future__ import annotations

from collections.abc import Callable

import psycopg2
import pytest

from dbtools import db

from support.db import execute


@pytest.mark.parametrize("autocommit", [False, True], ids=["implicit", "explicit-begin"])
def test_a_refused_statement_keeps_the_transaction_and_its_work(
    make_db: Callable[[str], str], autocommit: bool
) -> None:
    url = make_db("sp")
    execute(url, "CREATE TABLE t (v int)")
    conn = psycopg2.connect(url)
    try:
        conn.autocommit = autocommit
        with conn.cursor() as cur:
            if autocommit:
                cur.execute("BEGIN")
            cur.execute("INSERT INTO t VALUES (1)")
            refused = pytest.raises(psycopg2.errors.UndefinedTable)
            with refused, db.savepoint(conn, "probe"):
                cur.execute("INSERT INTO t VALUES (2)")
                cur.execute("SELECT * FROM no_such_table")
            # the transaction goes on: the refused block is gone, the earlier work is not
            cur.execute("INSERT INTO t VALUES (3)")
            cur.execute("COMMIT")
    finally:
        conn.close()
    assert execute(url, "SELECT v FROM t ORDER BY v") == [(1,), (3,)]


def test_outside_a_transaction_no_savepoint_is_needed(make_db: Callable[[str], str]) -> None:
    url = make_db("sp")
    conn = psycopg2.connect(url)
    try:
        conn.autocommit = True
        refused = pytest.raises(psycopg2.errors.UndefinedTable)
        with refused, db.savepoint(conn, "probe"), conn.cursor() as cur:
            cur.execute("SELECT * FROM no_such_table")
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
            assert cur.fetchone() == (1,)
    finally:
        conn.close()
