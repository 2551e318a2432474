"""rollback (to the backup prod's history names), restore into prod, and the retention rule
that keeps rollback's target."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from yoyo.migrations import Migration

from dbtools import (
    db,
    faults,
    history,
    migrate_txn,
    migrations,
)
from dbtools.config import Settings
from dbtools.db import Conn, Progress, say
from dbtools.errors import (
    SafetyError,
)
from dbtools.snapshot import archive, restore, store
from dbtools.snapshot import format as fmt
from dbtools.sync.provenance import assert_backup_covers, assert_covered, source_problem
from dbtools.sync.refusals import refuse_drift
from dbtools.sync.results import ProdRestoreResult, table_changes
from dbtools.sync.session import guarded_prod_write


def _recorded_backup(settings: Settings, entry: history.Entry) -> Path:
    """Where a history row's backup is now: its recorded path, else its stamp in the archive
    (the project directory may have moved since)."""
    recorded = Path(entry.backup_path or "")
    if recorded.is_dir() or not entry.backup_stamp:
        return recorded
    remote = store.remote_for(settings.snapshot_dir)
    if remote is not None:  # an archive in object storage: its manifests, mirrored
        remote.refresh("prod")
    here = settings.snapshot_dir / "prod" / entry.backup_stamp
    return here if here.is_dir() else recorded


def rollback_target(settings: Settings) -> Path | None:
    """The backup `dbtools rollback` would restore now, from prod's own history: the one taken
    before the newest committed sync-data / full-sync / restore that no rollback undid yet.
    None when prod's history records no such write. (Prune must keep it.)"""
    conn = db.connect(db.target(settings, "prod"), settings=settings)
    try:
        cands = history.undo_candidates(conn)
    finally:
        conn.rollback()
        conn.close()
    return _recorded_backup(settings, cands[0]) if cands else None


def prune(settings: Settings, *, dry_run: bool) -> archive.PruneResult:
    """`snapshot prune`: the archive's retention, never deleting the backup prod's history
    names as rollback's target (archive.prune alone only knows the archive's own rules).

    With a prod URL configured, prod must answer: without its history, the target is not
    known and nothing is deleted (the error says why). Without one, the archive's rules apply.
    """
    protect: list[Path] = []
    if settings.urls.get("prod"):
        target = rollback_target(settings)
        if target is not None:
            protect.append(target)
    return archive.prune(settings, dry_run=dry_run, protect=protect)


@dataclass
class RollbackChoice:
    """What a rollback would do now: the history row it undoes, that row's backup (verified,
    of this prod), the backup's manifest and the migrations to undo first (newest first)."""

    entry: history.Entry
    path: Path
    manifest: fmt.Manifest
    undo: list[Migration]


def choose_rollback(prod: Conn, settings: Settings, ident: db.Identity) -> RollbackChoice:
    refuse_drift(prod, settings, "prod")
    cands = history.undo_candidates(prod)
    if not cands:
        raise SafetyError(
            "refusing to roll back: prod's history records no committed sync-data, full-sync "
            "or restore to undo (dbtools records each one in prod as it commits); nothing was "
            "changed",
            hint="to load a backup on purpose: `dbtools snapshot list --env prod`, then "
            "`dbtools restore prod/STAMP --target prod`",
        )
    entry = cands[0]
    path = _recorded_backup(settings, entry)
    what = f"the backup taken before the {entry.operation} committed at {entry.committed_at}"
    manifest, problems = fmt.verify_dir(path) if path.is_dir() else (None, ["it is missing"])
    if problems or manifest is None:
        older = next(
            (
                p
                for p in (_recorded_backup(settings, e) for e in cands[1:])
                if p.is_dir() and not fmt.verify_dir(p)[1]
            ),
            None,
        )
        named = (
            f"the newest backup that verifies is {older}: restore it explicitly with "
            f"`dbtools restore {older} --target prod`"
            if older
            else "no older backup in prod's history verifies either"
        )
        raise SafetyError(
            f"refusing to roll back: {what}, {path}, fails verification "
            f"({problems[0] if problems else 'does not verify'}); {named}; nothing was changed"
        )
    sha = fmt.manifest_sha256(path)
    if entry.backup_sha256 and sha != entry.backup_sha256:
        raise SafetyError(
            f"refusing to roll back: {path} is not the backup prod's history recorded "
            f"(manifest checksum {sha}, recorded {entry.backup_sha256}); nothing was changed"
        )
    src = manifest.source
    if src is not None and not fmt.same_source(src, ident):
        raise SafetyError(
            f"refusing to roll back to {path.name}: "
            f"{source_problem(path, manifest, prod, ident)}; nothing was changed"
        )
    assert_covered(settings, manifest, "roll back")
    _, applied = migrations.schema_state(prod, settings.schemas)
    gone = [m for m in manifest.migrations if m not in applied]
    if gone:
        raise SafetyError(
            f"refusing to roll back to {path.name}: it was taken with migrations prod no "
            f"longer has: {', '.join(gone)}",
            hint="apply them on prod first (`dbtools migrate apply --target prod`)",
        )
    newer = [m for m in applied if m not in manifest.migrations]
    undo = migrate_txn.plan(settings.migrations_dir, list(reversed(newer)), "rollback")
    return RollbackChoice(entry, path, manifest, undo)


def rollback(
    settings: Settings, *, progress: Progress = None, expect: int | None = None
) -> ProdRestoreResult:
    """The seed's Emergency Rollback: put prod back as it was before the last committed sync.

    The target comes from prod's own history (history module): the backup taken before the
    newest committed sync-data / full-sync / restore that no rollback undid yet; a refused,
    failed or killed run never committed a history row, so it never changes the target.
    Refuses, changing nothing and taking no backup, on drift, when that backup is missing or
    does not verify (naming the next one that does), when it is not of this prod, when it
    lists migrations prod no longer has, or when a migration to undo cannot be undone inside
    a transaction. Prod is backed up first; migrations applied since are undone, newest
    first, and the backup loaded, all in ONE transaction with the history row.

    `expect`: the history row the operator was shown and confirmed (undo_plan.rollback_plan);
    if prod's history names another by the time the lock is held, the run is refused.
    """
    chosen: list[RollbackChoice] = []

    def precheck(prod: Conn, _dev: Conn | None) -> None:
        ident = db.identity(prod)
        choice = choose_rollback(prod, settings, ident)
        if expect is not None and choice.entry.id != expect:
            raise SafetyError(
                f"refusing to roll back: prod's history changed since the question: the write "
                f"to undo is now #{choice.entry.id} ({choice.entry.operation} committed at "
                f"{choice.entry.committed_at}), not #{expect}; nothing was changed",
                hint="run `dbtools rollback --dry-run` to see what a rollback would restore now",
            )
        chosen.append(choice)

    with guarded_prod_write(
        settings,
        what="rollback",
        progress=progress,
        precheck=precheck,
        need_dev=False,
        transactional=True,
    ) as guard:
        choice = chosen[0]
        made = guard.ensure_backup()
        assert_backup_covers(guard.conn, made, choice.manifest, "roll back")
        undone: list[str] = []
        if choice.undo:
            say(progress, f"rollback: undoing migrations {', '.join(m.id for m in choice.undo)}")
            undone = migrate_txn.run(
                guard.conn, choice.undo, "rollback", f"prod database {guard.prod_id.database}"
            )
        faults.pause("rollback.undone")
        say(progress, f"rollback: restoring {choice.path}")
        load = restore.load_snapshot(
            guard.conn,
            choice.path,
            settings=settings,
            preserved=(),
            progress=progress,
            in_transaction=True,
        )
        guard.commit(
            "rollback",
            snapshot_loaded=choice.path,
            undoes=choice.entry.id,
            migrations_done=undone,
            tables=load.tables,
        )
        return ProdRestoreResult(
            restored=choice.path,
            restored_created_at=choice.manifest.created_at,
            backup=made,
            migrations_rolled_back=undone,
            tables=table_changes(load),
        )


def restore_prod(
    settings: Settings,
    path: Path,
    *,
    progress: Progress = None,
    allow_other_source: bool = False,
) -> ProdRestoreResult:
    """`dbtools restore PATH --target prod` with the sync lock and a backup of prod first.

    The snapshot is verified before anything else. It must be a snapshot of THIS prod (its
    manifest's source, or prod's history listing it as a backup of prod); another database's
    snapshot, or one of unknown source, is refused unless allow_other_source (and then the
    result carries a warning saying so). It must not cover schemas prod's backup does not, and
    its schema must match prod's (the loader refuses otherwise). The load and the history row
    commit in one transaction.
    """
    snapshot = archive.resolve_path(settings, str(path), "prod")
    manifest = restore.verified_manifest(snapshot)
    warnings: list[str] = []

    def precheck(prod: Conn, _dev: Conn | None) -> None:
        problem = source_problem(snapshot, manifest, prod, db.identity(prod))
        if problem and not allow_other_source:
            raise SafetyError(
                f"refusing to restore {snapshot.name} into prod: {problem}; nothing was changed",
                hint="to load it into prod on purpose, pass --allow-other-source (prod is "
                "backed up first)",
            )
        if problem:
            warnings.append(
                f"{snapshot.name}: {problem}; loading it into prod anyway (--allow-other-source)"
            )
        assert_covered(settings, manifest, "restore into prod")

    with guarded_prod_write(
        settings,
        what="restore",
        progress=progress,
        precheck=precheck,
        need_dev=False,
        transactional=True,
    ) as guard:
        made = guard.ensure_backup()
        assert_backup_covers(guard.conn, made, manifest, "restore into prod")
        load = restore.load_snapshot(
            guard.conn,
            snapshot,
            settings=settings,
            preserved=(),
            progress=progress,
            in_transaction=True,
        )
        guard.commit("restore", snapshot_loaded=snapshot, tables=load.tables)
        return ProdRestoreResult(
            restored=snapshot,
            restored_created_at=manifest.created_at,
            backup=made,
            migrations_rolled_back=[],
            tables=table_changes(load),
            warnings=warnings,
        )
