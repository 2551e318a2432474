"""sync-schema (the seed's sync-schema-to-production) and the dev/prod schema diff.

sync-schema applies to prod exactly the migrations already applied on dev: "test in
development first" made a rule. It never runs DDL of its own: no drops, no resets, no
rewrites; only migration files, each in its own transaction. Before the first migration
touches prod it calls `before_write`, the hook through which the sync pipeline takes and
verifies a fresh backup of prod.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dbtools import catalog, db, migrations, permit, safety
from dbtools.config import Settings
from dbtools.errors import SafetyError


@dataclass
class SchemaSyncResult:
    dev_database: str
    prod_database: str
    dry_run: bool
    applied: list[str]  # applied to prod by this run (planned ones in a dry run)
    steps: list[migrations.MigrationStep]
    already_applied: list[str]  # on prod before the run
    backup_hook_called: bool
    schema_match: (
        bool | None
    )  # dev and prod fingerprints equal after the run (None: not comparable)
    differences: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "dev_database": self.dev_database,
            "prod_database": self.prod_database,
            "dry_run": self.dry_run,
            "applied": self.applied,
            "steps": [s.as_dict() for s in self.steps],
            "already_applied": self.already_applied,
            "backup_hook_called": self.backup_hook_called,
            "schema_match": self.schema_match,
            "differences": self.differences,
        }


@dataclass
class _Side:
    target: db.Target
    ident: db.Identity
    status: migrations.MigrationStatus
    objects: dict[str, str]


def _inspect(settings: Settings, env: str) -> _Side:
    t = db.target(settings, env)
    conn = db.connect(t, settings=settings)
    try:
        ident = db.identity(conn)
        st = migrations.status_of(conn, settings.migrations_dir, env, ident.database)
        objects = catalog.schema_objects(conn, settings.schemas)
        return _Side(t, ident, st, objects)
    finally:
        conn.close()


def ids_to_apply(dev: migrations.MigrationStatus, prod: migrations.MigrationStatus) -> list[str]:
    """The migrations prod may receive, or a SafetyError naming what dev has not tested."""
    untested = [m for m in prod.pending if m not in set(dev.applied)]
    if untested:
        raise SafetyError(
            "refusing to sync the schema: pending on prod but not applied on dev: "
            f"{', '.join(untested)}",
            hint="test in development first: dbtools migrate apply --target dev",
        )
    return list(prod.pending)


def _refuse_bad_history(dev: _Side, prod: _Side) -> None:
    for side in (dev, prod):
        if side.status.drift:
            raise migrations.drift_error(side.status, f"{side.target.env} database")
    if prod.status.unknown:
        raise SafetyError(
            "refusing to sync the schema: prod has applied migrations with no file here: "
            f"{', '.join(prod.status.unknown)}",
            hint="bring those migration files into migrations/ (or find out who applied them)",
        )
    ahead = [m for m in prod.status.applied if m not in set(dev.status.applied)]
    if ahead:
        raise SafetyError(
            f"refusing to sync the schema: prod has migrations dev has not: {', '.join(ahead)}",
            hint="apply them to dev first: dbtools migrate apply --target dev",
        )


def sync_schema(
    settings: Settings,
    *,
    dry_run: bool = False,
    before_write: Callable[[], object] | None = None,
) -> SchemaSyncResult:
    """Apply to prod the migrations applied on dev and pending on prod.

    Refuses (SafetyError) when dev and prod are one database, when prod is not named as
    expected, when prod has pending migrations not applied on dev, or when prod is ahead of
    dev; refuses (MigrationError) on drift. `before_write` is called exactly once, only when
    something will be applied, never in a dry run, before the first migration touches prod.
    """
    # Before anything is read: a real run writes prod, and only under the guard's permit.
    granted = None if dry_run else permit.require("sync the schema")
    dev = _inspect(settings, "dev")
    prod = _inspect(settings, "prod")
    safety.assert_writable(prod.target, prod.ident, dev.target, dev.ident)
    _refuse_bad_history(dev, prod)
    ids = ids_to_apply(dev.status, prod.status)
    called = False

    def hook() -> None:
        nonlocal called
        called = True
        if before_write is not None:
            before_write()
        elif granted is not None:
            granted.ensure_backup()

    # The session that writes must reach the very prod database approved above.
    result = migrations.apply(
        settings, "prod", ids=ids, dry_run=dry_run, before_write=hook, expect=prod.ident
    )
    after = result.status
    schema_match: bool | None = None
    differences: list[str] = []
    if not dry_run and set(after.applied) == set(dev.status.applied):
        # Same migrations on both sides: the live schemas must be equal too, or someone
        # changed one of them by hand.
        prod_objects = _inspect(settings, "prod").objects if result.done else prod.objects
        diff = catalog.diff_objects(dev.objects, prod_objects)
        schema_match = diff.empty
        differences = diff.lines()
    return SchemaSyncResult(
        dev_database=dev.ident.database,
        prod_database=prod.ident.database,
        dry_run=dry_run,
        applied=result.done,
        steps=result.steps,
        already_applied=prod.status.applied,
        backup_hook_called=called,
        schema_match=schema_match,
        differences=differences,
    )


# --- dbtools diff ---------------------------------------------------------------------------


# A preserved table (setup.cfg preserved_tables) keeps prod's own rows through every sync, so
# its row counts differing is what a healthy pair of databases looks like.
PRESERVED_NOTE = "preserved: prod keeps its rows"


@dataclass
class SchemaDiffResult:
    dev_database: str
    prod_database: str
    dev_fingerprint: str
    prod_fingerprint: str
    schema: catalog.SchemaDiff
    row_counts: dict[str, dict[str, int]]  # table -> {"dev": n, "prod": m}, differing only
    migrations_only_dev: list[str]
    migrations_only_prod: list[str]
    # Preserved tables whose counts differ: shown, expected, never a difference.
    preserved_row_counts: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def differs(self) -> bool:
        """Whether dev and prod differ in anything a sync would not leave different."""
        return bool(
            not self.schema.empty
            or self.row_counts
            or self.migrations_only_dev
            or self.migrations_only_prod
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "dev_database": self.dev_database,
            "prod_database": self.prod_database,
            "dev_fingerprint": self.dev_fingerprint,
            "prod_fingerprint": self.prod_fingerprint,
            "differs": self.differs,
            "schema": self.schema.as_dict(),
            "schema_lines": self.schema.lines(),
            "row_counts": self.row_counts,
            "preserved_row_counts": self.preserved_row_counts,
            "expected": [f"{k}: {PRESERVED_NOTE}" for k in self.preserved_row_counts],
            "migrations_only_dev": self.migrations_only_dev,
            "migrations_only_prod": self.migrations_only_prod,
        }


def _counts(settings: Settings, env: str) -> dict[str, int]:
    conn = db.connect(db.target(settings, env), settings=settings)
    try:
        tables, _ = catalog.read_tables(conn, settings.schemas, settings.excluded_tables)
        return catalog.row_counts(conn, tables)
    finally:
        conn.close()


def diff(settings: Settings) -> SchemaDiffResult:
    """Schema objects, applied migrations and row counts that differ between dev and prod.

    Row counts of preserved tables are reported apart (`preserved_row_counts`): prod keeps
    its own rows there by design, so they do not make the databases differ."""
    dev = _inspect(settings, "dev")
    prod = _inspect(settings, "prod")
    dev_counts, prod_counts = _counts(settings, "dev"), _counts(settings, "prod")
    preserved = catalog.normalize_table_names(settings.preserved_tables, settings.schemas[0])
    counts: dict[str, dict[str, int]] = {}
    kept: dict[str, dict[str, int]] = {}
    for k in sorted(set(dev_counts) & set(prod_counts)):
        if dev_counts[k] != prod_counts[k]:
            (kept if k in preserved else counts)[k] = {"dev": dev_counts[k], "prod": prod_counts[k]}
    dev_applied, prod_applied = set(dev.status.applied), set(prod.status.applied)
    return SchemaDiffResult(
        dev_database=dev.ident.database,
        prod_database=prod.ident.database,
        dev_fingerprint=catalog.fingerprint_of(dev.objects),
        prod_fingerprint=catalog.fingerprint_of(prod.objects),
        schema=catalog.diff_objects(dev.objects, prod.objects),
        row_counts=counts,
        migrations_only_dev=[m for m in dev.status.applied if m not in prod_applied],
        migrations_only_prod=[m for m in prod.status.applied if m not in dev_applied],
        preserved_row_counts=kept,
    )
