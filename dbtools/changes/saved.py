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

from dbtools.changes.model import NEW_TABLE, PRESERVED, ChangeSet
from dbtools.config import Settings
from dbtools.errors import ConfigError, SafetyError
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
    directory = settings.snapshot_dir / PLANS_DIR
    fmt.make_private_dir(directory)
    ident = plan_id(changes)
    path = directory / f"{fmt.stamp_of(fmt.utc_now())}-{ident[:12]}.json"
    data = {"plan_id": ident, **changes.jsonable()}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(data, out, indent=2, sort_keys=True, default=str)
        out.write("\n")
    return path


@dataclass
class SavedPlan:
    path: Path
    plan_id: str
    dev_snapshot: Path
    dev_manifest_sha256: str
    tables: list[dict[str, Any]]
    tables_only_in_prod: list[str]

    def counts(self) -> dict[str, dict[str, int]]:
        """table -> inserted/updated/deleted, as the plan computed them."""
        return {
            str(t["table"]): {k: int(t.get(k, 0)) for k in ("inserted", "updated", "deleted")}
            for t in self.tables
        }


def read(path: Path) -> SavedPlan:
    """The saved plan at `path`; ConfigError (exit 2) if unreadable, SafetyError (exit 3) if
    its content no longer matches its id."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not a JSON plan"
        raise ConfigError(f"cannot read the plan {path}: {why}") from None
    try:
        ident = str(data.pop("plan_id"))
        dev = data["dev"]
        saved = SavedPlan(
            path=path,
            plan_id=ident,
            dev_snapshot=Path(str(dev["path"])),
            dev_manifest_sha256=str(dev["manifest_sha256"]),
            tables=list(data["tables"]),
            tables_only_in_prod=[str(k) for k in data.get("tables_only_in_prod", [])],
        )
    except (AttributeError, KeyError, TypeError, ValueError):
        raise ConfigError(f"cannot read the plan {path}: not a plan saved by dbtools") from None
    if _digest(data) != ident:
        raise SafetyError(
            f"refusing to apply {path}: its content does not match its plan id (edited after "
            "it was saved?); nothing was changed",
            hint="compute it again: dbtools plan --save",
        )
    return saved


def stale_reasons(plan: SavedPlan, prod_now: fmt.Manifest) -> list[str]:
    """How prod (a snapshot of it taken under the sync's locks) differs from what the plan
    compared it with; [] when the plan still describes exactly what applying it does."""
    reasons: list[str] = []
    for t in plan.tables:
        key, mode = str(t["table"]), t.get("mode")
        if mode == PRESERVED:
            continue  # prod keeps these rows whatever they are now
        now = prod_now.tables.get(key)
        if mode == NEW_TABLE:
            if now is not None:
                reasons.append(f"{key} now exists in prod")
            continue
        if now is None:
            reasons.append(f"{key} is no longer in prod")
        elif now.content_hash != t.get("prod_content_hash"):
            reasons.append(f"{key} changed in prod")
    for key in sorted(set(prod_now.tables) - {str(t["table"]) for t in plan.tables}):
        if key not in plan.tables_only_in_prod:
            reasons.append(f"{key} appeared in prod")
    return reasons
