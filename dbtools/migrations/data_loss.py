"""What a migration would destroy in the database it is about to run on, counted before it runs.

For each DROP COLUMN, DROP TABLE and ALTER COLUMN ... TYPE among the migrations about to be
applied (read with PostgreSQL's own parser, pglast), the rows that hold data there are
counted: non-null values of a dropped column, rows of a dropped table, values a type change
would alter (compared as text: a numeric scale or timestamp precision cut, a USING that
rewrites). A value a conversion rejects fails the migration itself, named by file and line.
The rows a new constraint would reject are counted too: NULLs under a SET NOT NULL, the rows
of a filled table that an ADD COLUMN ... NOT NULL without a default would leave NULL, and the
rows an ADD CONSTRAINT ... CHECK (validated) fails; such a migration would fail half-way
through a run, so it is refused before anything runs, and no comment acknowledges it (the
data or the migration must change). A loss above zero refuses the run (exit 3, nothing
changed) unless the migration file acknowledges it with a reason, in its leading comments
(yoyo would run a comment after the last statement as an empty statement):
`-- dbtools: allow drop-column "tagline": moved to Profile.tagline in 0004` (or without the
quoted name, for every drop of that kind in the file). A table or column that does not exist
yet (made by an earlier migration of the same run) holds nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg2
from pglast import ast, parse_sql
from pglast.enums import AlterTableType, ConstrType, ObjectType
from pglast.parser import ParseError
from pglast.stream import RawStream
from yoyo.migrations import Migration

from dbtools import db
from dbtools.db import Conn, quote_ident
from dbtools.errors import SafetyError
from dbtools.migrations.lint import acknowledgements, line_col


@dataclass
class Loss:
    migration: str
    file: str
    line: int
    rule: str  # drop-column | drop-table | change-type | not-null | check
    target: str  # "table"."column" or "table"
    name: str  # the bare column or table name an acknowledgement quotes
    rows: int
    acknowledged: str = ""

    @property
    def described(self) -> str:
        what = {
            "drop-column": "non-null values in column",
            "drop-table": "rows in table",
            "change-type": "values altered by the type change of",
            "not-null": "rows with NULL in",
            "check": "rows failing",
        }[self.rule]
        return f"{Path(self.file).name} line {self.line}: {self.rows} {what} {self.target}"

    @property
    def fails(self) -> bool:
        """The migration would fail on these rows (a constraint), rather than destroy them."""
        return self.rule in FAILS


FAILS = ("not-null", "check")


def _qualified(rel: ast.RangeVar) -> str:
    name = quote_ident(str(rel.relname))
    return f"{quote_ident(str(rel.schemaname))}.{name}" if rel.schemaname else name


def _drops(path: Path) -> list[tuple[str, str, str, str, int]]:
    """(rule, count query, shown target, bare name, byte offset) per drop in the file."""
    data = path.read_bytes()
    try:
        statements = parse_sql(data.decode("utf-8"))
    except (ParseError, UnicodeDecodeError):
        return []  # the run itself reports the syntax error, with its place
    out = []
    written: set[str] = set()  # tables whose rows an earlier statement of the file changes
    for raw in statements:
        stmt, at = raw.stmt, raw.stmt_location or 0
        if isinstance(stmt, (ast.UpdateStmt, ast.DeleteStmt, ast.InsertStmt)) and stmt.relation:
            written.add(_qualified(stmt.relation))
        if isinstance(stmt, ast.AlterTableStmt) and stmt.relation is not None:
            table = _qualified(stmt.relation)
            if table not in written:  # rows an earlier statement fixes cannot be counted now
                out += [(*found, at) for found in _constraints(table, stmt.cmds or ())]
            for cmd in stmt.cmds or ():
                if cmd.subtype == AlterTableType.AT_DropColumn and cmd.name:
                    col = quote_ident(str(cmd.name))
                    sql = f"SELECT count(*) FROM {table} WHERE {col} IS NOT NULL"
                    out.append(("drop-column", sql, f"{table}.{col}", str(cmd.name), at))
                elif cmd.subtype == AlterTableType.AT_AlterColumnType and cmd.name:
                    col = quote_ident(str(cmd.name))
                    new_type = RawStream()(cmd.def_.typeName)
                    using = cmd.def_.raw_default
                    expr = RawStream()(using) if using is not None else f"{col}::{new_type}"
                    # values the conversion alters (numeric scale, timestamp precision, ...),
                    # compared as text; a value it rejects fails the migration itself
                    sql = (
                        f"SELECT count(*) FROM {table} WHERE {col} IS NOT NULL "
                        f"AND ({expr})::text IS DISTINCT FROM {col}::text"
                    )
                    shown = f"{table}.{col} (to {new_type})"
                    out.append(("change-type", sql, shown, str(cmd.name), at))
        elif isinstance(stmt, ast.DropStmt) and stmt.removeType == ObjectType.OBJECT_TABLE:
            for obj in stmt.objects or ():
                parts = [str(getattr(p, "sval", p)) for p in obj]
                table = ".".join(quote_ident(p) for p in parts)
                out.append(("drop-table", f"SELECT count(*) FROM {table}", table, parts[-1], at))
    return out


def _constraints(table: str, cmds: Sequence[ast.AlterTableCmd]) -> list[tuple[str, str, str, str]]:
    """(rule, count query, shown target, name) for each constraint these commands add that
    existing rows could fail."""
    out = []
    for cmd in cmds:
        if cmd.subtype == AlterTableType.AT_SetNotNull and cmd.name:
            col = quote_ident(str(cmd.name))
            sql = f"SELECT count(*) FROM {table} WHERE {col} IS NULL"
            out.append(("not-null", sql, f"{table}.{col} (SET NOT NULL)", str(cmd.name)))
        elif cmd.subtype == AlterTableType.AT_AddColumn and isinstance(cmd.def_, ast.ColumnDef):
            kinds = {c.contype for c in cmd.def_.constraints or ()}
            filled = {ConstrType.CONSTR_DEFAULT, ConstrType.CONSTR_IDENTITY}
            filled.add(ConstrType.CONSTR_GENERATED)
            if ConstrType.CONSTR_NOTNULL in kinds and not kinds & filled:
                col = quote_ident(str(cmd.def_.colname))
                shown = f"{table}.{col} (ADD COLUMN ... NOT NULL without a default)"
                out.append(("not-null", f"SELECT count(*) FROM {table}", shown, str(col)))
        elif (
            cmd.subtype == AlterTableType.AT_AddConstraint
            and isinstance(cmd.def_, ast.Constraint)
            and cmd.def_.contype == ConstrType.CONSTR_CHECK
            and not cmd.def_.skip_validation
            and cmd.def_.raw_expr is not None
        ):
            expr = RawStream()(cmd.def_.raw_expr)
            name = str(cmd.def_.conname or "")
            # a CHECK passes on NULL: only a false result fails
            sql = f"SELECT count(*) FROM {table} WHERE NOT ({expr})"
            out.append(("check", sql, f"CHECK ({expr}) on {table}", name))
    return out


def _count(conn: Conn, sql: str) -> int:
    """The count, or 0 when the object does not exist (yet) here."""
    try:
        with db.savepoint(conn, "dbtools_data_loss"), conn.cursor() as cur:
            cur.execute(sql)
            row = cur.fetchone()
    except (psycopg2.errors.UndefinedTable, psycopg2.errors.UndefinedColumn):
        return 0
    except psycopg2.DataError:
        return 0  # a conversion that fails: the migration fails on it, named by file and line
    return int(row[0]) if row else 0


def losses(conn: Conn, plan: Sequence[Migration]) -> list[Loss]:
    """Every drop in the planned migrations with what it would destroy on conn's database."""
    out: list[Loss] = []
    with db.read_only_use(conn):  # no lock of ours left for the migration to wait behind
        for m in plan:
            out += _losses_of(conn, m)
    return out


def _losses_of(conn: Conn, m: Migration) -> list[Loss]:
    out: list[Loss] = []
    path = Path(m.path)
    acks = acknowledgements(path)
    data = path.read_bytes()
    for rule, sql, target, name, at in _drops(path):
        rows = _count(conn, sql)
        if not rows:
            continue
        line, _ = line_col(data, at)
        reason = "" if rule in FAILS else acks.get((rule, name)) or acks.get((rule, None)) or ""
        out.append(Loss(m.id, str(path), line, rule, target, name, rows, reason))
    return out


def _refuse(where: str, what: str, found: list[Loss], hint: str) -> SafetyError:
    return SafetyError(
        f"refusing to migrate {where}: the migrations would {what} there: "
        + "; ".join(x.described for x in found)
        + "; nothing was changed",
        hint=hint,
    )


def refuse_losses(conn: Conn, plan: Sequence[Migration], where: str) -> list[Loss]:
    """SafetyError (exit 3) naming each unacknowledged loss and each constraint existing rows
    would fail; the acknowledged losses otherwise."""
    found = losses(conn, plan)
    failing = [x for x in found if x.fails]
    if failing:
        raise _refuse(
            where,
            "fail",
            failing,
            f"fix those rows first, or change {Path(failing[0].file).name} (e.g. a DEFAULT, "
            "or add the CHECK as NOT VALID and validate it after cleaning the data)",
        )
    open_ = [x for x in found if not x.acknowledged]
    if open_:
        first = open_[0]
        raise _refuse(
            where,
            "destroy data",
            open_,
            f"if that is intended, say why at the top of {Path(first.file).name}: "
            f'-- dbtools: allow {first.rule} "{first.name}": <reason>',
        )
    return found
