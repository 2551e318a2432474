"""Migration files: a directory's migrations in order, a file's statements, its checksum, its
rollback file, and creating a new pair.

Everything here reads (or, for `new`, writes) files only; no database is touched. The rest of
the package and `migrate_txn` read migrations through these functions, so a directory is
loaded, and a rollback file refused, one way everywhere.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import sqlparse
import yoyo
import yoyo.exceptions
from yoyo.migrations import Migration, read_sql_migration, topological_sort

from dbtools.errors import ConfigError, MigrationError, SafetyError

ID_PATTERN = re.compile(r"^(\d{4,})_([a-z0-9_]+)$")


def file_checksum(path: Path) -> str:
    """sha256 of a migration file; line endings are normalised so a git checkout on Windows
    (CRLF) is not mistaken for an edit."""
    data = path.read_bytes().replace(b"\r\n", b"\n")
    return "sha256:" + hashlib.sha256(data).hexdigest()


def load_migrations(migrations_dir: Path) -> list[Migration]:
    """The migrations of a directory in dependency order, fully loaded.

    yoyo resolves `depends` through a process-wide registry keyed by id; loading right after
    reading binds each migration to its siblings from this directory, not to a same-named
    migration read earlier from another one.
    """
    if not migrations_dir.is_dir():
        raise ConfigError(f"migrations directory {migrations_dir} does not exist")
    try:
        found = yoyo.read_migrations(str(migrations_dir))
        for m in found:
            m.load()
        return list(topological_sort(found))
    except yoyo.exceptions.MigrationConflict as exc:
        raise MigrationError(f"two migrations share the id {exc}") from None
    except yoyo.exceptions.BadMigration as exc:
        raise MigrationError(f"unusable migration: {exc.args[0] if exc.args else exc}") from None
    except ValueError as exc:  # sqlparse/yoyo on malformed directives
        raise MigrationError(f"unusable migration in {migrations_dir}: {exc}") from None


def migration_ids(migrations_dir: Path) -> list[str]:
    """Ids of the migrations in a directory, in the order they apply."""
    return [m.id for m in load_migrations(Path(migrations_dir))]


def file_statements(path: Path) -> list[str]:
    """The statements of a migration or rollback file, split as yoyo splits them."""
    _, _, statements = read_sql_migration(str(path))
    return [s.strip() for s in statements]


def error_place(path: Path, exc: BaseException) -> str:
    """Where in `path` the server refused a statement: 'NAME line L, column C: <statement>'.

    The failing statement is the cursor's last query; PostgreSQL's error position (a
    1-based character offset into it, when the error has one) gives the column. '' when
    the statement cannot be found in the file (e.g. yoyo's own bookkeeping failed).
    """
    cursor = getattr(exc, "cursor", None)
    query = getattr(cursor, "query", None)
    if not isinstance(query, bytes):
        return ""
    sent = query.decode("utf-8", "replace")
    try:
        text = path.read_text(encoding="utf-8").replace("\r\n", "\n")
    except (OSError, UnicodeDecodeError):
        return ""
    start = text.find(sent)
    lead = 0
    if start < 0:  # sent with whitespace the file does not have around it
        core = sent.strip()
        lead = len(sent) - len(sent.lstrip())
        start = text.find(core) if core else -1
        if start < 0:
            return ""
        start -= lead
    diag = getattr(exc, "diag", None)
    position = getattr(diag, "statement_position", None)
    offset = start + (int(position) - 1 if position and str(position).isdigit() else lead)
    offset = max(0, min(offset, len(text)))
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    first = sent.strip().splitlines()[0] if sent.strip() else ""
    shown = first if len(first) <= 80 else first[:77] + "..."
    return f"{path.name} line {line}, column {column}: {shown}"


def rollback_file(path: Path) -> Path:
    """Where the undo of the migration file `path` lives: NNNN_name.rollback.sql beside it."""
    return Path(path).with_suffix("").with_suffix(".rollback.sql")


def rollback_path(m: Migration) -> Path:
    """Where m's undo lives (rollback_file of its file)."""
    return rollback_file(Path(m.path))


def _is_empty_sql(statement: str) -> bool:
    return not sqlparse.format(statement, strip_comments=True).strip().strip(";").strip()


def rollback_statements(m: Migration) -> list[str]:
    """The statements that undo m, or a SafetyError (exit 3) naming the file when there are none.

    An empty rollback file (or one of comments only) would "roll back" by forgetting the
    migration while its changes stay: re-applying it then fails. Every rollback (`migrate
    rollback`, the sync's rollback) refuses it the same way, before any change.
    """
    path = rollback_path(m)
    hint = f"write the statements that undo {m.id} in {path.name}"
    if not path.is_file():
        raise SafetyError(
            f"refusing to roll back: {m.id} has no rollback file ({path}); nothing changed",
            hint=hint,
        )
    statements = [s for s in file_statements(path) if not _is_empty_sql(s)]
    if not statements:
        raise SafetyError(
            f"refusing to roll back: the rollback file of {m.id} ({path}) has no statements "
            "(only comments or whitespace); nothing changed",
            hint=hint,
        )
    return statements


@dataclass
class NewResult:
    id: str
    path: str
    rollback_path: str
    depends: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def new(migrations_dir: Path, name: str) -> NewResult:
    """Create NNNN_name.sql and NNNN_name.rollback.sql, depending on the newest migration."""
    slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    if not slug:
        raise ConfigError(f"migration name {name!r} has no letters or digits")
    migrations_dir = Path(migrations_dir)
    migrations_dir.mkdir(parents=True, exist_ok=True)
    existing = load_migrations(migrations_dir)
    numbers = [int(m.group(1)) for m in (ID_PATTERN.match(x.id) for x in existing) if m]
    previous = existing[-1].id if existing else None
    mid = f"{(max(numbers) + 1) if numbers else 1:04d}_{slug}"
    path = migrations_dir / f"{mid}.sql"
    rpath = migrations_dir / f"{mid}.rollback.sql"
    if path.exists() or rpath.exists():
        raise ConfigError(f"{path} already exists")
    header = f"-- {name}\n"
    if previous:
        header += f"-- depends: {previous}\n"
    path.write_text(
        header + "--\n-- One migration, one transaction. For statements that cannot run in a\n"
        "-- transaction (CREATE INDEX CONCURRENTLY), add the directive line\n"
        "-- `transactional: false` as a comment at the top, and keep the file to one statement.\n"
        "-- Rename columns with RENAME COLUMN: never DROP + ADD, which loses the data.\n\n"
    )
    rpath.write_text(f"-- Undo {mid}: the exact reverse of {path.name}, keeping data.\n\n")
    return NewResult(mid, str(path), str(rpath), previous)
