"""A saved plan: written into the archive, read back by `dbtools apply`, checked for staleness.

The file is the change set's JSON with its `plan_id`, the sha256 of that content: a plan
edited after it was saved no longer matches its id and is refused. Applying a plan loads the
dev snapshot the plan was computed from (never dev as it is now), and only while prod still
holds exactly what the plan compared it with, table by table (content hashes).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dbtools.changes.model import NEW_TABLE, PRESERVED, UNCHANGED, ChangeSet
from dbtools.config import Settings
from dbtools.errors import ConfigError, SafetyError
from dbtools.snapshot import encryption, store
from dbtools.snapshot import format as fmt

PLANS_DIR = "plans"  # under the snapshot archive: saved plans, private like backups


def _digest(body: dict[str, Any]) -> str:
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def plan_id(changes: ChangeSet) -> str:
    """A stable id of the change set's content: what a reviewer approved."""
    return _digest(json.loads(json.dumps(changes.jsonable(), default=str)))


def save(settings: Settings, changes: ChangeSet) -> Path:
    """Write the change set into the archive (0600 in a 0700 directory); return its path."""
    archive = settings.snapshot_dir
    if store.remote_for(archive) is not None:
        # The archive is in object storage and its local stand-in is gone when the command
        # ends; `apply` reads a plan by path, so plans stay in the project's snapshots/plans/.
        archive = settings.root / "snapshots"
    directory = archive / PLANS_DIR
    fmt.make_private_dir(directory)
    ident = plan_id(changes)
    path = directory / f"{fmt.stamp_of(fmt.utc_now())}-{ident[:12]}.json"
    data = {"plan_id": ident, **changes.jsonable()}
    text = json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"
    # It names rows by their keys: encrypted like the snapshots when a key is configured.
    stored = encryption.protect(text, encryption.for_writing())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(stored)
    return path


@dataclass
class PlannedTable:
    """One table of a saved plan, as apply needs it (validated on read)."""

    table: str
    mode: str
    dev_content_hash: str
    prod_content_hash: str
    inserted: int
    updated: int
    deleted: int


@dataclass
class SavedPlan:
    path: Path
    plan_id: str
    dev_snapshot: Path
    dev_manifest_sha256: str
    # The dev snapshot as the plan names it: an s3:// URL for an archive in object storage
    # (dev_snapshot is then no path to read; apply resolves the URL).
    dev_ref: str
    tables: list[PlannedTable]
    tables_only_in_prod: list[str]
    migrations_to_apply: list[str]
    # sequence -> prod's value when the plan was computed, for those the plan moves
    sequences_prod: dict[str, Any]

    def counts(self) -> dict[str, dict[str, int]]:
        """table -> inserted/updated/deleted, as the plan computed them."""
        return {
            t.table: {"inserted": t.inserted, "updated": t.updated, "deleted": t.deleted}
            for t in self.tables
        }

    @property
    def preserved(self) -> set[str]:
        return {t.table for t in self.tables if t.mode == PRESERVED}


MAX_PLAN_BYTES = 64 << 20  # a plan is a few KB per table: anything larger is not one


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("not a string")
    return value


def _count(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise TypeError("not a count")
    return value


def _table(item: Any) -> PlannedTable:
    if not isinstance(item, dict):
        raise TypeError("not a table")
    return PlannedTable(
        table=_text(item["table"]),
        mode=_text(item["mode"]),
        dev_content_hash=_text(item.get("dev_content_hash", "")),
        prod_content_hash=_text(item.get("prod_content_hash", "")),
        inserted=_count(item.get("inserted", 0)),
        updated=_count(item.get("updated", 0)),
        deleted=_count(item.get("deleted", 0)),
    )


def _load(path: Path) -> Any:
    if not path.is_file():  # a directory, a FIFO or a device is no plan (and may never end)
        raise ConfigError(f"cannot read the plan {path}: not a regular file")
    try:
        if path.stat().st_size > MAX_PLAN_BYTES:
            raise ConfigError(f"cannot read the plan {path}: larger than any plan dbtools writes")
        return json.loads(encryption.unprotect(path.read_bytes(), f"the plan {path}"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not a JSON plan"
        raise ConfigError(f"cannot read the plan {path}: {why}") from None


def read(path: Path) -> SavedPlan:
    """The saved plan at `path`; ConfigError (exit 2) if it is not one, SafetyError (exit 3)
    if its content no longer matches its id.

    The id is a content hash, not a signature: it catches a plan changed by accident or by a
    careless edit, not someone who can write the archive and recompute it. apply therefore
    also checks the plan against its dev snapshot and prod (`mismatches`, `stale_reasons`).
    """
    path = Path(path)
    data = _load(path)
    try:
        if not isinstance(data, dict):
            raise TypeError("not an object")
        ident = _text(data.pop("plan_id"))
        dev = data["dev"]
        seqs = data.get("sequences", {})
        if not isinstance(dev, dict) or not isinstance(seqs, dict):
            raise TypeError("not an object")
        tables = data["tables"]
        if not isinstance(tables, list):
            raise TypeError("not a list")
        saved = SavedPlan(
            path=path,
            plan_id=ident,
            dev_snapshot=Path(_text(dev["path"])),
            dev_manifest_sha256=_text(dev["manifest_sha256"]),
            dev_ref=_text(dev["path"]),
            tables=[_table(t) for t in tables],
            tables_only_in_prod=[_text(k) for k in data.get("tables_only_in_prod", [])],
            migrations_to_apply=[_text(m) for m in data.get("migrations_to_apply", [])],
            sequences_prod={
                _text(k): v["prod"] if isinstance(v, dict) else None for k, v in seqs.items()
            },
        )
    except (AttributeError, KeyError, TypeError, ValueError, RecursionError):
        raise ConfigError(f"cannot read the plan {path}: not a plan saved by dbtools") from None
    if _digest(data) != ident:
        raise SafetyError(
            f"refusing to apply {path}: its content does not match its plan id (edited after "
            "it was saved?); nothing was changed",
            hint="compute it again: dbtools plan --save",
        )
    return saved


def mismatches(plan: SavedPlan, dev: fmt.Manifest) -> list[str]:
    """How the plan disagrees with the dev snapshot it pins ([] when it describes it): every
    table the load replaces must be in the plan, with the content hash the snapshot holds."""
    out: list[str] = []
    planned = {t.table: t for t in plan.tables}
    for key, entry in dev.tables.items():
        t = planned.get(key)
        if t is None:
            out.append(f"{key} is in the snapshot but not in the plan")
        elif t.mode != PRESERVED and t.dev_content_hash != entry.content_hash:
            out.append(f"{key}: the plan's content hash is not the snapshot's")
        elif t.mode == UNCHANGED and t.prod_content_hash != entry.content_hash:
            out.append(f"{key}: marked unchanged but its two content hashes differ")
    out += [
        f"{key} is in the plan but not in the snapshot"
        for key in planned.keys() - dev.tables.keys()
    ]
    return out


def stale_reasons(plan: SavedPlan, prod_now: fmt.Manifest, dev: fmt.Manifest) -> list[str]:
    """How prod (a snapshot of it taken under the sync's locks) differs from what the plan
    compared it with; [] when the plan still describes exactly what applying it does."""
    reasons: list[str] = []
    for t in plan.tables:
        if t.mode == PRESERVED:
            continue  # prod keeps these rows whatever they are now
        now = prod_now.tables.get(t.table)
        if t.mode == NEW_TABLE:
            if now is not None:
                reasons.append(f"{t.table} now exists in prod")
            continue
        if now is None:
            reasons.append(f"{t.table} is no longer in prod")
        elif now.content_hash != t.prod_content_hash:
            reasons.append(f"{t.table} changed in prod")
    for key in sorted(set(prod_now.tables) - {t.table for t in plan.tables}):
        if key not in plan.tables_only_in_prod:
            reasons.append(f"{key} appeared in prod")
    # Sequences: one the plan moves must still hold the value the plan saw; any other was
    # equal on both sides then, so it must still hold dev's value (else the load's setval
    # would hand out numbers prod has already used).
    preserved = plan.preserved
    dev_values = dev.sequence_values(preserved)
    prod_values = prod_now.sequence_values(preserved)
    for name, value in sorted(prod_values.items()):
        expected = plan.sequences_prod.get(name, dev_values.get(name))
        if name in dev_values and value != expected:
            reasons.append(f"sequence {name} moved in prod")
    return reasons
