"""One side of a run (dev or prod): its target, its one connection, and who it really is.

A pipeline opens each side once and passes it down (verify, the guard, the checks) instead of
every step opening its own connection and running the identity queries again (#11.2). A
snapshot's export workers still open their own connections: parallel COPYs need them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg2

from dbtools import db
from dbtools.config import Settings
from dbtools.db import Conn


@dataclass
class Side:
    env: str
    target: db.Target
    conn: Conn
    identity: db.Identity

    def idle(self, *, autocommit: bool) -> Conn:
        """The connection with no transaction open, in the autocommit mode asked for."""
        if self.conn.get_transaction_status() != psycopg2.extensions.TRANSACTION_STATUS_IDLE:
            self.conn.rollback()
        if self.conn.autocommit != autocommit:
            self.conn.autocommit = autocommit
        return self.conn


def open_side(settings: Settings, env: str, *, purpose: str = "read", read_only: bool) -> Side:
    """Connect to env and identify it; read_only sides (dev) can never write."""
    t = db.target(settings, env)
    conn = db.connect(t, purpose=purpose, settings=settings)
    try:
        if read_only:
            db.set_read_only(conn)
        ident = db.identity(conn)
        conn.rollback()
        return Side(env, t, conn, ident)
    except BaseException:
        conn.close()
        raise


@contextlib.contextmanager
def both(settings: Settings) -> Iterator[dict[str, Side]]:
    """dev (read-only) and prod, each opened once for the whole run, closed at its end."""
    with contextlib.ExitStack() as stack:
        sides: dict[str, Side] = {}
        for env, read_only, purpose in (("dev", True, "read"), ("prod", False, "lock")):
            s = open_side(settings, env, purpose=purpose, read_only=read_only)
            stack.callback(s.conn.close)
            sides[env] = s
        yield sides
