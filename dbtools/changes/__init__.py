"""What a sync would change in prod, row by row: `dbtools plan`.

`model` holds the nouns (a change set, per-table changes), `rows` compares one table of two
snapshots with DuckDB, `compute` snapshots both sides, compares them and saves the result.
"""

from dbtools.changes.compute import compare, plan_id, plan_sync, preserved_keys, save
from dbtools.changes.model import (
    BY_KEY,
    NEW_TABLE,
    PRESERVED,
    REPLACED,
    UNCHANGED,
    ChangeSet,
    SnapshotRef,
    TableChanges,
)

__all__ = [
    "BY_KEY",
    "NEW_TABLE",
    "PRESERVED",
    "REPLACED",
    "UNCHANGED",
    "ChangeSet",
    "SnapshotRef",
    "TableChanges",
    "compare",
    "plan_id",
    "plan_sync",
    "preserved_keys",
    "save",
]
