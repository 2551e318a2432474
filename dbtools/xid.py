"""Whether a row may be newer than a snapshot: the one test behind the short-lock apply
(sync.delta: nothing it overwrites changed since the backup) and the archive's reuse of an
unchanged table (snapshot.dedup: nothing in it changed since the previous snapshot).

A row's content never changes without a new row version, and every version carries the xid
of the transaction that wrote it (`xmin`). A snapshot records the oldest transaction still
running when it was taken (its xmin, `txid_snapshot_xmin`): every transaction before it had
ended, so a visible row whose xmin precedes it was visible to the snapshot, with the same
content. A row written by a transaction running at that moment, or later, counts as newer,
conservatively (a subtransaction's xid is not in the snapshot's list of running ones).
Deleted rows leave no version behind: callers compare row counts for those.
"""

from __future__ import annotations

_WRAP = 1 << 32
_HALF = (1 << 31) - 1


def newer_than(alias: str, snapshot_xmin: int) -> str:
    """SQL: the row `alias` may have been written after the snapshot began (module doc).

    Row xids are 32 bits and wrap: they are compared modulo 2**32, as PostgreSQL compares
    them; the special xids 0-2 (frozen, bootstrap) are older than everything. An xid from
    before a wraparound looks newer, which only ever makes the answer more conservative."""
    smin = snapshot_xmin % _WRAP
    x = f"{alias}.xmin::text::bigint"
    return f"NOT ({x} < 3 OR (({smin} - {x} + {_WRAP}) % {_WRAP}) BETWEEN 1 AND {_HALF})"
