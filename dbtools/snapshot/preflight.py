"""What a load settles under its locks before it writes anything: the target's schema is the
snapshot's, and the plan of the tables it empties and loads.

`check_schema` compares the target's schema fingerprint with the manifest's and refuses
(SchemaMismatch, naming the objects that differ); the load runs it again after its writes, so
the schema the transaction commits is the one it found. `plan_load` turns the catalog read
under the locks into the load's plan: which tables are emptied and loaded, in foreign-key
order, which keep their rows (preserved), and which foreign keys form cycles; it refuses a
snapshot that holds no data for a table the load would empty.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from dbtools import catalog
from dbtools.db import Conn
from dbtools.errors import SafetyError, SnapshotError
from dbtools.snapshot import format as fmt


class SchemaMismatch(SafetyError):
    """The target's schema is not the snapshot's; the message names the objects that differ."""

    def __init__(self, message: str) -> None:
        super().__init__(message, hint="apply the same migrations to both sides first")


def check_schema(conn: Conn, manifest: fmt.Manifest, schemas: list[str], when: str) -> None:
    objects = catalog.schema_objects(conn, schemas)
    if catalog.fingerprint_of(objects) == manifest.schema_fingerprint:
        return
    lines = catalog.diff_objects(manifest.schema_objects, objects).lines("snapshot", "target")
    shown = "; ".join(lines[:20]) + (f"; ... {len(lines) - 20} more" if len(lines) > 20 else "")
    raise SchemaMismatch(
        f"the target's schema {when} differs from the snapshot's ({len(lines)} objects): {shown}"
    )


@dataclass
class LoadPlan:
    """The tables one load empties and fills, and how."""

    tables: list[catalog.Table]  # in load order: referenced tables before their referrers
    order: list[str]  # their keys, in the same order
    cyclic: list[catalog.ForeignKey]  # foreign keys no order satisfies: deferred in the load
    keep: set[str]  # keys of the preserved tables: their rows stay, the snapshot's are ignored
    foreign_keys: list[catalog.ForeignKey]  # every foreign key the catalog read
    by_key: dict[str, catalog.Table]  # the tables by key


def plan_load(cat: catalog.Catalog, manifest: fmt.Manifest, preserved: Iterable[str]) -> LoadPlan:
    """The load's plan from the catalog read under its locks (module doc)."""
    schemas = list(manifest.schemas)
    excluded_now = set(cat.excluded)
    # Snapshots taken before tables without columns were exported do not list them; such a
    # table is left as it is rather than emptied.
    target_keys = {t.key for t in cat.tables if t.columns or t.key in manifest.tables}
    missing = sorted(target_keys - set(manifest.tables))
    if missing:
        raise SnapshotError(
            f"the snapshot holds no data for {', '.join(missing)} (excluded when it was taken); "
            "restoring would empty them"
        )
    keep = catalog.normalize_table_names(preserved, schemas[0]) & target_keys
    tables = [t for t in cat.tables if t.key in manifest.tables and t.key not in excluded_now]
    order, cyclic = catalog.load_order(tables, cat.foreign_keys)
    by_key = {t.key: t for t in tables}
    return LoadPlan(
        tables=[by_key[k] for k in order],
        order=order,
        cyclic=cyclic,
        keep=keep,
        foreign_keys=cat.foreign_keys,
        by_key=by_key,
    )
