"""What verify shows of each side (`-- summary:` entries) and `check --list NAME`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from dbtools import db
from dbtools.checks.files import _validated, load_list
from dbtools.checks.model import Check, UnsafeCheck, _comparable
from dbtools.checks.read_only import _read_only_rule
from dbtools.checks.run import (
    _isolated,
    _jsonable,
    _QueryFailed,
    _run_query,
    _Unsafe,
    _value_of,
    set_read_only,
)
from dbtools.config import Settings, redact
from dbtools.db import Conn
from dbtools.errors import ConfigError

# invalid_schema_name, undefined_table, undefined_column: the side's schema lacks what the
# query names (an older migration, another app), so the value is unknown, not an error.
_MISSING_OBJECT_SQLSTATES = frozenset({"3F000", "42P01", "42703"})


@dataclass
class Summary:
    """One side's summary: name -> value (None: n/a), and why entries could not be read."""

    values: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def summarize(conn: Conn, entries: list[Check]) -> Summary:
    """Run each summary entry on conn, read-only under a savepoint rolled back (module doc).

    Raises UnsafeCheck for an entry that tried to write or left its transaction or session
    changed; the caller must then stop using conn's transaction.
    """
    out = Summary()
    for entry in entries:
        _validated(entry)
        out.values[entry.name] = None
        try:
            rows = _run_query(conn, entry.query)
            out.values[entry.name] = _jsonable(_value_of(rows, count=False, scalar=True))
        except _QueryFailed as exc:
            if exc.pgcode not in _MISSING_OBJECT_SQLSTATES:
                out.warnings.append(
                    redact(f"{entry.source}: summary {entry.name!r}: {exc.message}")
                )
        except _Unsafe as exc:
            raise UnsafeCheck(
                redact(
                    f"{entry.source}: summary {entry.name!r} {exc.message}; "
                    + _read_only_rule("summary")
                ),
                transaction_ended=exc.ended,
            ) from None
    return out


@dataclass
class Listing:
    name: str
    description: str
    columns: list[str]
    rows: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_list(settings: Settings, name: str, env: str = "prod") -> Listing:
    """The rows of the `-- list: <name>` entry on env, read in a read-only transaction."""
    entry = load_list(settings, name)
    conn = db.connect(db.target(settings, env), settings=settings)
    try:
        set_read_only(conn)
        try:
            with _isolated(conn), conn.cursor() as cur:
                cur.execute(entry.query)
                if cur.description is None:
                    raise _QueryFailed("the query returns no result set")
                columns = [d.name for d in cur.description]
                rows = [tuple(r) for r in cur.fetchall()]
        except _QueryFailed as exc:
            raise ConfigError(
                redact(f"{entry.source}: cannot read list {name!r} on {env}: {exc.message}")
            ) from None
        except _Unsafe as exc:
            raise UnsafeCheck(
                redact(f"{entry.source}: list {name!r} {exc.message}; " + _read_only_rule("list")),
                transaction_ended=exc.ended,
            ) from None
        twice = sorted({c for c in columns if columns.count(c) > 1})
        if twice:
            raise ConfigError(
                f"{entry.source}: list {name!r} returns more than one column named "
                f"{', '.join(map(repr, twice))}; name each column once (AS ...)"
            )
        return Listing(
            name=name,
            description=entry.description,
            columns=columns,
            rows=[{c: _cell(v) for c, v in zip(columns, r, strict=True)} for r in rows],
        )
    finally:
        conn.rollback()
        conn.close()


def _cell(value: Any) -> Any:
    value = _comparable(value)
    if isinstance(value, (int, float, bool, str)) or value is None:
        return value
    return str(value)
