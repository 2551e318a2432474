"""`dbtools migrate lint`: what a migration author should hear before the SQL reaches prod.

Two sources of findings, each with file, line, column, rule and one line of advice:

- squawk (squawk-cli, the PostgreSQL migration linter): ban-drop-column, changing-column-type,
  adding-not-nullable-field, require-concurrent-index-creation, renaming-table, ... Three of
  its rules are left out because dbtools already does what they ask: every migration session
  has a lock_timeout (require-lock-timeout), a statement timeout is the operator's choice
  (require-statement-timeout), and a migration runs in one transaction, so a half-applied
  one cannot be re-run (prefer-robust-stmts).
- dbtools' own rules, read with PostgreSQL's own parser (pglast): `probable-rename` (a DROP
  COLUMN and an ADD COLUMN on the same table in one migration: the seed's lost-data rename;
  use RENAME COLUMN), `missing-rollback`, `empty-rollback`, and `comment-only-statement` (a
  comment after the last statement, which yoyo runs as an empty query and fails on).

A finding is acknowledged in its own file, never globally, with a reason:
`-- dbtools: allow <rule>: <why>`; an acknowledgement without a reason does not count.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pglast import ast, parse_sql
from pglast.enums import AlterTableType
from pglast.parser import ParseError

from dbtools.errors import ConfigError
from dbtools.migrations.files import file_statements, rollback_file

# Rules dbtools makes moot (module doc), and squawk's column-type preferences (timestamptz,
# bigint, identity, text), which are modelling choices, not hazards of running a migration.
SQUAWK_EXCLUDED = (
    "require-lock-timeout",
    "require-statement-timeout",
    "prefer-robust-stmts",
    "prefer-timestamp-tz",
    "prefer-bigint-over-int",
    "prefer-bigint-over-smallint",
    "prefer-identity",
    "prefer-text-field",
)
_NOT_TRANSACTIONAL = re.compile(r"^\s*--\s*transactional:\s*false\s*$", re.MULTILINE | re.I)
# -- dbtools: allow <rule> ["<name>"]: <reason>
_ACK = re.compile(
    r'^\s*--\s*dbtools:\s*allow\s+([a-z0-9-]+)(?:\s+"([^"]*)")?\s*:(.*)$', re.MULTILINE
)


@dataclass
class Finding:
    file: str
    line: int
    column: int
    rule: str
    message: str
    advice: str = ""
    acknowledged: str = ""  # the reason given in the file, when acknowledged

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def annotation(self) -> str:
        """The GitHub Actions workflow command that puts this finding on the diff."""
        text = f"{self.message} {self.advice}".strip().replace("%", "%25").replace("\n", "%0A")
        where = f"file={self.file},line={self.line},col={self.column},title={self.rule}"
        return f"::warning {where}::{text}"


def _squawk() -> str:
    here = Path(sys.executable).parent / "squawk"
    found = str(here) if here.is_file() else shutil.which("squawk")
    if not found:
        raise ConfigError(
            "migrate lint needs squawk, which is not installed", hint="pip install squawk-cli"
        )
    return found


def _transactional(path: Path) -> bool:
    try:
        return not _NOT_TRANSACTIONAL.search(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return True


def _squawk_findings(files: list[Path]) -> list[Finding]:
    """squawk over the files; a migration yoyo runs in a transaction is linted as one (a
    table created earlier in the same migration is new: no lock hazard on it)."""
    data: list[Any] = []
    for in_txn in (True, False):
        batch = [f for f in files if _transactional(f) == in_txn]
        if not batch:
            continue
        args = [_squawk(), "--reporter", "json", *[f"--exclude={r}" for r in SQUAWK_EXCLUDED]]
        args.append("--assume-in-transaction" if in_txn else "--no-assume-in-transaction")
        try:
            done = subprocess.run(
                [*args, *map(str, batch)],
                capture_output=True,
                text=True,
                timeout=120,
                env=os.environ,
            )
            got = json.loads(done.stdout or "[]")
        except (OSError, subprocess.SubprocessError, ValueError) as exc:
            raise ConfigError(f"squawk could not be run: {exc}") from None
        data += got if isinstance(got, list) else []
    out = []
    for item in data:
        out.append(
            Finding(
                file=str(item.get("file", "")),
                line=int(item.get("line", 0)) + 1,  # squawk counts from 0
                column=int(item.get("column", 0)) + 1,
                rule=str(item.get("rule_name", "squawk")),
                message=str(item.get("message", "")),
                advice=str(item.get("help") or ""),
            )
        )
    return out


def line_col(data: bytes, offset: int) -> tuple[int, int]:
    """1-based line and column of a byte offset (pglast's locations are in bytes)."""
    # skip the whitespace and comment lines pglast counts as the statement's start
    text = data[offset:].decode("utf-8", "replace")
    skipped = 0
    for raw in text.splitlines(keepends=True):
        if raw.strip() and not raw.strip().startswith("--"):
            skipped += len(raw) - len(raw.lstrip())
            break
        skipped += len(raw)
    before = data[:offset].decode("utf-8", "replace") + text[:skipped]
    line = before.count("\n") + 1
    return line, len(before) - (before.rfind("\n") + 1) + 1


def _own_findings(path: Path) -> list[Finding]:
    data = path.read_bytes()
    out: list[Finding] = []
    try:
        statements = parse_sql(data.decode("utf-8"))
    except (ParseError, UnicodeDecodeError) as exc:
        return [Finding(str(path), 1, 1, "syntax", f"cannot be parsed: {exc}")]
    dropped: dict[str, list[tuple[str, int]]] = {}
    added: dict[str, list[str]] = {}
    for raw in statements:
        stmt = raw.stmt
        if not isinstance(stmt, ast.AlterTableStmt) or stmt.relation is None:
            continue
        table = str(stmt.relation.relname)
        for cmd in stmt.cmds or ():
            if cmd.subtype == AlterTableType.AT_DropColumn:
                dropped.setdefault(table, []).append((str(cmd.name), raw.stmt_location or 0))
            elif cmd.subtype == AlterTableType.AT_AddColumn:
                added.setdefault(table, []).append(str(cmd.def_.colname))
    for table, drops in dropped.items():
        for column, location in drops:
            if table in added:
                line, col = line_col(data, location)
                out.append(
                    Finding(
                        str(path),
                        line,
                        col,
                        "probable-rename",
                        f'drops "{table}"."{column}" and adds '
                        f"{', '.join(repr(a) for a in added[table])} to the same table: a rename "
                        "done this way loses the column's data",
                        f'use ALTER TABLE "{table}" RENAME COLUMN "{column}" TO ...',
                    )
                )
    for statement in file_statements(path):
        if statement and _is_comment_only(statement):
            out.append(
                Finding(
                    str(path), 1, 1, "comment-only-statement",
                    "a comment after the last statement: yoyo runs it as a statement and the "
                    "migration fails with 'can't execute an empty query'",
                    "move the comment above the first statement",
                )
            )  # fmt: skip
            break
    undo = rollback_file(path)
    if not undo.is_file():
        out.append(
            Finding(
                str(path), 1, 1, "missing-rollback", f"no rollback file ({undo.name})",
                f"write the statements that undo it in {undo.name}",
            )
        )  # fmt: skip
    elif not _has_statements(undo):
        out.append(
            Finding(
                str(undo), 1, 1, "empty-rollback", f"{undo.name} has no statements",
                "a rollback that does nothing forgets the migration while its changes stay",
            )
        )  # fmt: skip
    return out


def _is_comment_only(statement: str) -> bool:
    try:
        return not parse_sql(statement)
    except ParseError:
        return False


def _has_statements(path: Path) -> bool:
    try:
        return bool(parse_sql(path.read_text(encoding="utf-8")))
    except (ParseError, UnicodeDecodeError, OSError):
        return True  # not parseable: squawk and `migrate test` report it; not "empty"


def acknowledgements(path: Path) -> dict[tuple[str, str | None], str]:
    """(rule, quoted name or None) -> reason, for each acknowledgement in the file that gives
    a reason (one without a reason does not count)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return {}
    return {
        (rule, name or None): why.strip() for rule, name, why in _ACK.findall(text) if why.strip()
    }


def _acknowledge(findings: list[Finding]) -> None:
    by_file = {file: acknowledgements(Path(file)) for file in {f.file for f in findings}}
    for f in findings:
        acks = by_file[f.file]
        f.acknowledged = next((why for (rule, _), why in acks.items() if rule == f.rule), "")


def lint(files: list[Path]) -> list[Finding]:
    """Findings for the migration files given (rollback files are linted with them)."""
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise ConfigError(f"no such migration file: {missing[0]}")
    migrations = [f for f in files if not f.name.endswith(".rollback.sql")]
    findings = _squawk_findings(migrations) if migrations else []
    for path in migrations:
        findings += _own_findings(path)
    _acknowledge(findings)
    return sorted(findings, key=lambda f: (f.file, f.line, f.column, f.rule))
