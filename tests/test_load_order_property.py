"""catalog.load_order as a property: any foreign-key graph, including keys declared on
partitions (mapped to their roots), gives an order that satisfies every key outside a cycle,
and names exactly the keys whose two tables lie on one cycle."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dbtools import catalog

# No server: the graph is built in memory (`pytest -m pure` runs it without PostgreSQL).
pytestmark = pytest.mark.pure

NAMES = [f"public.t{i}" for i in range(7)]


def _table(key: str) -> catalog.Table:
    schema, _, name = key.partition(".")
    return catalog.Table(schema, name, 0, ())


def _fk(n: int, table: str, ref: str, on_partition: bool) -> catalog.ForeignKey:
    return catalog.ForeignKey(
        name=f'fk "{n}"',
        table=table,
        columns=("a",),
        ref_table=ref,
        ref_columns=("id",),
        on_delete="NO ACTION",
        on_update="NO ACTION",
        deferrable=False,
        definition="",
        owner=f"{table}_p{n}" if on_partition else table,
    )


def _reaches(edges: set[tuple[str, str]], start: str, goal: str) -> bool:
    seen, todo = {start}, [start]
    while todo:
        node = todo.pop()
        if node == goal:
            return True
        for a, b in edges:
            if a == node and b not in seen:
                seen.add(b)
                todo.append(b)
    return False


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(NAMES), st.sampled_from(NAMES), st.booleans()), max_size=14)
)
def test_load_order_satisfies_every_key_outside_a_cycle(
    pairs: list[tuple[str, str, bool]],
) -> None:
    tables = [_table(k) for k in NAMES]
    fks = [_fk(n, a, b, p) for n, (a, b, p) in enumerate(pairs)]
    order, cyclic = catalog.load_order(tables, fks)
    assert sorted(order) == sorted(NAMES)
    edges = {(fk.table, fk.ref_table) for fk in fks if fk.table != fk.ref_table}
    for fk in fks:
        if fk.table == fk.ref_table:
            assert fk not in cyclic
            continue
        on_cycle = _reaches(edges, fk.ref_table, fk.table)
        assert (fk in cyclic) == on_cycle
        if not on_cycle:
            assert order.index(fk.ref_table) < order.index(fk.table)
        assert fk.declared_on.startswith(fk.table)
