"""The refusals every pipeline shares, checked before any backup: drift, schema mismatch,
setting names that match no table, what no snapshot can load."""

from __future__ import annotations

from yoyo.migrations import Migration

from dbtools import (
    catalog,
    migrate_txn,
    migrations,
    schema_sync,
)
from dbtools import verify as verify_mod
from dbtools.config import Settings
from dbtools.db import Conn
from dbtools.errors import (
    ConfigError,
    SafetyError,
    VerificationFailed,
)
from dbtools.migrations.data_loss import refuse_losses
from dbtools.side import Side
from dbtools.snapshot import restore


def refuse_drift(conn: Conn, settings: Settings, env: str) -> migrations.MigrationStatus:
    """The drift rule of `dbtools migrate` and sync-schema, for every pipeline (exit 1)."""
    st = migrations.status_of(conn, settings.migrations_dir, env)
    if st.drift:
        raise migrations.drift_error(st, f"{env} database")
    return st


def assert_schemas_match(prod: Conn, dev: Conn | None, settings: Settings) -> None:
    if dev is None:
        raise SafetyError("sync-data needs dev to compare schemas with")
    dev_objects, dev_applied = migrations.schema_state(dev, settings.schemas)
    prod_objects, prod_applied = migrations.schema_state(prod, settings.schemas)
    problems: list[str] = []
    if dev_applied != prod_applied:
        missing = [m for m in dev_applied if m not in prod_applied]
        extra = [m for m in prod_applied if m not in dev_applied]
        if missing:
            problems.append(f"migrations applied on dev but not prod: {', '.join(missing)}")
        if extra:
            problems.append(f"migrations applied on prod but not dev: {', '.join(extra)}")
    diff = catalog.diff_objects(dev_objects, prod_objects)
    if not diff.empty:
        lines = diff.lines()
        more = f" (and {len(lines) - 3} more)" if len(lines) > 3 else ""
        problems.append("schema differs: " + "; ".join(lines[:3]) + more)
    if problems:
        raise SafetyError(
            "refusing to copy data: dev and prod schemas do not match; " + "; ".join(problems),
            hint="run `dbtools sync-schema` (or `dbtools full-sync`), then `dbtools diff`",
        )


def assert_names_match(settings: Settings, *conns: Conn | None) -> None:
    """Every excluded and preserved table names a table on at least one side."""
    keys = verify_mod.configured_keys(settings)
    per_side = [catalog.unmatched_table_names(c, keys) for c in conns if c is not None]
    problems = verify_mod.name_problems(settings, per_side)
    if problems:
        raise ConfigError(
            f"{problems[0]}; nothing was changed",
            hint="table names are case-sensitive; write them as `schema.table`",
        )


def refuse_unloadable(prod: Conn, settings: Settings) -> None:
    """What makes every load into prod fail or leave it wrong, refused by the guard before
    any lock (and again by the load under its own): restore.refuse_outside_references."""
    restore.refuse_outside_references(prod, settings.schemas, settings.excluded_tables)


def sync_data_refusals(prod: Conn, dev: Conn | None, settings: Settings) -> None:
    """Everything that stops sync-data before it writes; also what its dry run reports."""
    assert_names_match(settings, prod, dev)
    refuse_drift(prod, settings, "prod")
    if dev is not None:
        refuse_drift(dev, settings, "dev")
    assert_schemas_match(prod, dev, settings)


def full_sync_refusals(prod: Conn, dev: Conn | None, settings: Settings) -> list[Migration]:
    """Everything that stops full-sync before it writes (and its dry run reports); the
    migrations it will apply on prod, each runnable inside the one transaction."""
    if dev is None:
        raise SafetyError("full-sync needs dev")
    assert_names_match(settings, prod, dev)
    prod_st = refuse_drift(prod, settings, "prod")
    dev_st = refuse_drift(dev, settings, "dev")
    if prod_st.unknown:
        raise SafetyError(
            "refusing to sync the schema: prod has applied migrations with no file here: "
            f"{', '.join(prod_st.unknown)}",
            hint="bring those migration files into migrations/ (or find out who applied them)",
        )
    ahead = [m for m in prod_st.applied if m not in set(dev_st.applied)]
    if ahead:
        raise SafetyError(
            f"refusing to sync the schema: prod has migrations dev has not: {', '.join(ahead)}",
            hint="apply them to dev first: dbtools migrate apply --target dev",
        )
    ids = schema_sync.ids_to_apply(dev_st, prod_st)
    plan_ = migrate_txn.plan(settings.migrations_dir, ids, "apply")
    refuse_losses(prod, plan_, "prod")
    if not plan_:
        assert_schemas_match(prod, dev, settings)
    return plan_


def verify_step(settings: Settings, sides: dict[str, Side] | None = None) -> None:
    """full-sync's first step, in its real run and its dry run: `dbtools verify`'s problems.

    Foreign keys and defaults tying the synced tables to what no snapshot loads are left to
    the guard, which refuses them before any lock as it does for sync-data, restore and
    rollback (exit 3, prod's only: full-sync loads nothing into dev)."""
    report = verify_mod.verify(settings, outside=False, sides=sides)
    if not report.ok:
        code = verify_mod.exit_code(report)
        err_cls = {3: SafetyError, 2: ConfigError}.get(code, VerificationFailed)
        raise err_cls(f"verify failed: {report.problems[0]}")
