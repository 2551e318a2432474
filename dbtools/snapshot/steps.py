"""What every step of a snapshot load shares: one statement run on the load's connection
(`execute`) and one line of progress (`say`).

The load drives its transaction with explicit BEGIN/COMMIT statements on an autocommit
connection (restore's module doc), so restore and the steps in preserve, suspend and post_load
run their SQL through `execute`: a cursor, the statement, its rows; nothing here commits or
rolls back on its own.
"""

from __future__ import annotations

from typing import Any

from dbtools.db import Conn, Progress


def say(progress: Progress, text: str) -> None:
    if progress is not None:
        progress(text)


def execute(conn: Conn, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall() if cur.description else []
