"""What a sync would change in prod, row by row: `dbtools plan`.

`model` holds the nouns (a change set, per-table changes), `rows` compares one table of two
snapshots with DuckDB, `compute` snapshots both sides and compares them, `saved` writes a
plan into the archive, reads it back for `dbtools apply` and tells whether prod moved since.
"""

from dbtools.changes.compute import compare, excluded_keys, plan_sync, preserved_keys
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
from dbtools.changes.saved import (
    PlannedTable,
    SavedPlan,
    mismatches,
    plan_id,
    read,
    save,
    stale_reasons,
)

__all__ = [
    "BY_KEY",
    "NEW_TABLE",
    "PRESERVED",
    "REPLACED",
    "UNCHANGED",
    "ChangeSet",
    "PlannedTable",
    "SavedPlan",
    "SnapshotRef",
    "TableChanges",
    "compare",
    "excluded_keys",
    "mismatches",
    "plan_id",
    "plan_sync",
    "preserved_keys",
    "read",
    "save",
    "stale_reasons",
]
