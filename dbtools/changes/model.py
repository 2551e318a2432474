"""What a sync would change in prod, table by table: the nouns of `dbtools plan`.

A change set is computed from two snapshots (dev's, and prod's current state) and names what
it was computed from, so that it can be saved, reviewed and later checked against the
databases: a change set whose inputs no longer match is stale.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from dbtools.snapshot import format as fmt

# How a table's rows were compared.
BY_KEY = "by-key"  # matched on the primary key: inserts, updates (which columns), deletes
UNCHANGED = "unchanged"  # same content hash on both sides: nothing to compare
REPLACED = "replaced whole"  # no key to match on, or not comparable row by row
PRESERVED = "preserved"  # prod keeps its rows (preserved_tables)
NEW_TABLE = "new table"  # in dev only: created by a migration, then filled

SAMPLE_KEYS = 3  # keys shown per kind of change


@dataclass
class TableChanges:
    """One table: what the sync would do to prod's rows."""

    table: str
    mode: str
    key: list[str] = field(default_factory=list)
    dev_rows: int = 0
    prod_rows: int = 0
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    # column -> rows whose value in that column differs (updated rows only)
    changed_columns: dict[str, int] = field(default_factory=dict)
    # "inserted" | "updated" | "deleted" -> a few keys, each {column: value}
    samples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    dev_content_hash: str = ""
    prod_content_hash: str = ""
    note: str = ""

    @property
    def changes(self) -> int:
        return self.inserted + self.updated + self.deleted

    @classmethod
    def between(
        cls, table: str, mode: str, dev: fmt.TableEntry, prod: fmt.TableEntry | None
    ) -> TableChanges:
        """The facts both snapshots give (key, row counts, content hashes); counts to fill."""
        return cls(
            table=table,
            mode=mode,
            key=list(dev.primary_key),
            dev_rows=dev.rows,
            prod_rows=prod.rows if prod else 0,
            dev_content_hash=dev.content_hash,
            prod_content_hash=prod.content_hash if prod else "",
        )


@dataclass
class SnapshotRef:
    """One input of a change set: the snapshot, and the checksum that pins its content."""

    env: str
    path: str
    manifest_sha256: str
    created_at: str


@dataclass
class ChangeSet:
    """Everything a sync of dev into prod would change, computed without writing anything."""

    dev: SnapshotRef
    prod: SnapshotRef
    tables: list[TableChanges]
    migrations_to_apply: list[str] = field(default_factory=list)
    migrations_only_in_prod: list[str] = field(default_factory=list)
    # sequence -> {"prod": value, "dev": value} for sequences the sync moves
    sequences: dict[str, dict[str, Any]] = field(default_factory=dict)
    tables_only_in_prod: list[str] = field(default_factory=list)

    @property
    def totals(self) -> dict[str, int]:
        return {
            kind: sum(getattr(t, kind) for t in self.tables if t.mode != PRESERVED)
            for kind in ("inserted", "updated", "deleted")
        }

    def counts(self) -> dict[str, dict[str, int]]:
        """table -> inserted/updated/deleted (preserved tables: none; prod keeps them)."""
        return {
            t.table: {"inserted": t.inserted, "updated": t.updated, "deleted": t.deleted}
            for t in self.tables
            if t.mode != PRESERVED
        }

    def jsonable(self) -> dict[str, Any]:
        data = asdict(self)
        data["totals"] = self.totals
        return data
