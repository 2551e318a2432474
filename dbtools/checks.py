"""Declarative SQL checks from checks/*.sql: what "prod is right" means, as data.

File format (every *.sql file in settings.checks_dir, in name order)::

    -- check: searchable_builders
    -- description: builders visible in the marketplace, as many as in dev
    -- expect: = dev
    -- expect: > 0
    SELECT count(*) FROM "BuilderProfile" WHERE searchable;

A check starts at a ``-- check: <name>`` line; the ``-- key: value`` lines right below it
are its header, everything after that up to the next ``-- check:`` is its query (one
statement). Header keys:

- ``description``: one line for people;
- ``expect``: one or more expectations, all of which must hold. Grammar:
  ``[rows] OP RHS`` with OP one of ``= != <> > >= < <=`` and RHS a number, ``true``,
  ``false``, ``'text'`` or ``dev``. Without ``rows`` the query must return one row of one
  column and that value is compared; with ``rows`` the number of rows returned is. ``dev``
  runs the same query on dev (read-only) and compares with its value; ``= dev`` on a query
  returning several rows compares the whole result;
- ``builtin``: a check computed in Python rather than SQL. ``schema_matches_dev`` compares
  the target's schema fingerprint and applied migration ids with dev's.

A query that fails (missing column, ...) makes its check fail with the database's message: a
marketplace that cannot be listed is a failure, never an empty list.

`run_checks` works on a connection inside an open transaction (sync-data runs it before its
commit) without ending that transaction: every check runs under a SAVEPOINT that is rolled
back afterwards, so one failing query does not poison the load and no check can change data.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.extensions

from dbtools import catalog, db, migrations
from dbtools.config import Settings, redact
from dbtools.db import Conn
from dbtools.errors import ConfigError

BUILTINS = ("schema_matches_dev",)
_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<>": lambda a, b: a != b,
    ">=": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    "<": lambda a, b: a < b,
}
_EXPECT = re.compile(
    r"^(?P<rows>rows\s+)?(?P<op>!=|<>|>=|<=|=|>|<)\s*"
    r"(?P<rhs>dev|true|false|'(?:[^']|'')*'|-?\d+(?:\.\d+)?)$",
    re.IGNORECASE,
)
_HEADER = re.compile(r"^--\s*(?P<key>[a-z_]+)\s*:\s*(?P<value>.*?)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Expectation:
    text: str
    rows: bool
    op: str
    rhs: Any  # int | float | bool | str, or the marker "dev" (see against_dev)
    against_dev: bool

    def holds(self, actual: Any, expected: Any) -> bool:
        try:
            return _OPS[self.op](_comparable(actual), _comparable(expected))
        except TypeError:
            return False


@dataclass(frozen=True)
class Check:
    name: str
    source: str  # "file:line" where it is declared
    description: str = ""
    query: str = ""
    expectations: tuple[Expectation, ...] = ()
    builtin: str | None = None

    @property
    def needs_dev(self) -> bool:
        return self.builtin is not None or any(e.against_dev for e in self.expectations)


@dataclass
class CheckResult:
    name: str
    description: str
    ok: bool
    value: Any = None
    expected: list[str] = field(default_factory=list)
    dev_value: Any = None
    message: str = ""

    @property
    def status(self) -> str:
        return "ok" if self.ok else "FAIL"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "status": self.status}


@dataclass
class CheckReport:
    env: str
    database: str
    results: list[CheckResult]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def failed(self) -> list[CheckResult]:
        return [r for r in self.results if not r.ok]

    def summary(self) -> str:
        """One line naming the failed checks, for error messages and rollback reasons."""
        if self.ok:
            return f"all {len(self.results)} checks passed on {self.env}"
        names = ", ".join(f"{r.name} ({r.message})" for r in self.failed)
        return f"{len(self.failed)} of {len(self.results)} checks failed on {self.env}: {names}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "database": self.database,
            "ok": self.ok,
            "checks": [r.as_dict() for r in self.results],
        }


# --- parsing -------------------------------------------------------------------------------


def _parse_rhs(raw: str) -> Any:
    low = raw.lower()
    if low in ("true", "false"):
        return low == "true"
    if raw.startswith("'"):
        return raw[1:-1].replace("''", "'")
    return float(raw) if "." in raw else int(raw)


def parse_expectation(text: str, where: str) -> Expectation:
    m = _EXPECT.match(text.strip())
    if not m:
        raise ConfigError(
            f"{where}: cannot read expectation {text!r}",
            hint="write e.g. '-- expect: = 18', '-- expect: = dev' or '-- expect: rows > 0'",
        )
    rhs_raw = m.group("rhs")
    against_dev = rhs_raw.lower() == "dev"
    return Expectation(
        text=text.strip(),
        rows=bool(m.group("rows")),
        op=m.group("op"),
        rhs="dev" if against_dev else _parse_rhs(rhs_raw),
        against_dev=against_dev,
    )


def parse_checks(text: str, source: str = "<checks>") -> list[Check]:
    """The checks declared in one file's text; ConfigError names file:line on any mistake."""
    checks: list[Check] = []
    current: dict[str, Any] | None = None
    in_header = False

    def finish() -> None:
        if current is None:
            return
        query = "\n".join(current["sql"]).strip()
        query = re.sub(r";\s*$", "", query).strip()
        where = current["source"]
        if current["builtin"]:
            if current["builtin"] not in BUILTINS:
                known = ", ".join(BUILTINS)
                raise ConfigError(
                    f"{where}: unknown builtin {current['builtin']!r} (known: {known})"
                )
        else:
            if not query:
                raise ConfigError(f"{where}: check {current['name']!r} has no query")
            if not current["expect"]:
                raise ConfigError(f"{where}: check {current['name']!r} has no '-- expect:' line")
        checks.append(
            Check(
                name=current["name"],
                source=where,
                description=current["description"],
                query=query,
                expectations=tuple(current["expect"]),
                builtin=current["builtin"],
            )
        )

    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        header = _HEADER.match(stripped)
        where = f"{source}:{number}"
        if header and header.group("key").lower() == "check":
            finish()
            name = header.group("value")
            if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
                raise ConfigError(f"{where}: check name {name!r} must be a single word")
            if any(c.name == name for c in checks):
                raise ConfigError(f"{where}: check {name!r} is declared twice")
            current = {
                "name": name,
                "source": where,
                "description": "",
                "expect": [],
                "builtin": None,
                "sql": [],
            }
            in_header = True
            continue
        if current is None:
            continue  # comments and blank lines before the first check
        if in_header and header:
            key, value = header.group("key").lower(), header.group("value")
            if key == "description":
                current["description"] = value
            elif key == "expect":
                current["expect"].append(parse_expectation(value, where))
            elif key == "builtin":
                current["builtin"] = value
            else:
                raise ConfigError(
                    f"{where}: unknown header {key!r} (use description, expect or builtin)"
                )
            continue
        if in_header and not stripped:
            continue
        in_header = False
        current["sql"].append(line)
    finish()
    return checks


def load_checks(settings: Settings) -> list[Check]:
    """Every check of settings.checks_dir/*.sql, files in name order; names must be unique."""
    directory = settings.checks_dir
    if not directory.is_dir():
        raise ConfigError(f"checks directory {directory} does not exist")
    out: list[Check] = []
    for path in sorted(directory.glob("*.sql")):
        for check in parse_checks(path.read_text(encoding="utf-8"), _display(path, settings)):
            if any(c.name == check.name for c in out):
                raise ConfigError(f"{check.source}: check {check.name!r} is declared twice")
            out.append(check)
    if not out:
        raise ConfigError(f"no checks found in {directory}/*.sql")
    return out


def _display(path: Path, settings: Settings) -> str:
    try:
        return str(path.relative_to(settings.root))
    except ValueError:
        return str(path)


# --- running -------------------------------------------------------------------------------


class _QueryFailed(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


_savepoint_counter = 0


@contextlib.contextmanager
def _isolated(conn: Conn) -> Iterator[None]:
    """Run a block under a savepoint that is always rolled back; errors become _QueryFailed."""
    global _savepoint_counter
    # An autocommit connection may still be inside an explicit BEGIN (the loader drives its
    # transaction that way): ask the server, not the flag.
    idle = conn.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_IDLE
    if conn.autocommit and idle:
        try:
            yield
        except psycopg2.Error as exc:
            raise _QueryFailed(db.describe_error(exc)) from None
        return
    _savepoint_counter += 1
    name = f"dbtools_check_{_savepoint_counter}"
    with conn.cursor() as cur:
        cur.execute(f"SAVEPOINT {name}")
    failure: str | None = None
    try:
        yield
    except psycopg2.Error as exc:
        failure = db.describe_error(exc)
    finally:
        with conn.cursor() as cur:
            cur.execute(f"ROLLBACK TO SAVEPOINT {name}")
            cur.execute(f"RELEASE SAVEPOINT {name}")
    if failure is not None:
        raise _QueryFailed(failure)


def _comparable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, list):
        return [_comparable(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_comparable(v) for v in value)
    return value


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

    Within a transaction each check runs under a savepoint rolled back afterwards. Expectations
    against dev fail, naming why, when dev_conn is None.
    """
    checks = load_checks(settings) if checks is None else checks
    database = _current_database(conn)
    results: list[CheckResult] = []
    for check in checks:
        if check.builtin == "schema_matches_dev":
            r = _run_schema_check(check, conn, dev_conn, settings)
        else:
            r = _run_sql_check(check, conn, dev_conn)
        r.message = redact(r.message)
        results.append(r)
    return CheckReport(env=env, database=database, results=results)


def _current_database(conn: Conn) -> str:
    try:
        rows = _run_query(conn, "SELECT current_database()")
    except _QueryFailed:
        return "?"
    return str(rows[0][0])


def run_checks_on(settings: Settings, env: str = "prod") -> CheckReport:
    """`dbtools check`: open the target (and dev, read-only) and run the checks.

    The target is read in a read-only transaction that is rolled back: checking never writes.
    """
    checks = load_checks(settings)
    conn = db.connect(db.target(settings, env), settings=settings)
    try:
        set_read_only(conn)
        if env == "dev":
            return run_checks(conn, settings, dev_conn=conn, env=env, checks=checks)
        dev_conn = None
        if any(c.needs_dev for c in checks):
            dev_conn = db.connect(db.target(settings, "dev"), settings=settings)
        try:
            if dev_conn is not None:
                set_read_only(dev_conn)
            return run_checks(conn, settings, dev_conn=dev_conn, env=env, checks=checks)
        finally:
            if dev_conn is not None:
                dev_conn.rollback()
                dev_conn.close()
    finally:
        conn.rollback()
        conn.close()


def set_read_only(conn: Conn) -> None:
    """Make every later transaction of conn read-only: dev is never written by a sync."""
    with conn.cursor() as cur:
        cur.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
    if not conn.autocommit:
        conn.commit()


BUILDER_LIST_SQL = """
SELECT coalesce(b."displayName", u.name) AS name, u.email, b.searchable,
       u."isDemo" AS demo, b.featured, b.headline
FROM "BuilderProfile" b JOIN "User" u ON u.id = b."userId"
ORDER BY b.featured DESC, b."validationTier" DESC, b.rating DESC NULLS LAST, u.email
"""


def list_builders(settings: Settings, env: str = "prod") -> list[dict[str, Any]]:
    """The builder list the seed's verify-production-marketplace printed."""
    conn = db.connect(db.target(settings, env), settings=settings)
    try:
        set_read_only(conn)
        try:
            rows = _run_query(conn, BUILDER_LIST_SQL)
        except _QueryFailed as exc:
            raise ConfigError(f"cannot list builders on {env}: {exc.message}") from None
        cols = ("name", "email", "searchable", "demo", "featured", "headline")
        return [dict(zip(cols, r, strict=True)) for r in rows]
    finally:
        conn.rollback()
        conn.close()
