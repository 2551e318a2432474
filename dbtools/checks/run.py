"""Running checks inside a transaction without being able to change it: each query in a
read-only savepoint that is always rolled back, the session compared before and after."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import psycopg2
import psycopg2.extensions

from dbtools import catalog, db, migrations
from dbtools.checks.files import _validated, load_checks
from dbtools.checks.model import Check, CheckReport, CheckResult, UnsafeCheck, _comparable
from dbtools.checks.read_only import READ_ONLY_QUERY
from dbtools.config import Settings, redact
from dbtools.db import Conn, set_read_only
from dbtools.side import Side, open_side


class _QueryFailed(Exception):
    def __init__(self, message: str, pgcode: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.pgcode = pgcode  # the server's SQLSTATE, when the server refused the query


class _Unsafe(Exception):
    """A query tried to write, or left its transaction or session other than it found them."""

    def __init__(self, message: str, *, ended: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.ended = ended


# read_only_sql_transaction (a write in the read-only savepoint) and active_sql_transaction
# (an attempt to make it read-write again, DISCARD ALL, ...): a check that tried to escape.
_ESCAPE_SQLSTATES = frozenset({"25006", "25001"})

# What a check must leave as it found it: the transaction (its id and start time tell whether
# it is still the same one) and the session state a savepoint's rollback does not restore.
_STATE_SQL = """
SELECT pg_catalog.txid_current_if_assigned(), pg_catalog.now(), current_user, session_user,
       pg_catalog.current_setting('transaction_read_only'),
       ARRAY(SELECT concat_ws('/', l.classid, l.objid, l.objsubid, l.mode)
             FROM pg_catalog.pg_locks l
             WHERE l.pid = pg_catalog.pg_backend_pid() AND l.locktype = 'advisory'
             ORDER BY 1),
       ARRAY(SELECT p.name FROM pg_catalog.pg_prepared_statements p ORDER BY 1),
       ARRAY(SELECT c FROM pg_catalog.pg_listening_channels() c ORDER BY 1)
"""
_STATE_FIELDS = (
    "transaction id",
    "transaction start",
    "current user",
    "session user",
    "transaction_read_only",
    "advisory locks",
    "prepared statements",
    "LISTEN channels",
)


def _connection_state(conn: Conn) -> tuple[Any, ...]:
    with conn.cursor() as cur:
        cur.execute(_STATE_SQL)
        row = cur.fetchone()
    assert row is not None
    return tuple(row)


def _roll_back_to(conn: Conn, savepoint: str) -> str | None:
    """Undo everything since the savepoint; the server's complaint if the savepoint is gone."""
    try:
        with conn.cursor() as cur:
            cur.execute(f"ROLLBACK TO SAVEPOINT {savepoint}")
            cur.execute(f"RELEASE SAVEPOINT {savepoint}")
    except psycopg2.Error as exc:
        return db.describe_error(exc)
    return None


_savepoint_counter = 0


@contextlib.contextmanager
def _isolated(conn: Conn) -> Iterator[None]:
    """Run a block read-only under a savepoint that is always rolled back (module doc).

    A database error becomes _QueryFailed; a write attempt, a transaction that is no longer
    the same, or a changed session becomes _Unsafe.
    """
    global _savepoint_counter
    # An autocommit connection may still be inside an explicit BEGIN (the loader drives its
    # transaction that way): ask the server, not the flag. Outside one, open one of our own.
    idle = conn.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_IDLE
    began = conn.autocommit and idle
    if began:
        with conn.cursor() as cur:
            cur.execute("BEGIN")
    try:
        before = _connection_state(conn)
        _savepoint_counter += 1
        name = f"dbtools_check_{_savepoint_counter}"
        with conn.cursor() as cur:
            cur.execute(f"SAVEPOINT {name}")
            # Going read-only is allowed inside a subtransaction after the outer transaction
            # has written, and the rollback to the savepoint undoes both settings.
            cur.execute("SET LOCAL transaction_read_only = on")
            cur.execute("SET LOCAL standard_conforming_strings = on")
        failure: psycopg2.Error | _QueryFailed | None = None
        try:
            yield
        except (psycopg2.Error, _QueryFailed) as exc:
            failure = exc  # judged after the transaction and the session are: see below
        except BaseException:
            _roll_back_to(conn, name)
            raise
        gone = _roll_back_to(conn, name)
        if gone is not None:
            raise _Unsafe(
                f"ended its savepoint or the transaction it ran in ({gone}): what that "
                "transaction had done before may have been committed",
                ended=True,
            )
        after = _connection_state(conn)
        if after != before:
            changed = [f for f, b, a in zip(_STATE_FIELDS, before, after, strict=True) if a != b]
            raise _Unsafe(f"changed its connection's {', '.join(changed)}")
        if isinstance(failure, _QueryFailed):
            raise failure
        if failure is not None:
            if failure.pgcode in _ESCAPE_SQLSTATES:
                raise _Unsafe(
                    f"tried to write or to change its transaction ({db.describe_error(failure)})"
                )
            raise _QueryFailed(db.describe_error(failure), failure.pgcode)
    finally:
        if began:
            with contextlib.suppress(psycopg2.Error), conn.cursor() as cur:
                cur.execute("ROLLBACK")


def _run_query(conn: Conn, query: str) -> list[tuple[Any, ...]]:
    with _isolated(conn), conn.cursor() as cur:
        cur.execute(query)
        if cur.description is None:
            raise _QueryFailed("the query returns no result set")
        return [tuple(r) for r in cur.fetchall()]


def _value_of(rows: list[tuple[Any, ...]], *, count: bool, scalar: bool) -> Any:
    if count:
        return len(rows)
    if scalar:
        if len(rows) != 1 or len(rows[0]) != 1:
            shape = f"{len(rows)} rows of {len(rows[0]) if rows else 0} columns"
            raise _QueryFailed(f"expected one value, the query returned {shape}")
        return _comparable(rows[0][0])
    return [_comparable(r) for r in rows]


def _is_scalar(rows: list[tuple[Any, ...]]) -> bool:
    return len(rows) == 1 and len(rows[0]) == 1


def _jsonable(value: Any) -> Any:
    if isinstance(value, (int, float, bool, str)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        if len(value) > 20:
            return f"{len(value)} rows"
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)


def _run_sql_check(check: Check, conn: Conn, dev_conn: Conn | None) -> CheckResult:
    result = CheckResult(
        check.name, check.description, ok=False, expected=[e.text for e in check.expectations]
    )
    try:
        rows = _run_query(conn, check.query)
    except _QueryFailed as exc:
        result.message = f"query failed: {exc.message}"
        return result
    dev_rows: list[tuple[Any, ...]] | None = None
    if any(e.against_dev for e in check.expectations):
        if dev_conn is None:
            result.message = "needs dev to compare with, and no dev connection was given"
            return result
        try:
            dev_rows = _run_query(dev_conn, check.query)
        except _QueryFailed as exc:
            result.message = f"query failed on dev: {exc.message}"
            return result
        except _Unsafe as exc:
            raise _Unsafe(f"{exc.message} on dev", ended=exc.ended) from None
    problems: list[str] = []
    for e in check.expectations:
        # Whole results compare only for (in)equality with dev; anything else needs one value.
        whole = e.against_dev and e.op in ("=", "!=", "<>") and not _is_scalar(rows)
        try:
            actual = _value_of(rows, count=e.rows, scalar=not whole)
            if e.against_dev:
                assert dev_rows is not None
                expected = _value_of(dev_rows, count=e.rows, scalar=not whole)
                result.dev_value = _jsonable(expected)
            else:
                expected = e.rhs
        except _QueryFailed as exc:
            problems.append(exc.message)
            continue
        result.value = _jsonable(actual)
        if not e.holds(actual, expected):
            what = "rows" if e.rows else "value"
            shown = _jsonable(actual)
            problems.append(
                f"{what} {shown!r} is not {e.op} "
                + (f"dev's {_jsonable(expected)!r}" if e.against_dev else repr(expected))
            )
    result.ok = not problems
    result.message = "; ".join(problems)
    return result


def _schema_state(conn: Conn, settings: Settings) -> tuple[str, list[str] | None]:
    """Fingerprint and applied migration ids, read without ending conn's transaction."""
    with _isolated(conn):
        objects, applied = migrations.schema_state(conn, settings.schemas)
    return catalog.fingerprint_of(objects), applied


def _run_schema_check(
    check: Check, conn: Conn, dev_conn: Conn | None, settings: Settings
) -> CheckResult:
    result = CheckResult(check.name, check.description, ok=False, expected=["= dev"])
    if dev_conn is None:
        result.message = "needs dev to compare with, and no dev connection was given"
        return result
    try:
        fp, applied = _schema_state(conn, settings)
        dev_fp, dev_applied = _schema_state(dev_conn, settings)
    except _QueryFailed as exc:
        result.message = f"cannot read the schema: {exc.message}"
        return result
    result.value = {"fingerprint": fp, "migrations": applied}
    result.dev_value = {"fingerprint": dev_fp, "migrations": dev_applied}
    problems = []
    if fp != dev_fp:
        problems.append("schema fingerprint differs from dev's (run `dbtools diff`)")
    if applied != dev_applied:
        only_here = sorted(set(applied or []) - set(dev_applied or []))
        only_dev = sorted(set(dev_applied or []) - set(applied or []))
        detail = []
        if only_dev:
            detail.append(f"not applied here: {', '.join(only_dev)}")
        if only_here:
            detail.append(f"not applied on dev: {', '.join(only_here)}")
        problems.append("applied migrations differ from dev's (" + "; ".join(detail) + ")")
    result.ok = not problems
    result.message = "; ".join(problems)
    return result


def run_checks(
    conn: Conn,
    settings: Settings,
    *,
    dev_conn: Conn | None = None,
    env: str = "prod",
    checks: list[Check] | None = None,
) -> CheckReport:
    """Run every check on conn (comparing with dev_conn where asked); never ends a transaction.

    Each check runs read-only under a savepoint rolled back afterwards (module doc).
    Expectations against dev fail, naming why, when dev_conn is None. Raises ConfigError for a
    check that is not one read-only query (checks given by the caller are validated too) and
    UnsafeCheck, at the first offence, for one that tried to write or left its transaction or
    session changed: the caller must then roll its transaction back.
    """
    checks = load_checks(settings) if checks is None else [_validated(c) for c in checks]
    database = _current_database(conn)
    results: list[CheckResult] = []
    for check in checks:
        try:
            if check.builtin == "schema_matches_dev":
                r = _run_schema_check(check, conn, dev_conn, settings)
            else:
                r = _run_sql_check(check, conn, dev_conn)
        except _Unsafe as exc:
            raise UnsafeCheck(
                redact(f"{check.source}: check {check.name!r} {exc.message}; {READ_ONLY_QUERY}"),
                transaction_ended=exc.ended,
            ) from None
        r.message = redact(r.message)
        results.append(r)
    return CheckReport(env=env, database=database, results=results)


def _current_database(conn: Conn) -> str:
    try:
        rows = _run_query(conn, "SELECT current_database()")
    except _QueryFailed:
        return "?"
    except _Unsafe as exc:
        raise UnsafeCheck(
            f"reading the database name {exc.message}", transaction_ended=exc.ended
        ) from None
    return str(rows[0][0])


def run_checks_on(
    settings: Settings, env: str = "prod", sides: dict[str, Side] | None = None
) -> CheckReport:
    """`dbtools check`: open the target (and dev, read-only) and run the checks.

    The target is read in a read-only transaction that is rolled back: checking never writes.
    sides: a run's own connections (full-sync's last step), used and left open.
    """
    checks = load_checks(settings)
    with contextlib.ExitStack() as opened:

        def conn_of(e: str) -> Conn:
            if sides is not None:
                return sides[e].idle(autocommit=False)
            s = open_side(settings, e, read_only=True)
            opened.callback(s.conn.close)
            return s.conn

        target = conn_of(env)
        needs_dev = sides is not None or any(c.needs_dev for c in checks)
        dev = target if env == "dev" else (conn_of("dev") if needs_dev else None)
        try:
            set_read_only(target)
            return run_checks(target, settings, dev_conn=dev, env=env, checks=checks)
        finally:
            target.rollback()
            if dev is not None and dev is not target:
                dev.rollback()
