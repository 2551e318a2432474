"""Pre-flight verification of dev and prod (the seed's verify-database-connection).

For each side: where the URL came from (masked), whether it can be reached, which database
and server it really is, whether the name is the expected one, SSL, row counts per table,
the project's summary (the `-- summary:` entries of checks/*.sql; n/a where the side's
schema lacks what a query names), and the migration status. Across sides: dev and prod must
be two different databases.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg2.extensions

from dbtools import catalog, checks, db, migrations, safety
from dbtools.config import Settings
from dbtools.errors import EXIT_CONFIG, DbtoolsError
from dbtools.side import Side


@dataclass
class SideReport:
    env: str
    url: str | None
    url_source: str
    expected_name: str
    reachable: bool = False
    identity: dict[str, Any] | None = None
    name_ok: bool = False
    warnings: list[str] = field(default_factory=list)
    tables: dict[str, int] = field(default_factory=dict)
    # The `-- summary:` entries of checks/*.sql: name -> value, None where n/a on this side.
    summary: dict[str, Any] = field(default_factory=dict)
    migrations: dict[str, Any] | None = None
    # What ties the synced tables to objects no snapshot loads (catalog.outside_dependencies):
    # foreign keys from tables that are not synced (every restore would fail) and sequences
    # their defaults draw from (a restore would leave them behind the loaded ids).
    outside_references: list[str] = field(default_factory=list)
    # Configured excluded/preserved names that match no table here -> the closest name.
    unmatched_names: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    error_code: int | None = None
    # A summary entry that tried to write or changed its session (checks.UnsafeCheck): exit 2.
    config_problem: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        del out["config_problem"]  # reported in the report's problems
        return out


@dataclass
class VerifyReport:
    sides: dict[str, SideReport]
    distinct: bool | None
    problems: list[str]
    config_problems: list[str] = field(default_factory=list)  # also in problems; exit 2
    # Summary entry name -> what to print for it (its description, else its name).
    summary_labels: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {
            "sides": {k: v.as_dict() for k, v in self.sides.items()},
            "distinct": self.distinct,
            "problems": self.problems,
        }


def _migration_status(
    conn: psycopg2.extensions.connection, settings: Settings
) -> dict[str, Any] | None:
    if not settings.migrations_dir.is_dir() or not any(settings.migrations_dir.glob("*.sql")):
        return None
    return migrations.status_summary(conn, settings)


def _configured(settings: Settings) -> list[tuple[str, str]]:
    """(setting, "schema.table") for every excluded and preserved table."""
    schema = settings.schemas[0]
    return [
        (setting, catalog.table_key(name, schema))
        for setting, names in (
            ("preserved_tables", settings.preserved_tables),
            ("excluded_tables", settings.excluded_tables),
        )
        for name in names
    ]


def configured_keys(settings: Settings) -> list[str]:
    return [key for _, key in _configured(settings)]


def name_problems(settings: Settings, per_side: list[dict[str, str]]) -> list[str]:
    """Excluded/preserved names that match no table on any side reached (per_side: each
    side's catalog.unmatched_table_names): a misspelt preserved table would be overwritten."""
    if not per_side:
        return []
    out = []
    for setting, key in _configured(settings):
        if all(key in side for side in per_side):
            close = next((side[key] for side in per_side if side[key]), "")
            out.append(
                f"setup.cfg [dbtools] {setting}: {key!r} matches no table in dev or prod"
                + (f" (did you mean {close!r}?)" if close else "")
            )
    return out


def verify_side(
    settings: Settings,
    env: str,
    *,
    outside: bool = True,
    summary: list[checks.Check] | None = None,
    opened: Side | None = None,
) -> tuple[SideReport, db.Identity | None]:
    """One side's report; `opened`: the run's own connection to it, used and left open."""
    url = settings.urls.get(env)
    side = SideReport(
        env=env,
        url=db.mask_url(url) if url else None,
        url_source=settings.url_sources.get(env, "unset"),
        expected_name=settings.expected_names[env],
    )
    try:
        t = db.target(settings, env)
        side.warnings += db.check_endpoint(t, "read", allow_insecure=settings.allow_insecure)
        conn = opened.idle(autocommit=False) if opened else db.connect(t, settings=settings)
    except DbtoolsError as exc:
        side.error, side.error_code = exc.message, exc.exit_code
        return side, None
    try:
        ident = db.identity(conn)
        side.reachable = True
        side.identity = ident.as_dict()
        side.name_ok = ident.database == t.expected_name
        tables, _ = catalog.read_tables(conn, settings.schemas, settings.excluded_tables)
        side.tables = catalog.row_counts(conn, tables)
        if summary:
            try:
                found = checks.summarize(conn, summary)
                side.summary = found.values
                side.warnings += found.warnings
            except checks.UnsafeCheck as exc:
                side.config_problem = exc.message
                conn.rollback()
        if outside:
            side.outside_references = [
                r.line
                for r in catalog.outside_dependencies(
                    conn, settings.schemas, settings.excluded_tables
                )
            ]
        side.unmatched_names = catalog.unmatched_table_names(conn, configured_keys(settings))
        conn.rollback()
        side.migrations = _migration_status(conn, settings)
        return side, ident
    finally:
        if opened is None:
            conn.close()
        else:
            conn.rollback()


def verify(
    settings: Settings, *, outside: bool = True, sides: dict[str, Side] | None = None
) -> VerifyReport:
    """Both sides and what is wrong. outside=False leaves out what ties the synced tables to
    objects no snapshot loads: full-sync's guard refuses that itself (exit 3, prod only).
    sides: the run's own connections (full-sync's), used instead of opening new ones."""
    config_problems: list[str] = []
    try:
        summary = checks.load_summary(settings)
    except DbtoolsError as exc:  # a bad checks file: refused as `dbtools check` refuses it
        summary = []
        config_problems.append(exc.message)
    reports: dict[str, SideReport] = {}
    idents: dict[str, db.Identity | None] = {}
    for env in ("dev", "prod"):
        opened = sides.get(env) if sides else None
        reports[env], idents[env] = verify_side(
            settings, env, outside=outside, summary=summary, opened=opened
        )
    problems: list[str] = []
    for env, side in reports.items():
        if not side.expected_name:
            config_problems.append(
                f"{env}: no expected database name: set {env}_database in setup.cfg [dbtools]"
            )
        if side.config_problem:
            config_problems.append(f"{env}: {side.config_problem}")
        if side.error:
            problems.append(f"{env}: {side.error}")
        elif not side.name_ok and side.identity and side.expected_name:
            problems.append(
                f"{env}: database is named {side.identity['database']!r}, "
                f"expected {side.expected_name!r}"
            )
        problems += [f"{env}: {line}" for line in side.outside_references]
        if side.migrations and side.migrations.get("drift"):
            problems.append(f"{env}: applied migration files changed: {side.migrations['drift']}")
    config_problems += name_problems(
        settings, [side.unmatched_names for side in reports.values() if side.reachable]
    )
    problems += config_problems
    distinct: bool | None = None
    dev_id, prod_id = idents["dev"], idents["prod"]
    if dev_id and prod_id:
        try:
            safety.assert_distinct(
                db.target(settings, "dev"), dev_id, db.target(settings, "prod"), prod_id
            )
            distinct = True
        except DbtoolsError as exc:
            distinct = False
            problems.append(exc.message)
    labels = {e.name: e.description or e.name for e in summary}
    return VerifyReport(reports, distinct, problems, config_problems, labels)


def exit_code(report: VerifyReport) -> int:
    """Connection and config problems are exit 2, two names for one database 3, the rest 1."""
    if report.distinct is False:
        return 3
    codes = [s.error_code for s in report.sides.values() if s.error_code]
    if report.config_problems:
        codes.append(EXIT_CONFIG)
    if codes:
        return max(codes)
    return 0 if report.ok else 1
