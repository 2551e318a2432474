"""What the pipelines return: dataclasses whose as_dict() is what --json prints."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dbtools import (
    checks,
)
from dbtools.snapshot import format as fmt
from dbtools.snapshot import store
from dbtools.snapshot.create import SnapshotResult


@dataclass
class BackupResult:
    path: Path
    created_at: str
    database: str
    tables: int
    rows: int
    bytes: int
    migrations: list[str]
    verified: bool
    # The prod database it was taken from (system identifier, database oid, name), as checked
    # before it was taken; and its manifest's own checksum, which prod's history records.
    source: dict[str, Any] = field(default_factory=dict)
    manifest_sha256: str | None = None
    xmin: int | None = None  # of the snapshot it was read in (SnapshotResult.xmin)

    @classmethod
    def of(cls, snap: SnapshotResult, source: dict[str, Any] | None = None) -> BackupResult:
        return cls(
            path=snap.path,
            created_at=snap.manifest.created_at,
            database=snap.manifest.database,
            tables=snap.tables,
            rows=snap.rows,
            bytes=snap.bytes,
            migrations=list(snap.manifest.migrations),
            verified=snap.verified,
            source=dict(source or {}),
            manifest_sha256=fmt.manifest_sha256(snap.path),
            xmin=snap.xmin,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": store.shown(self.path),
            "created_at": self.created_at,
            "database": self.database,
            "tables": self.tables,
            "rows": self.rows,
            "bytes": self.bytes,
            "migrations": self.migrations,
            "verified": self.verified,
            "source": self.source,
            "manifest_sha256": self.manifest_sha256,
        }


@dataclass
class TableChange:
    table: str
    rows_before: int | None
    rows_after: int | None
    preserved: bool = False
    # Row by row, when a plan computed them (`dbtools apply`); None when only counts are known.
    inserted: int | None = None
    updated: int | None = None
    deleted: int | None = None

    @property
    def changed(self) -> bool:
        if self.inserted is not None:
            return bool(self.inserted or self.updated or self.deleted)
        return self.rows_before != self.rows_after

    def as_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "rows_before": self.rows_before,
            "rows_after": self.rows_after,
            "preserved": self.preserved,
            "inserted": self.inserted,
            "updated": self.updated,
            "deleted": self.deleted,
        }


def table_changes(load: Any) -> list[TableChange]:
    """Per table, what the load did (row by row where the load's info carries the counts)."""
    out = []
    for key, info in dict(load.tables).items():
        out.append(
            TableChange(
                table=key,
                rows_before=info.get("rows_before"),
                rows_after=info.get("rows_after"),
                preserved=bool(info.get("preserved")),
                inserted=info.get("inserted"),
                updated=info.get("updated"),
                deleted=info.get("deleted"),
            )
        )
    return out


@dataclass
class SyncResult:
    backup: BackupResult
    dev_snapshot: Path
    tables: list[TableChange]
    checks: checks.CheckReport | None
    # How prod was held: {"mode": "short" | "full", "seconds": writes held, "reason": why full}
    lock: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            # "path" is the backup: the snapshot this run wrote into prod's archive and the
            # one `dbtools rollback` restores.
            "path": store.shown(self.backup.path),
            "backup": self.backup.as_dict(),
            "dev_snapshot": store.shown(self.dev_snapshot),
            "tables": [t.as_dict() for t in self.tables],
            "checks": self.checks.as_dict() if self.checks else None,
            "lock": self.lock,
        }


@dataclass
class Preview:
    """What a sync would do, computed without writing anything (not even a snapshot)."""

    dev_database: str
    prod_database: str
    pending: dict[str, list[str]]  # per database: migration files not applied there
    to_apply_on_prod: list[str]  # applied on dev, not on prod: what sync-schema would run
    prod_only_migrations: list[str]  # applied on prod, unknown to dev: sync-schema refuses
    schema_matches: bool  # fingerprint and applied migrations equal now
    tables: list[dict[str, Any]]  # table, dev_rows, prod_rows, action
    backup_path: Path
    problems: list[str] = field(default_factory=list)
    refusal: str = ""  # what would stop the real run ("" if nothing would)
    exit_code: int = 0  # the real run's exit code for that refusal: the dry run returns it

    def as_dict(self) -> dict[str, Any]:
        return {
            "dev_database": self.dev_database,
            "prod_database": self.prod_database,
            "pending": self.pending,
            "to_apply_on_prod": self.to_apply_on_prod,
            "prod_only_migrations": self.prod_only_migrations,
            "schema_matches": self.schema_matches,
            "tables": self.tables,
            "backup_path": store.shown(self.backup_path),
            "problems": self.problems,
            "refusal": self.refusal,
            "exit_code": self.exit_code,
        }


@dataclass
class Step:
    name: str
    status: str = "pending"  # pending | ok | failed | skipped
    detail: str = ""
    next_action: str = ""
    exit_code: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class FullSyncResult:
    steps: list[Step]
    dry_run: bool = False
    plan: Preview | None = None
    backup: BackupResult | None = None
    schema: dict[str, Any] | None = None
    data: SyncResult | None = None
    checks: checks.CheckReport | None = None

    @property
    def ok(self) -> bool:
        return all(s.status in ("ok", "skipped") for s in self.steps)

    @property
    def exit_code(self) -> int:
        if self.dry_run and self.plan is not None:
            return self.plan.exit_code  # a dry run exits as the real run would
        return next((s.exit_code for s in self.steps if s.status == "failed"), 0)

    @property
    def failed(self) -> Step | None:
        return next((s for s in self.steps if s.status == "failed"), None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "steps": [s.as_dict() for s in self.steps],
            "plan": self.plan.as_dict() if self.plan else None,
            "path": store.shown(self.backup.path) if self.backup else None,
            "backup": self.backup.as_dict() if self.backup else None,
            "schema": self.schema,
            "data": self.data.as_dict() if self.data else None,
            "checks": self.checks.as_dict() if self.checks else None,
        }


@dataclass
class ProdRestoreResult:
    """A snapshot loaded into prod (by rollback, or restore --target prod) and the verified
    backup of prod taken just before; a rollback also lists the migrations it undid."""

    restored: Path
    restored_created_at: str
    backup: BackupResult  # prod as it was just before the rollback
    migrations_rolled_back: list[str]
    tables: list[TableChange]
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": store.shown(self.restored),
            "restored": store.shown(self.restored),
            "restored_created_at": self.restored_created_at,
            "backup": self.backup.as_dict(),
            "migrations_rolled_back": self.migrations_rolled_back,
            "tables": [t.as_dict() for t in self.tables],
            "warnings": self.warnings,
        }
