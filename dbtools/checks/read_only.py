"""The static rule a check's query must follow, decided by PostgreSQL's own parser (pglast):
exactly one read-only SELECT, VALUES or TABLE, nothing that writes or outlives the query."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from pglast import parser as pg_parser

READ_ONLY_QUERY = "a check must be exactly one read-only query (SELECT, VALUES or TABLE)"


def _read_only_rule(kind: str) -> str:
    return READ_ONLY_QUERY.replace("a check", f"a {kind}", 1)


_WRITING_NODES = {
    "InsertStmt": "INSERT",
    "UpdateStmt": "UPDATE",
    "DeleteStmt": "DELETE",
    "MergeStmt": "MERGE",
}
# Functions whose effect outlives the query's savepoint or reaches beyond the transaction. The
# read-only transaction refuses some of them at run time too (nextval, setval); the others it
# allows, and a rolled-back savepoint does not undo them. Matched on the function's own name,
# whatever its schema.
_SIDE_EFFECT_FUNCTIONS: dict[str, str] = {
    "set_config": "changes a setting",
    "nextval": "advances a sequence",
    "setval": "sets a sequence",
    "pg_notify": "sends a notification",
    "txid_current": "assigns a transaction id",
    "pg_current_xact_id": "assigns a transaction id",
    "pg_terminate_backend": "acts on another session",
    "pg_cancel_backend": "acts on another session",
    "pg_reload_conf": "acts on the server",
    "pg_rotate_logfile": "acts on the server",
    "pg_switch_wal": "acts on the server",
    "pg_promote": "acts on the server",
    "pg_log_backend_memory_contexts": "acts on another session",
    "pg_logical_emit_message": "writes to the WAL",
    "pg_replication_slot_advance": "moves a replication slot",
    "pg_import_system_collations": "writes the catalog",
    "brin_summarize_new_values": "writes an index",
    "brin_summarize_range": "writes an index",
    "brin_desummarize_range": "writes an index",
    "gin_clean_pending_list": "writes an index",
    "pg_backup_start": "acts on the server",
    "pg_backup_stop": "acts on the server",
    "pg_start_backup": "acts on the server",
    "pg_stop_backup": "acts on the server",
    "pg_wal_replay_pause": "acts on the server",
    "pg_wal_replay_resume": "acts on the server",
    "loread": "reads a large object by descriptor",
    "lowrite": "writes a large object",
}
_SIDE_EFFECT_PREFIXES: dict[str, str] = {
    "pg_advisory_": "takes or releases an advisory lock",
    "pg_try_advisory_": "takes an advisory lock",
    "dblink": "opens another connection",
    "lo_": "works on large objects or server files",
    "pg_file_": "writes server files",
    "pg_stat_reset": "resets statistics",
    "pg_replication_origin_": "acts on replication",
    "pg_create_": "creates a replication slot or restore point",
    "pg_drop_replication_slot": "drops a replication slot",
    "pg_copy_": "copies a replication slot",
    "pg_logical_slot_": "consumes a replication slot",
    "pg_sync_replication_slots": "acts on replication",
}


def _side_effect(function: str) -> str | None:
    name = function.lower()
    if name in _SIDE_EFFECT_FUNCTIONS:
        return _SIDE_EFFECT_FUNCTIONS[name]
    return next((why for p, why in _SIDE_EFFECT_PREFIXES.items() if name.startswith(p)), None)


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    """Every JSON object of a pglast parse tree, depth first."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _statement_text(query: str, stmt: dict[str, Any]) -> str:
    # stmt_location and stmt_len count bytes of the UTF-8 text; stmt_len 0 means "to the end".
    raw = query.encode("utf-8")
    start = int(stmt.get("stmt_location", 0))
    length = int(stmt.get("stmt_len", 0)) or len(raw) - start
    return raw[start : start + length].decode("utf-8", errors="replace").strip()


def _keyword(query: str, stmt: dict[str, Any]) -> str:
    """What a statement is, as its author wrote it: COMMIT, END, SET, DELETE, ..."""
    kind = next(iter(stmt["stmt"]), "?")
    if kind in _WRITING_NODES:  # also when it starts with WITH
        return _WRITING_NODES[kind]
    words = _statement_text(query, stmt).split()
    return words[0].upper() if words else kind


def read_only_problem(query: str, kind: str = "check") -> str | None:
    """Why query is not exactly one read-only SELECT/VALUES/TABLE statement, or None.

    Decided by PostgreSQL's own parser (pglast), so comments, strings and dollar quotes are
    read as the server reads them (with standard_conforming_strings on, which run time sets).
    """
    if "\x00" in query:  # the parser would stop reading there; the server refuses it
        return "holds a NUL character"
    try:
        return _tree_problem(query, json.loads(pg_parser.parse_sql_json(query)), kind)
    except pg_parser.ParseError as exc:
        where = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], int) else None
        at = f" (line {query[:where].count(chr(10)) + 1} of the query)" if where is not None else ""
        return f"is not valid SQL: {exc.args[0] if exc.args else exc}{at}"
    except RecursionError:
        return "nests too deeply to be checked"


def _tree_problem(query: str, tree: dict[str, Any], kind: str = "check") -> str | None:
    stmts: list[dict[str, Any]] = tree.get("stmts", [])
    if not stmts:
        return "has no query"
    if len(stmts) > 1:
        kinds = ", ".join(_keyword(query, st) for st in stmts)
        return f"holds {len(stmts)} statements ({kinds}); {_read_only_rule(kind)}"
    (stmt,) = stmts
    if "SelectStmt" not in stmt["stmt"]:
        keyword = _keyword(query, stmt)
        article = "an" if keyword[:1] in "AEIOU" else "a"
        return f"is {article} {keyword} statement; {_read_only_rule(kind)}"
    for node in _walk(stmt["stmt"]):
        if node.get("intoClause"):
            return f"is SELECT ... INTO, which creates a table; a {kind} must only read"
        if node.get("lockingClause"):
            return (
                "locks rows (FOR UPDATE/SHARE), which writes their headers and is refused "
                f"in a read-only transaction; a {kind} must only read"
            )
        for key, verb in _WRITING_NODES.items():
            if key in node:
                return f"runs {verb} inside its query; a {kind} must only read"
        if "FuncCall" in node:
            names = [n.get("String", {}).get("sval", "") for n in node["FuncCall"]["funcname"]]
            why = _side_effect(names[-1]) if names else None
            if why:
                return f"calls {'.'.join(names)}(), which {why}; a {kind} must only read"
    return None
