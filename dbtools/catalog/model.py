"""The catalog's nouns: Column, Table, ForeignKey, SequenceInfo, Catalog, and table keys."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from dbtools.db import qualified

# Bookkeeping tables of yoyo and of dbtools itself: never data, never part of the fingerprint.
# Migration history, never data: each database keeps its own, no snapshot carries it and the
# schema fingerprint does not see it. yoyo's and dbtools' own, and those of the tools a
# database was made with before it came to dbtools (Prisma, Alembic, Flyway, Rails and
# golang-migrate, sqlx, Knex, Diesel): a sync must not overwrite prod's record of them.
BOOKKEEPING_TABLES = frozenset(
    {
        "_yoyo_migration",
        "_yoyo_log",
        "_yoyo_version",
        "yoyo_lock",
        "_dbtools_migration_checksum",
        "_prisma_migrations",
        "alembic_version",
        "flyway_schema_history",
        "schema_migrations",
        "_sqlx_migrations",
        "knex_migrations",
        "knex_migrations_lock",
        "__diesel_schema_migrations",
    }
)


@dataclass(frozen=True)
class Column:
    name: str
    position: int
    type_name: str  # format_type(): what DDL says, e.g. numeric(10,2), "UserRole"[]
    type_oid: int
    typmod: int  # effective typmod (a domain's own typmod when the column has none)
    base_name: str  # typname after resolving domains, e.g. int4, numeric, _text, UserRole
    base_oid: int
    typtype: str  # of the base type: b base, e enum, c composite, r range, m multirange
    category: str  # pg_type.typcategory of the base type (A array, E enum, N numeric, ...)
    elem_name: str | None  # arrays: the element's base typname
    elem_typtype: str | None
    enum_labels: tuple[str, ...] | None  # enums and arrays of enums
    not_null: bool
    default: str | None
    generated: bool  # GENERATED ALWAYS AS (...) STORED: never copied
    identity: str  # '' | 'a' (ALWAYS) | 'd' (BY DEFAULT)
    ndims: int
    is_domain: bool

    @property
    def is_array(self) -> bool:
        return self.category == "A"


@dataclass(frozen=True)
class Table:
    schema: str
    name: str
    oid: int
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...] = ()
    partitioned: bool = False  # relkind 'p': its rows live in its partitions

    @property
    def key(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def qualified(self) -> str:
        return qualified(self.schema, self.name)

    @property
    def only(self) -> str:
        """The table's own rows in a FROM, TRUNCATE or LOCK: never an inheritance child's.

        A partitioned table is its partitions (partitions are folded into it; ONLY on it
        reads nothing and TRUNCATE ONLY is refused), so it is named without ONLY.
        """
        return self.qualified if self.partitioned else f"ONLY {self.qualified}"

    @property
    def copy_columns(self) -> tuple[Column, ...]:
        """Columns that take part in COPY: generated columns are computed by the server."""
        return tuple(c for c in self.columns if not c.generated)


@dataclass(frozen=True)
class ForeignKey:
    name: str
    table: str  # key "schema.name"
    columns: tuple[str, ...]
    ref_table: str
    ref_columns: tuple[str, ...]
    on_delete: str
    on_update: str
    deferrable: bool
    definition: str
    # The relation that declares the constraint ("schema.name"): `table` itself, or one of its
    # partitions. `table` and `ref_table` are always the partition roots, the tables dbtools
    # loads; ALTER CONSTRAINT must name `owner`.
    owner: str = ""

    @property
    def declared_on(self) -> str:
        return self.owner or self.table


@dataclass(frozen=True)
class SequenceInfo:
    schema: str
    name: str
    owned_by: str | None  # "schema.table.column"
    last_value: int | None = None
    is_called: bool = False

    @property
    def key(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def qualified(self) -> str:
        return qualified(self.schema, self.name)


@dataclass
class Catalog:
    tables: list[Table]
    foreign_keys: list[ForeignKey]
    sequences: list[SequenceInfo]
    excluded: list[str] = field(default_factory=list)

    def table(self, key: str) -> Table:
        for t in self.tables:
            if t.key == key:
                return t
        raise KeyError(key)


def table_key(name: str, default_schema: str) -> str:
    """A configured table name, bare or schema-qualified, as its "schema.table" key."""
    return name if "." in name else f"{default_schema}.{name}"


def normalize_table_names(names: Iterable[str], default_schema: str) -> set[str]:
    """Configured table names, bare or schema-qualified, as "schema.table" keys."""
    return {table_key(n, default_schema) for n in names}
