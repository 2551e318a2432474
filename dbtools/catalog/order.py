"""The FK load order of tables, with cycles found and named."""

from __future__ import annotations

from collections.abc import Sequence

from dbtools.catalog.model import ForeignKey, Table


def load_order(
    tables: Sequence[Table], fks: Sequence[ForeignKey]
) -> tuple[list[str], list[ForeignKey]]:
    """Table keys with every referenced table before its referrers, and the FKs in cycles.

    Self-references need nothing special: the RI triggers of one COPY statement fire at its
    end, when every row of the table is present. FKs between tables of a cycle cannot be
    satisfied by any order; they are returned so the loader can defer them.
    """
    keys = [t.key for t in tables]
    deps: dict[str, set[str]] = {k: set() for k in keys}
    for fk in fks:
        if fk.table in deps and fk.ref_table in deps and fk.table != fk.ref_table:
            deps[fk.table].add(fk.ref_table)
    components = _strongly_connected(keys, deps)
    comp_of = {k: i for i, comp in enumerate(components) for k in comp}
    cyclic = [
        fk
        for fk in fks
        if fk.table != fk.ref_table
        and fk.table in comp_of
        and fk.ref_table in comp_of
        and comp_of[fk.table] == comp_of[fk.ref_table]
    ]
    # Tarjan yields components in reverse topological order of the condensation: dependencies
    # (parents) first, which is the load order we need.
    order = [k for comp in components for k in sorted(comp)]
    return order, cyclic


def _strongly_connected(nodes: Sequence[str], deps: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    result: list[list[str]] = []
    counter = 0

    for root in sorted(nodes):
        if root in index:
            continue
        # Iterative Tarjan: real schemas can be deep enough to hit Python's recursion limit.
        work: list[tuple[str, list[str]]] = [(root, sorted(deps[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, todo = work[-1]
            if todo:
                nxt = todo.pop(0)
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, sorted(deps[nxt])))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    comp.append(member)
                    if member == node:
                        break
                result.append(comp)
    return result
