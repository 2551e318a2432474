"""The schema writers routed through the guard: sync-schema and `migrate --target prod`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dbtools import (
    migrations,
    schema_sync,
)
from dbtools.config import Settings
from dbtools.db import Progress
from dbtools.errors import (
    ConfigError,
)
from dbtools.sync.results import BackupResult
from dbtools.sync.session import guarded_prod_write


@dataclass
class SchemaSyncRun:
    """sync-schema as the pipeline runs it: what schema_sync did and the backup taken first."""

    result: schema_sync.SchemaSyncResult
    backup: BackupResult | None

    def as_dict(self) -> dict[str, Any]:
        return {**self.result.as_dict(), "backup": self.backup.as_dict() if self.backup else None}


def sync_schema(
    settings: Settings, *, dry_run: bool = False, progress: Progress = None
) -> SchemaSyncRun:
    """`dbtools sync-schema` under the sync lock, with a verified backup before any migration.

    The backup is taken only when a migration will actually run (schema_sync's before_write).
    """
    if dry_run:
        return SchemaSyncRun(schema_sync.sync_schema(settings, dry_run=True), None)
    with guarded_prod_write(settings, what="sync-schema", progress=progress) as guard:
        result = schema_sync.sync_schema(settings)  # backs up through the guard's permit
        return SchemaSyncRun(result, guard.backup)


def migrate_prod(
    settings: Settings,
    action: str,
    *,
    upto: str | None = None,
    ids: list[str] | None = None,
    count: int | None = None,
    progress: Progress = None,
) -> migrations.ApplyResult:
    """`dbtools migrate apply|rollback|mark --target prod`: under the sync lock, and only
    after a verified backup of prod, like every other prod write. The backup is taken only
    when a migration will actually run (mark only writes bookkeeping, but it is a prod write
    all the same, so it is backed up too).
    """
    with guarded_prod_write(
        settings, what=f"migrate {action}", progress=progress, need_dev=False
    ) as guard:
        if action == "apply":
            return migrations.apply(settings, "prod", upto=upto)
        if action == "rollback":
            return migrations.rollback(settings, "prod", ids=ids, count=count)
        if action == "mark":
            guard.ensure_backup()
            return migrations.mark(settings, "prod", upto=upto)
        raise ConfigError(f"unknown migrate action {action!r}")
