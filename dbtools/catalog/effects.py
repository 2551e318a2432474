"""What a load touches beyond the rows: user triggers (suspended, states kept) and the
materialized views that depend on loaded tables."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from dbtools.catalog.model import Table
from dbtools.db import Conn, qualified


@dataclass(frozen=True)
class TriggerState:
    """A user trigger and its firing state: O (ENABLE), D (DISABLE), R (REPLICA), A (ALWAYS)."""

    relation: str  # "schema.name"
    qualified: str  # quoted, for ALTER TABLE
    name: str
    enabled: str
    level: int  # 0 for a loaded table, 1.. for its partitions, sub-partitions


def relation_tree(tables: Iterable[Table]) -> str:
    """SQL (no parameters) of (oid, level): the tables and, for partitioned ones, every
    partition and sub-partition (level > 0)."""
    oids = ",".join(str(int(t.oid)) for t in tables) or "0"
    return (
        f"SELECT x.o AS oid, 0 AS level FROM unnest(ARRAY[{oids}]::oid[]) x(o) "
        f"UNION SELECT p.relid, p.level FROM unnest(ARRAY[{oids}]::oid[]) x(o), "
        "LATERAL pg_partition_tree(x.o) p WHERE p.level > 0"
    )


def user_triggers(conn: Conn, tables: Iterable[Table]) -> list[TriggerState]:
    """The user triggers (not internal ones, not CONSTRAINT TRIGGERs, which are checks) on the
    tables and their partitions, parents before partitions."""
    with conn.cursor() as cur:
        cur.execute(
            f"""
            SELECT n.nspname, c.relname, tg.tgname, tg.tgenabled, min(r.level)
            FROM ({relation_tree(tables)}) r
            JOIN pg_trigger tg ON tg.tgrelid = r.oid
            JOIN pg_class c ON c.oid = tg.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE NOT tg.tgisinternal AND tg.tgconstraint = 0
            GROUP BY 1, 2, 3, 4
            ORDER BY 5, 1, 2, 3
            """
        )
        return [
            TriggerState(f"{r[0]}.{r[1]}", qualified(r[0], r[1]), r[2], str(r[3]), int(r[4]))
            for r in cur.fetchall()
        ]


@dataclass(frozen=True)
class MatView:
    key: str
    qualified: str
    populated: bool


def dependent_matviews(conn: Conn, tables: Iterable[Table]) -> list[MatView]:
    """Materialized views that read the tables (or their partitions), directly or through
    views and other materialized views, each after every materialized view it reads."""
    tables = list(tables)
    with conn.cursor() as cur:
        cur.execute(f"SELECT oid FROM ({relation_tree(tables)}) r")
        start = {int(r[0]) for r in cur.fetchall()}
        # What each view / materialized view reads: the relations its rewrite rule depends on.
        cur.execute(
            """
            SELECT DISTINCT r.ev_class, d.refobjid
            FROM pg_rewrite r
            JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
                             AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> r.ev_class
            JOIN pg_class v ON v.oid = r.ev_class AND v.relkind IN ('v', 'm')
            """
        )
        reads: dict[int, set[int]] = {}
        for view, rel in cur.fetchall():
            reads.setdefault(int(view), set()).add(int(rel))
        cur.execute(
            "SELECT c.oid, n.nspname, c.relname, c.relkind, c.relispopulated FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('v', 'm')"
        )
        info = {int(r[0]): (str(r[1]), str(r[2]), r[3] == "m", bool(r[4])) for r in cur.fetchall()}
    readers: dict[int, set[int]] = {}
    for view, rels in reads.items():
        for rel in rels:
            readers.setdefault(rel, set()).add(view)
    affected: set[int] = set()
    todo = list(start)
    while todo:
        for view in readers.get(todo.pop(), ()):
            if view not in affected and view in info:
                affected.add(view)
                todo.append(view)
    # Depth-first post-order over what each affected view reads: readers after what they read.
    order: list[int] = []
    done: set[int] = set()
    for root in sorted(affected, key=lambda o: info[o][:2]):
        stack: list[tuple[int, list[int]]] = [(root, sorted(reads.get(root, set()) & affected))]
        if root in done:
            continue
        done.add(root)
        while stack:
            node, deps = stack[-1]
            if deps:
                nxt = deps.pop()
                if nxt not in done:
                    done.add(nxt)
                    stack.append((nxt, sorted(reads.get(nxt, set()) & affected)))
                continue
            stack.pop()
            order.append(node)
    return [
        MatView(f"{info[o][0]}.{info[o][1]}", qualified(info[o][0], info[o][1]), info[o][3])
        for o in order
        if info[o][2]
    ]
