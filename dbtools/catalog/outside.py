"""What ties the synced tables to objects no snapshot loads (foreign keys from unsynced
tables, defaults drawing from sequences outside the schemas), and setting names that match
no table."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from dbtools.catalog.model import BOOKKEEPING_TABLES, ForeignKey
from dbtools.catalog.tables import _foreign_keys, synced_table_keys
from dbtools.db import Conn, quote_ident


@dataclass(frozen=True)
class OutsideReference:
    """A foreign key from a table dbtools does not load into one it loads (and truncates)."""

    fk: ForeignKey
    reason: str  # "schema" | "excluded" | "bookkeeping"

    @property
    def line(self) -> str:
        fk = self.fk
        head = (
            f"table {fk.table} references synced table {fk.ref_table} "
            f"(foreign key {quote_ident(fk.name)}) but is not synced itself"
        )
        if self.reason == "schema":
            schema = fk.table.partition(".")[0]
            return (
                f"{head} (schema {schema} is not in `schemas`), so a restore could not "
                f"empty {fk.ref_table}: add {schema} to `schemas` or {fk.ref_table} to "
                "`excluded_tables` in setup.cfg [dbtools]"
            )
        if self.reason == "excluded":
            return (
                f"{head} (it is in `excluded_tables`), so a restore could not empty "
                f"{fk.ref_table}: remove {fk.table} from `excluded_tables` or add "
                f"{fk.ref_table} to it in setup.cfg [dbtools]"
            )
        return (
            f"{head} (a migration bookkeeping table), so a restore could not empty "
            f"{fk.ref_table}: add {fk.ref_table} to `excluded_tables` in setup.cfg [dbtools]"
        )


def unmatched_table_names(conn: Conn, keys: Iterable[str]) -> dict[str, str]:
    """Configured table keys ("schema.table") that name no table here, each with the closest
    existing name ("" if none is close): a misspelt `preserved_tables` entry would otherwise
    let a sync overwrite the table it meant to keep."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT n.nspname, c.relname FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'p') AND n.nspname <> 'information_schema' "
            "AND n.nspname NOT LIKE 'pg\\_%'"
        )
        existing = {f"{nsp}.{rel}" for nsp, rel in cur.fetchall()}
    if not existing:  # a database not yet migrated: nothing to keep, nothing to overwrite
        return {}
    out: dict[str, str] = {}
    for key in keys:
        if key in existing:
            continue
        folded = [e for e in existing if e.casefold() == key.casefold()]
        close = folded or difflib.get_close_matches(key, sorted(existing), n=1, cutoff=0.8)
        out[key] = close[0] if close else ""
    return out


def outside_references(
    conn: Conn, schemas: Sequence[str], excluded: Iterable[str] = ()
) -> list[OutsideReference]:
    """Foreign keys into the synced tables from tables that are not synced.

    TRUNCATE of a table is refused while a table left out of the TRUNCATE references it
    (whatever that table holds), so each of these makes every restore fail; they are found
    before anything is written, and before any lock: it reads the catalog only
    (synced_table_keys: the tables `read_tables` lists for the same settings).
    """
    synced, skipped = synced_table_keys(conn, schemas, excluded)
    keys = set(synced)
    skipped_keys = set(skipped)
    fks = _foreign_keys(
        conn,
        "tn.nspname || '.' || t.relname = ANY(%s)",
        (sorted(keys),),
    )
    out = []
    for fk in fks:
        if fk.table in keys:
            continue
        schema, _, name = fk.table.partition(".")
        if schema not in schemas:
            reason = "schema"
        elif fk.table in skipped_keys:
            reason = "excluded"
        else:
            reason = "bookkeeping" if name in BOOKKEEPING_TABLES else "schema"
        out.append(OutsideReference(fk, reason))
    return out


@dataclass(frozen=True)
class OutsideSequence:
    """A sequence a synced table's column default draws from that no restore sets."""

    table: str  # the synced table (its partition root), "schema.name"
    column: str
    sequence: str  # "schema.name"
    sequence_schema: str  # apart: a quoted schema name may hold a dot
    owner: str  # for reason "excluded": the excluded table owning the sequence
    reason: str  # "schema" | "excluded"

    @property
    def line(self) -> str:
        head = (
            f"column {self.column} of synced table {self.table} takes its default from "
            f"sequence {self.sequence}, which no restore sets"
        )
        tail = (
            f"so after a restore it could hand out ids that the loaded rows of {self.table} "
            "already hold"
        )
        if self.reason == "schema":
            schema = self.sequence_schema
            return (
                f"{head} (schema {schema} is not in `schemas`), {tail}: add {schema} to "
                f"`schemas` or {self.table} to `excluded_tables` in setup.cfg [dbtools]"
            )
        return (
            f"{head} (it belongs to {self.owner}, which is in `excluded_tables`), {tail}: "
            f"remove {self.owner} from `excluded_tables` or add {self.table} to it in "
            "setup.cfg [dbtools]"
        )


# Column defaults of tables (partitions mapped to their roots) and the sequences they call
# (nextval('s') records a dependency of the default on s), with the table, partition root
# included, that owns each sequence (OWNED BY, serial or identity), if any.
_DEFAULT_SEQUENCES_SQL = """
    SELECT DISTINCT rn.nspname || '.' || r.relname, a.attname, sn.nspname, s.relname,
           (SELECT onsp.nspname || '.' || o.relname
            FROM pg_depend od
            JOIN pg_class o ON o.oid = coalesce(pg_partition_root(od.refobjid), od.refobjid)
            JOIN pg_namespace onsp ON onsp.oid = o.relnamespace
            WHERE od.classid = 'pg_class'::regclass AND od.objid = s.oid
              AND od.refclassid = 'pg_class'::regclass AND od.deptype IN ('a', 'i')
            LIMIT 1)
    FROM pg_attrdef ad
    JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid
         AND d.refclassid = 'pg_class'::regclass
    JOIN pg_class s ON s.oid = d.refobjid AND s.relkind = 'S'
    JOIN pg_namespace sn ON sn.oid = s.relnamespace
    JOIN pg_attribute a ON a.attrelid = ad.adrelid AND a.attnum = ad.adnum
    JOIN pg_class r ON r.oid = coalesce(pg_partition_root(ad.adrelid), ad.adrelid)
    JOIN pg_namespace rn ON rn.oid = r.relnamespace
    WHERE rn.nspname || '.' || r.relname = ANY(%s)
    ORDER BY 1, 2, 3, 4
"""


def outside_sequences(
    conn: Conn, schemas: Sequence[str], excluded: Iterable[str] = ()
) -> list[OutsideSequence]:
    """Sequences that synced tables' column defaults draw from but that no snapshot holds.

    A snapshot holds the sequences of its schemas except those owned by excluded tables
    (PostgreSQL keeps an owned sequence in its table's schema). A restore loads the table's
    rows but leaves such a sequence where the target had it, so the application's next
    insert can collide with a loaded row: refused like `outside_references`.
    """
    synced, skipped = synced_table_keys(conn, schemas, excluded)
    skipped_keys = set(skipped)
    with conn.cursor() as cur:
        cur.execute(_DEFAULT_SEQUENCES_SQL, (synced,))
        rows = cur.fetchall()
    out = []
    for table, column, seq_schema, seq_name, owner in rows:
        if seq_schema not in schemas:
            reason = "schema"
        elif owner in skipped_keys:
            reason = "excluded"
        else:
            continue
        sequence = f"{seq_schema}.{seq_name}"
        out.append(OutsideSequence(table, column, sequence, seq_schema, owner or "", reason))
    return out


def outside_dependencies(
    conn: Conn, schemas: Sequence[str], excluded: Iterable[str] = ()
) -> list[OutsideReference | OutsideSequence]:
    """What ties the synced tables to objects no restore loads, each with its one `.line`:
    foreign keys into them (every restore fails) and sequences their defaults draw from
    (a restore leaves them behind the loaded rows). verify lists these, every load refuses."""
    excluded = list(excluded)
    return [
        *outside_references(conn, schemas, excluded),
        *outside_sequences(conn, schemas, excluded),
    ]
