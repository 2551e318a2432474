"""`dbtools migrate test`: every migration applied, rolled back and applied again on a scratch
database, so that a rollback that does not undo its migration is found before prod needs it.

The scratch database is created on dev's server (never prod's) and dropped at the end, also
after a failure or a signal. Per migration, in order: the schema before it is recorded, it is
applied; then, newest first, each rollback must return the schema to exactly what it was
before that migration (a rollback file that is empty, missing or does nothing is named);
finally everything is applied again and must reach the same head as the first time.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg2
import psycopg2.extensions
from yoyo.migrations import Migration

from dbtools import catalog, db
from dbtools.config import Settings
from dbtools.errors import ConfigError, DbtoolsError
from dbtools.migrations import fill
from dbtools.migrations.files import (
    error_place,
    file_statements,
    load_migrations,
    rollback_path,
    rollback_statements,
)


@dataclass
class StepResult:
    migration: str
    apply: str = ""  # "ok" or what went wrong
    rollback: str = ""
    reapply: str = ""
    # the schema objects the migration adds, changes and drops ("kind name")
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.apply == self.rollback == self.reapply == "ok"


@dataclass
class RoundTrip:
    server: str
    steps: list[StepResult] = field(default_factory=list)
    data: bool = False  # --data: generated rows, checked through every step
    notes: list[str] = field(default_factory=list)  # tables the generated rows could not fill
    filled: dict[str, int] = field(default_factory=dict)  # table -> generated rows

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.steps)

    @property
    def problems(self) -> list[str]:
        out = []
        for s in self.steps:
            for what in ("apply", "rollback", "reapply"):
                got = getattr(s, what)
                if got not in ("ok", ""):
                    out.append(f"{s.migration} {what}: {got}")
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "server": self.server,
            "ok": self.ok,
            "steps": [s.__dict__ | {"ok": s.ok} for s in self.steps],
            "problems": self.problems,
            "data": self.data,
            "notes": self.notes,
            "filled": self.filled,
        }


def _run(
    conn: psycopg2.extensions.connection, m: Migration, path: Path, statements: list[str]
) -> str:
    """Run path's statements (in one transaction unless the file says otherwise); "ok" or
    what the server said, with the file, line and column."""
    conn.autocommit = not m.use_transactions
    try:
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
        if m.use_transactions:
            conn.commit()
        return "ok"
    except psycopg2.Error as exc:
        if m.use_transactions:
            conn.rollback()
        place = error_place(path, exc)
        return db.describe_error(exc) + (f" at {place}" if place else "")


def _first_difference(before: dict[str, str], after: dict[str, str]) -> str:
    diff = catalog.diff_objects(before, after)
    lines = diff.lines(left="before the migration", right="after its rollback")
    # a whole table left behind says more than the first of its columns
    lines.sort(key=lambda line: ": table " not in line)
    more = f" (and {len(lines) - 1} more)" if len(lines) > 1 else ""
    return lines[0] + more if lines else ""


def _scratch_target(t: db.Target, name: str) -> db.Target:
    """dev's server, the scratch database: the URL with only its database name replaced."""
    head, _, tail = t.url.partition("?")
    base = head.rsplit("/", 1)[0]
    url = f"{base}/{quote(name)}" + (f"?{tail}" if tail else "")
    return db.Target(env="dev", url=url, expected_name=name)


def round_trip(settings: Settings, *, data: bool = False) -> RoundTrip:
    """Apply, roll back and re-apply every migration on a scratch database of dev's server;
    with `data`, through generated rows that no step may lose (migrations.fill)."""
    t = db.target(settings, "dev")
    migrations = load_migrations(settings.migrations_dir)
    schemas = list(settings.schemas)
    admin = db.connect(t, settings=settings, autocommit=True)
    name = f"dbtools_mtest_{uuid.uuid4().hex[:10]}"
    result = RoundTrip(server=t.masked.rsplit("/", 1)[0], data=data)
    try:
        try:
            with admin.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
        except psycopg2.Error as exc:
            raise ConfigError(
                f"migrate test needs to create a scratch database on dev's server: "
                f"{db.describe_error(exc)}",
                hint="give the dev role CREATEDB, or run it against a local PostgreSQL",
            ) from None
        scratch = db.connect(_scratch_target(t, name), settings=settings)
        try:
            _exercise(scratch, migrations, schemas, result)
        finally:
            scratch.close()
    finally:
        try:
            with admin.cursor() as cur:
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            admin.close()
    return result


def _tables(objects: dict[str, str]) -> set[str]:
    return {name.partition(" ")[2] for name in objects if name.startswith("table ")}


def _exercise(
    conn: psycopg2.extensions.connection,
    migrations: list[Migration],
    schemas: list[str],
    result: RoundTrip,
) -> None:
    def objects() -> dict[str, str]:
        conn.autocommit = True
        return catalog.schema_objects(conn, schemas)

    def rows() -> fill.Digest:
        conn.autocommit = True
        return fill.digest(conn, schemas) if result.data else {}

    before: list[dict[str, str]] = []
    before_rows: list[fill.Digest] = []
    for m in migrations:
        step = StepResult(m.id)
        result.steps.append(step)
        before.append(objects())
        before_rows.append(rows())
        step.apply = _run(conn, m, Path(m.path), file_statements(Path(m.path)))
        if step.apply != "ok":
            return  # later migrations build on this one: nothing more to learn
        made = catalog.diff_objects(before[-1], objects())
        step.added, step.dropped = made.only_right, made.only_left
        step.changed = [name for name, _, _ in made.changed]
        if result.data:
            gone = fill.lost(before_rows[-1], rows(), fill.intent(Path(m.path)))
            if gone:
                step.apply = f"{m.id} lost rows or values it does not drop: {'; '.join(gone[:3])}"
                return
            new = _tables(objects()) - _tables(before[-1])
            filled = fill.fill(conn, schemas, new)
            result.notes += [f"{k}: not filled ({why})" for k, why in filled.skipped.items()]
            result.filled.update(filled.rows)
    head = objects()
    for i in reversed(range(len(migrations))):
        m, was = migrations[i], before[i]
        step = next(s for s in result.steps if s.migration == m.id)
        try:
            statements = rollback_statements(m)
        except DbtoolsError as exc:
            step.rollback = exc.message
            return
        step.rollback = _run(conn, m, rollback_path(m), statements)
        if step.rollback != "ok":
            return
        now = objects()
        if now != was:
            step.rollback = (
                f"{rollback_path(m).name} does not undo {m.id}: {_first_difference(was, now)}"
            )
            return
        if result.data:
            meant = fill.intent(Path(m.path))
            undo = fill.intent(rollback_path(m))
            meant.tables |= undo.tables
            meant.columns |= undo.columns
            gone = fill.lost(before_rows[i], rows(), meant)
            if gone:
                step.rollback = (
                    f"{rollback_path(m).name} loses rows or values that {m.id} kept: "
                    + "; ".join(gone[:3])
                )
                return
    for m in migrations:
        step = next(s for s in result.steps if s.migration == m.id)
        step.reapply = _run(conn, m, Path(m.path), file_statements(Path(m.path)))
        if step.reapply != "ok":
            return
    again = objects()
    if again != head:
        last = result.steps[-1]
        last.reapply = f"applying again reaches another schema: {_first_difference(head, again)}"
