"""Introspection of a live database: tables, columns, keys, FKs, sequences, enums.

Also the two derived facts the rest of dbtools leans on: the foreign-key load order (parents
before children, cycles named) and the schema fingerprint, a hash over a canonical,
object-by-object description of the schema whose diff names what differs.

One module per part: `model` (the nouns), `tables` (reading them), `order` (FK load order),
`outside` (what ties them to objects no snapshot loads), `fingerprint` (what "same schema"
means), `effects` (triggers and materialized views a load touches). This package exports the
public API; callers import it as `dbtools.catalog`.
"""

from dbtools.catalog.effects import (
    MatView,
    TriggerState,
    dependent_matviews,
    relation_tree,
    user_triggers,
)
from dbtools.catalog.fingerprint import (
    SchemaDiff,
    diff_objects,
    fingerprint,
    fingerprint_of,
    schema_objects,
)
from dbtools.catalog.model import (
    BOOKKEEPING_TABLES,
    Catalog,
    Column,
    ForeignKey,
    SequenceInfo,
    Table,
    normalize_table_names,
    table_key,
)
from dbtools.catalog.order import load_order
from dbtools.catalog.outside import (
    OutsideReference,
    OutsideSequence,
    outside_dependencies,
    outside_references,
    outside_sequences,
    unmatched_table_names,
)
from dbtools.catalog.tables import (
    read_catalog,
    read_foreign_keys,
    read_sequences,
    read_tables,
    row_counts,
    synced_table_keys,
)

__all__ = [
    "BOOKKEEPING_TABLES",
    "Catalog",
    "Column",
    "ForeignKey",
    "MatView",
    "OutsideReference",
    "OutsideSequence",
    "SchemaDiff",
    "SequenceInfo",
    "Table",
    "TriggerState",
    "dependent_matviews",
    "diff_objects",
    "fingerprint",
    "fingerprint_of",
    "load_order",
    "normalize_table_names",
    "outside_dependencies",
    "outside_references",
    "outside_sequences",
    "read_catalog",
    "read_foreign_keys",
    "read_sequences",
    "read_tables",
    "relation_tree",
    "row_counts",
    "schema_objects",
    "synced_table_keys",
    "table_key",
    "unmatched_table_names",
    "user_triggers",
]
