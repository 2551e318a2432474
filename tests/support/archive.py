"""Fabricated archive entries: a complete, verifiable snapshot with no tables taken a given
number of days before NOW, and a manifest rewritten as an attacker would (checksum kept
consistent)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from dbtools.snapshot import format as fmt

NOW = datetime(2025, 6, 30, 12, 0, 0, tzinfo=timezone.utc)

Data = dict[str, Any]


def fake_snapshot(
    snapshot_dir: Path,
    env: str,
    days_ago: float,
    *,
    corrupt: bool = False,
    source: dict[str, object] | None = None,
    reason: str = "manual",
) -> Path:
    """A complete, verifiable snapshot with no tables, taken `days_ago` before NOW."""
    created = NOW - timedelta(days=days_ago)
    temp = fmt.new_temp_dir(snapshot_dir / env)
    (temp / fmt.SCHEMA_SQL).write_text("-- empty\n")
    manifest = fmt.Manifest(
        created_at=created.isoformat().replace("+00:00", "Z"),
        env=env,
        database=f"db-{env}",
        server_version="15",
        tool_version="test",
        schemas=["public"],
        migrations=["0001_initial"],
        schema_fingerprint="sha256:x",
        schema_objects={},
        tables={},
        schema_sql_sha256=fmt.sha256_file(temp / fmt.SCHEMA_SQL),
        source=source,
        reason=reason,
    )
    fmt.write_manifest(temp, manifest)
    path = fmt.publish(temp, snapshot_dir / env, created)
    if corrupt:
        (path / fmt.SCHEMA_SQL).write_text("-- damaged\n")
    return path


def rewrite_manifest(path: Path, edit: Callable[[Data], None]) -> None:
    """Apply `edit` to the manifest and recompute its self-checksum, as an attacker would."""
    m = path / fmt.MANIFEST
    data = json.loads(m.read_text())
    data.pop("manifest_sha256")
    edit(data)
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    data["manifest_sha256"] = hashlib.sha256(canonical.encode()).hexdigest()
    m.write_text(json.dumps(data, indent=2))
