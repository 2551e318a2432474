"""Which snapshots are backups of a database, and the one rollback would restore.

Backups are chosen by source, never by folder: a snapshot of another database that landed in
snapshots/prod/ (or one written before sources were recorded) is never a backup of prod.
Rollback restores, for the database it rolls back, the newest verified backup not taken by a
rollback itself (`rollback_target`); `newest_verified` looks at one folder, sources unseen.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dbtools.config import Settings
from dbtools.snapshot import format as fmt
from dbtools.snapshot.listing import SnapshotInfo, list_snapshots, verify_snapshot


@dataclass
class RollbackChoice:
    """Which backup rollback would restore for one database, and what it passed over.

    target: the newest verified backup of that database not taken by a rollback (or None).
    failed: newer snapshots that could be backups of it but do not verify (its own backups
            with damaged files, and snapshots whose manifest cannot be read), with why.
    skipped: snapshots that are not candidates, with why (another database's, unknown
             source, taken by a rollback).
    """

    target: Path | None
    failed: list[tuple[Path, list[str]]] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": str(self.target) if self.target else None,
            "failed": [{"path": str(p), "problems": pr} for p, pr in self.failed],
            "skipped": [{"path": str(p), "reason": r} for p, r in self.skipped],
        }


def newest_verified(
    settings: Settings, env: str, *, skip_reasons: tuple[str, ...] = ()
) -> tuple[Path | None, list[tuple[Path, list[str]]]]:
    """The newest snapshot of env that verifies, and the newer ones that failed, with why.

    Snapshots whose manifest gives one of skip_reasons are not candidates at all. Sources are
    not considered: rollback uses rollback_target, which is.
    """
    failed: list[tuple[Path, list[str]]] = []
    for info in list_snapshots(settings, env):
        if skip_reasons and info.reason in skip_reasons:
            continue
        result = verify_snapshot(info.path)
        if result.ok:
            return info.path, failed
        failed.append((info.path, result.problems))
    return None, failed


def describe_source(info: SnapshotInfo) -> str:
    source = info.source
    if source is None:
        return f"database {info.database} (source not recorded: an older snapshot)"
    system = source.get("system_identifier") or "?"
    return f"database {source['database']} (oid {source['database_oid']}, system {system})"


def backups_of(settings: Settings, env: str, identity: Any) -> list[SnapshotInfo]:
    """Snapshots of env taken of the database `identity` names (a db.Identity), newest first.

    Only manifests that record this source count (system identifier + database oid); they are
    not verified here (see rollback_target)."""
    return [
        info
        for info in list_snapshots(settings, env)
        if not info.problems and fmt.same_source(info.source, identity)
    ]


def rollback_target(
    settings: Settings,
    identity: Any,
    *,
    env: str = "prod",
    skip_reasons: tuple[str, ...] = (fmt.ROLLBACK_REASON,),
) -> RollbackChoice:
    """The backup rollback would restore into the database `identity` names (RollbackChoice).

    Only verified snapshots whose manifest records that database as their source are
    candidates; those taken by a rollback (skip_reasons) are passed over, as are other
    databases' and unknown-source snapshots, each reported in `skipped`. A snapshot that
    cannot be read is reported in `failed`, never chosen and never a reason to stop looking.
    """
    choice = RollbackChoice(target=None)
    for info in list_snapshots(settings, env):
        if info.problems:  # the manifest itself is unusable: its source cannot be known
            choice.failed.append((info.path, info.problems))
            continue
        if not fmt.same_source(info.source, identity):
            what = "another database's snapshot" if info.source else "not known to be a backup"
            choice.skipped.append((info.path, f"{what}: {describe_source(info)}"))
            continue
        if info.reason in skip_reasons:
            choice.skipped.append((info.path, f"taken {info.reason}: the state it replaced"))
            continue
        result = verify_snapshot(info.path)
        if result.ok:
            choice.target = info.path
            return choice
        choice.failed.append((info.path, result.problems))
    return choice
