"""Pre-flight verification of dev and prod (the seed's verify-database-connection).

For each side: where the URL came from (masked), whether it can be reached, which database
and server it really is, whether the name is the expected one, SSL, row counts per table,
the marketplace summary where its tables exist, and the migration status. Across sides: dev
and prod must be two different databases.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg2.extensions

from dbtools import catalog, db, migrations, safety
from dbtools.config import Settings
from dbtools.errors import DbtoolsError

# The marketplace facts the seed's scripts printed; each needs the columns it names.
MARKETPLACE_FACTS: list[tuple[str, str, dict[str, tuple[str, ...]]]] = [
    ("users", 'SELECT count(*) FROM "User"', {"User": ()}),
    ("builder_profiles", 'SELECT count(*) FROM "BuilderProfile"', {"BuilderProfile": ()}),
    (
        "searchable_builders",
        'SELECT count(*) FROM "BuilderProfile" WHERE searchable',
        {"BuilderProfile": ("searchable",)},
    ),
    ("demo_users", 'SELECT count(*) FROM "User" WHERE "isDemo"', {"User": ("isDemo",)}),
    (
        "liam_com",
        "SELECT count(*) FROM \"User\" WHERE lower(email) = 'liam@buildappswith.com'",
        {"User": ("email",)},
    ),
    (
        "buildappswith_ai_addresses",
        "SELECT count(*) FROM \"User\" WHERE lower(email) LIKE '%%@buildappswith.ai'",
        {"User": ("email",)},
    ),
]


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
    marketplace: dict[str, int | None] = field(default_factory=dict)
    migrations: dict[str, Any] | None = None
    error: str | None = None
    error_code: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class VerifyReport:
    sides: dict[str, SideReport]
    distinct: bool | None
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {
            "sides": {k: v.as_dict() for k, v in self.sides.items()},
            "distinct": self.distinct,
            "problems": self.problems,
        }


def marketplace_summary(
    conn: psycopg2.extensions.connection, tables: list[catalog.Table]
) -> dict[str, int | None]:
    cols = {t.name: {c.name for c in t.columns} for t in tables if t.schema == "public"}
    out: dict[str, int | None] = {}
    with conn.cursor() as cur:
        for name, sql, needs in MARKETPLACE_FACTS:
            if all(tbl in cols and set(c) <= cols[tbl] for tbl, c in needs.items()):
                cur.execute(sql)
                row = cur.fetchone()
                out[name] = int(row[0]) if row else None
            else:
                out[name] = None
    return out


def _migration_status(
    conn: psycopg2.extensions.connection, settings: Settings
) -> dict[str, Any] | None:
    if not settings.migrations_dir.is_dir() or not any(settings.migrations_dir.glob("*.sql")):
        return None
    return migrations.status_summary(conn, settings)


def verify_side(settings: Settings, env: str) -> tuple[SideReport, db.Identity | None]:
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
        conn = db.connect(t, settings=settings)
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
        side.marketplace = marketplace_summary(conn, tables)
        conn.rollback()
        side.migrations = _migration_status(conn, settings)
        return side, ident
    finally:
        conn.close()


def verify(settings: Settings) -> VerifyReport:
    sides: dict[str, SideReport] = {}
    idents: dict[str, db.Identity | None] = {}
    for env in ("dev", "prod"):
        sides[env], idents[env] = verify_side(settings, env)
    problems: list[str] = []
    for env, side in sides.items():
        if side.error:
            problems.append(f"{env}: {side.error}")
        elif not side.name_ok and side.identity:
            problems.append(
                f"{env}: database is named {side.identity['database']!r}, "
                f"expected {side.expected_name!r}"
            )
        if side.migrations and side.migrations.get("drift"):
            problems.append(f"{env}: applied migration files changed: {side.migrations['drift']}")
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
    return VerifyReport(sides, distinct, problems)


def exit_code(report: VerifyReport) -> int:
    """Connection and config problems are exit 2, two names for one database 3, the rest 1."""
    if report.distinct is False:
        return 3
    codes = [s.error_code for s in report.sides.values() if s.error_code]
    if codes:
        return max(codes)
    return 0 if report.ok else 1
