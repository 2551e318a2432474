"""Retention: which snapshots of the archive `prune` deletes, and which it keeps and why.

Retention (setup.cfg [dbtools]): snapshots older than retention_days are deleted, except,
whatever their age: the newest keep_min of each environment; for each source database (the
manifest's `source`), its newest verified snapshot and, in prod, the backup rollback would
restore (the newest verified one not taken by a rollback); and any path the caller protects.
Build directories of runs that died (`.tmp-*` whose process is gone) and published directories
without a manifest are removed too. A directory is deleted by renaming it to a `.tmp-` name
first, so a killed prune never leaves a half-deleted directory that looks like a snapshot.

In an archive in object storage (snapshot/store.py) the same rules choose; a snapshot is
deleted manifest first (it is gone for every reader at once), then every object of it that
no kept snapshot refers to (a reused table's files, TableEntry.stored_in); prefixes without
a manifest go once their newest object is older than store.LEFTOVER_AGE (no pid to check).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from dbtools import faults
from dbtools.config import ENVS, Settings
from dbtools.errors import SnapshotError
from dbtools.snapshot import format as fmt
from dbtools.snapshot import store
from dbtools.snapshot.backups import describe_source
from dbtools.snapshot.listing import SnapshotInfo, list_snapshots, verify_snapshot


@dataclass
class PruneResult:
    dry_run: bool
    deleted: list[dict[str, str]]
    kept: list[dict[str, str]]  # every kept snapshot with why ("; "-joined when several)

    def as_dict(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "deleted": self.deleted, "kept": self.kept}


def _leftovers(env_dir: Path) -> list[tuple[Path, str]]:
    out: list[tuple[Path, str]] = []
    if not env_dir.is_dir():
        return out
    for path in sorted(env_dir.iterdir()):
        if path.is_symlink() or not path.is_dir():
            continue
        if path.name.startswith(fmt.TMP_PREFIX):
            pid = fmt.temp_dir_pid(path.name)
            if pid is None or not fmt.pid_alive(pid):
                out.append((path, "leftover of a crashed run"))
        elif not path.name.startswith(".") and not (path / fmt.MANIFEST).exists():
            out.append((path, "incomplete: no manifest.json"))
    return out


def _same_path(a: Path, b: Path) -> bool:
    try:
        return os.path.realpath(a) == os.path.realpath(b)
    except OSError:
        return False


def _source_key(info: SnapshotInfo) -> tuple[Any, ...]:
    if info.source is None:  # older manifests: one group per database name
        return ("unknown", info.database)
    src = info.source
    if src.get("system_identifier") is None:
        return (None, src["database_oid"], src["database"])
    return (src["system_identifier"], src["database_oid"])


def _protected(settings: Settings, env: str, infos: list[SnapshotInfo]) -> dict[Path, list[str]]:
    """Per source database: its newest verified snapshot and, in prod, rollback's target."""
    out: dict[Path, list[str]] = {}
    newest: set[tuple[Any, ...]] = set()
    target: set[tuple[Any, ...]] = set()
    for info in infos:
        if info.problems:
            continue
        key = _source_key(info)
        wants_newest = key not in newest
        wants_target = (
            env == "prod"
            and info.source is not None  # rollback never restores an unknown source
            and key not in target
            and info.reason != fmt.ROLLBACK_REASON
        )
        if not (wants_newest or wants_target) or not verify_snapshot(info.path).ok:
            continue
        who = describe_source(info)
        if wants_newest:
            newest.add(key)
            out.setdefault(info.path, []).append(f"newest verified snapshot of {who}")
        if wants_target:
            target.add(key)
            out.setdefault(info.path, []).append(f"rollback's target for {who}")
    return out


def prune(
    settings: Settings,
    *,
    dry_run: bool,
    now: datetime | None = None,
    protect: tuple[Path, ...] | list[Path] = (),
) -> PruneResult:
    """Apply the retention rules (module doc); dry_run only reports what would go.

    `protect`: paths the caller knows must stay (rollback's target from prod's own history);
    they are kept whatever their age. Every kept snapshot is reported with why."""
    now = now or datetime.now(timezone.utc)
    cutoff = now - timedelta(days=settings.retention_days)
    deleted: list[dict[str, str]] = []
    kept: list[dict[str, str]] = []
    doomed: list[Path] = []
    remote = store.remote_for(settings.snapshot_dir)
    remote_plan: list[tuple[str, list[str], list[Path]]] = []  # env, stamps, kept snapshots
    for env in ENVS:
        leftovers = [] if remote else _leftovers(settings.snapshot_dir / env)
        skip = {p for p, _ in leftovers}
        for path, reason in leftovers:
            doomed.append(path)
            deleted.append({"path": str(path), "reason": reason})
        complete = [i for i in list_snapshots(settings, env) if i.path not in skip]
        guarded = _protected(settings, env, complete)
        newest = 0
        for info in complete:
            why: list[str] = []
            # A snapshot whose manifest is unusable never takes one of the keep_min places (a
            # crafted one dated in the future would otherwise push out the real newest).
            if not info.problems and newest < settings.keep_min:
                newest += 1
                why.append(f"among the newest {settings.keep_min}")
            why += guarded.get(info.path, [])
            if any(_same_path(info.path, Path(p)) for p in protect):
                why.append("rollback's target, as prod's history records it")
            if not why:
                if info.created_at is None:
                    why.append("age unknown (no readable created_at or stamp)")
                elif info.created_at >= cutoff:
                    why.append(f"within {settings.retention_days} days")
            if why:
                if info.problems:
                    why.append(f"does not verify: {info.problems[0]}")
                kept.append({"path": store.shown(info.path), "reason": "; ".join(why)})
                continue
            reason = f"older than {settings.retention_days} days"
            if info.problems:
                reason += f"; does not verify: {info.problems[0]}"
            doomed.append(info.path)
            deleted.append({"path": store.shown(info.path), "reason": reason})
        if remote is not None:
            staying = [i.path for i in complete if i.path not in doomed]
            crashed = remote.leftovers(env, staying, now)
            deleted += [
                {
                    "path": f"{remote.location.url}/{env}/{stamp}",
                    "reason": "incomplete upload: no manifest.json, untouched for over "
                    f"{int(store.LEFTOVER_AGE.total_seconds() // 60)} minutes",
                }
                for stamp in crashed
            ]
            gone = [p.name for p in doomed if p.parent == settings.snapshot_dir / env]
            remote_plan.append((env, gone + crashed, staying))
    if not dry_run and remote is not None:
        for env, stamps, staying in remote_plan:
            faults.pause("prune.delete")
            remote.remove(env, stamps, staying)
        doomed = []
    if not dry_run:
        for path in doomed:
            faults.pause("prune.delete")
            try:
                if path.name.startswith(fmt.TMP_PREFIX):
                    fmt.remove_tree(path)  # already a hidden leftover name
                else:
                    fmt.discard(path)
            except OSError as exc:
                raise SnapshotError(
                    f"cannot delete {path}: {exc.strerror or exc}; nothing after it was deleted"
                ) from None
    return PruneResult(dry_run=dry_run, deleted=deleted, kept=kept)
