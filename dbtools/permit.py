"""Write permits: the one way a library function may write prod, or load data anywhere.

On prod only the guard (`sync.guarded_prod_write`: the sync lock, the safety rules, a verified
backup before the first write) grants a permit. Every writer in the library that can reach
prod (migrations' apply/rollback/mark, schema_sync.sync_schema, snapshot.restore into prod)
asks for it with `require` and refuses (SafetyError, exit 3) without it, so calling the
library directly never skips the lock or the backup that the CLI would take. The load itself
(`restore.load_snapshot`) is given a connection, not a side, so it asks for a permit on
whatever database that connection reached: `restore.restore` grants one for dev after the
safety rules, the guard for prod.

A permit names the database it was granted for (`identity`); a writer checks that its own
connection reached that database. `ensure_backup` is the guard's (idempotent: it takes and
verifies the backup the first time a writer is about to change something); on dev it does
nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass

from dbtools import db
from dbtools.errors import SafetyError


def _no_backup() -> None:
    """dev is not backed up before a write (DATABASE_SYNC.md backs up prod)."""


@dataclass(frozen=True)
class Permit:
    env: str  # "dev" or "prod"
    what: str  # the operation that was granted it, e.g. "sync-schema"
    identity: db.Identity  # the database approved (and, for prod, locked)
    ensure_backup: Callable[[], object] = _no_backup


_active: ContextVar[Permit | None] = ContextVar("dbtools_prod_permit", default=None)


@contextlib.contextmanager
def granted(permit: Permit) -> Iterator[Permit]:
    """Make `permit` the active one for the duration (the guard's body)."""
    token = _active.set(permit)
    try:
        yield permit
    finally:
        _active.reset(token)


def active() -> Permit | None:
    return _active.get()


def require(what: str, reached: db.Identity | None = None, *, env: str | None = "prod") -> Permit:
    """The active permit (for env, or for any env when env is None), or SafetyError naming
    what was refused.

    `reached`: the identity the writer's own connection reached; it must be the database the
    permit was granted for (a session that reached another one never writes)."""
    permit = _active.get()
    if permit is None or (env is not None and permit.env != env):
        where = "prod" if env == "prod" else "a database"
        raise SafetyError(
            f"refusing to {what} on {where} outside a guarded write session (for prod: the "
            "sync lock and a verified backup first); nothing was changed",
            hint="use the dbtools command, or dbtools.sync (sync_schema, migrate_prod, "
            "restore_prod, sync_data, full_sync, rollback) and snapshot.restore.restore",
        )
    if reached is not None and not db.same_database(permit.identity, reached):
        raise SafetyError(
            f"refusing to {what}: the session reached database {reached.database}, not the "
            f"{permit.env} database {permit.identity.database} that was approved; nothing was "
            "changed"
        )
    return permit
