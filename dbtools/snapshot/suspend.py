"""What a load holds off while it writes and sets back before it commits: the user triggers of
the loaded tables, and the foreign keys of cycles (deferred).

User triggers (not internal ones, not CONSTRAINT TRIGGERs) would rewrite what is restored (a
BEFORE trigger computing a column) or write elsewhere (AFTER and TRUNCATE triggers); they are
disabled one by one with ALTER TABLE ONLY ... DISABLE TRIGGER, which needs table ownership,
not superuser. On PostgreSQL 15 a partitioned table's trigger is cloned to each partition,
where each clone has its own state and ALTER TABLE without ONLY on the parent reaches every
clone; so each trigger of the tables and their partitions is set back to the state it had,
parents first, and the states are compared before commit.

Cycles of foreign keys cannot be satisfied table by table; their constraints are made
DEFERRABLE INITIALLY DEFERRED inside the transaction (ALTER CONSTRAINT needs table ownership,
not superuser), checked with SET CONSTRAINTS ... IMMEDIATE once every table is loaded, and
set back to NOT DEFERRABLE before commit, so the schema the transaction commits is the one it
found (the fingerprint is compared again to prove it).
"""

from __future__ import annotations

from dbtools import catalog, db
from dbtools.db import Conn, execute, quote_ident
from dbtools.errors import VerificationFailed


def _constraint_ref(fk: catalog.ForeignKey) -> tuple[str, str]:
    """(quoted relation declaring the constraint, schema-qualified constraint name)."""
    schema, _, name = fk.declared_on.partition(".")
    return db.qualified(schema, name), f"{quote_ident(schema)}.{quote_ident(fk.name)}"


def defer_cycles(conn: Conn, cyclic: list[catalog.ForeignKey]) -> list[catalog.ForeignKey]:
    """Make cyclic FKs deferred for this transaction; return those we altered."""
    altered = []
    for fk in cyclic:
        table, constraint = _constraint_ref(fk)
        if not fk.deferrable:
            # On a partitioned table the change reaches the partitions' clones of the key.
            execute(
                conn,
                f"ALTER TABLE {table} ALTER CONSTRAINT {quote_ident(fk.name)} "
                "DEFERRABLE INITIALLY DEFERRED",
            )
            altered.append(fk)
        execute(conn, f"SET CONSTRAINTS {constraint} DEFERRED")
    return altered


def undefer(
    conn: Conn, cyclic: list[catalog.ForeignKey], altered: list[catalog.ForeignKey]
) -> None:
    # Fires every pending check now (cycles and the schema's own INITIALLY DEFERRED keys), so
    # a broken reference fails before commit, and no table is left with pending trigger
    # events, which would make the ALTER TABLEs below and in resume_triggers fail.
    execute(conn, "SET CONSTRAINTS ALL IMMEDIATE")
    for fk in altered:
        table, _ = _constraint_ref(fk)
        execute(
            conn,
            f"ALTER TABLE {table} ALTER CONSTRAINT "
            f"{quote_ident(fk.name)} NOT DEFERRABLE INITIALLY IMMEDIATE",
        )


_TRIGGER_STATE_SQL = {
    "O": "ENABLE TRIGGER",
    "D": "DISABLE TRIGGER",
    "R": "ENABLE REPLICA TRIGGER",
    "A": "ENABLE ALWAYS TRIGGER",
}


def _set_trigger(conn: Conn, trigger: catalog.TriggerState, state: str) -> None:
    # ONLY: each partition's clone of a parent's trigger has a state of its own.
    execute(
        conn,
        f"ALTER TABLE ONLY {trigger.qualified} {_TRIGGER_STATE_SQL[state]} "
        f"{quote_ident(trigger.name)}",
    )


def suspend_triggers(conn: Conn, tables: list[catalog.Table]) -> list[catalog.TriggerState]:
    """Hold off the user triggers of the loaded tables and their partitions; return their
    states as found. A restore stores the rows as snapshotted: a BEFORE trigger would rewrite
    them (the hashes would differ), an AFTER or TRUNCATE trigger would write elsewhere.

    ALTER TABLE ... DISABLE TRIGGER needs table ownership, not superuser (unlike
    session_replication_role), and is part of the transaction: a rollback undoes it.
    Foreign keys and CONSTRAINT TRIGGERs (checks) stay on.
    """
    triggers = catalog.user_triggers(conn, tables)
    for trigger in triggers:  # parents first: a parent's change may reach its partitions
        if trigger.enabled != "D":
            _set_trigger(conn, trigger, "D")
    return triggers


def resume_triggers(
    conn: Conn, tables: list[catalog.Table], found: list[catalog.TriggerState]
) -> None:
    """Set every trigger back to its own state, parents before partitions (so that a server
    where a parent's change reaches the partitions still ends with each partition's own
    state), and prove that every trigger's state is what it was."""
    for trigger in found:
        if trigger.enabled != "D" or trigger.level > 0:
            _set_trigger(conn, trigger, trigger.enabled)
    now = catalog.user_triggers(conn, tables)
    if now != found:
        changed = sorted(
            {f"{t.relation}.{t.name}={t.enabled}" for t in now}
            ^ {f"{t.relation}.{t.name}={t.enabled}" for t in found}
        )
        raise VerificationFailed(
            "the triggers' states could not be set back to what they were "
            f"({', '.join(changed[:10])}); nothing was changed"
        )
