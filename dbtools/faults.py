"""Named pause points for fault-injection tests: the one place they are declared and read.

A test sets DBTOOLS_TEST_PAUSE="<point>=<seconds>[,<point>=<seconds>...]" on a real CLI
process. When the process reaches a named point it prints one marker line on stderr
(`dbtools-test: paused at <point>`, flushed) and sleeps, so the test can send SIGINT,
SIGTERM or SIGKILL at exactly that moment and then inspect prod, the archive and the locks.

The variable is validated as a whole before any command runs (`validate()`, called by the
CLI group): an unknown point, a bad number or a malformed entry is a ConfigError (exit 2),
never a silent no-op, so a test cannot pass because it paused nowhere.

Every write path calls `pause(<point>)` at the places named in POINTS. Adding a point means
adding it here, with one line saying where it is.
"""

from __future__ import annotations

import math
import os
import sys
import time

from dbtools.errors import ConfigError

ENV = "DBTOOLS_TEST_PAUSE"
MARKER = "dbtools-test: paused at "

# point -> where it sits. Tests iterate over this mapping; keep it in write-path order.
POINTS: dict[str, str] = {
    "guard.locked": "a prod write holds the sync lock; nothing written, no backup yet",
    "snapshot.export": "a snapshot is exporting its tables (inside the first table's COPY)",
    "snapshot.publish": "a snapshot's files are written and verified, not yet renamed in place",
    "backup.done": "the verified backup exists; prod not written yet",
    "apply.staged": "sync-data/apply staged dev's changed rows; prod's tables not locked yet",
    "migrate.before": "before a migration's transaction on the target",
    "migrate.before_commit": "a migration ran inside its transaction, not committed yet",
    "load.locked": "the load transaction holds its table locks; nothing cleared yet",
    "load.table": "inside the load transaction, after a table was loaded",
    "load.before_commit": "the load and its checks passed; COMMIT not sent yet",
    "rollback.undone": "rollback undid migrations inside its transaction; data not loaded yet",
    "prune.delete": "prune is about to delete a snapshot directory",
}


def _parse(raw: str) -> dict[str, float]:
    plan: dict[str, float] = {}
    for entry in (e.strip() for e in raw.split(",")):
        if not entry:
            continue
        point, sep, seconds = entry.partition("=")
        point = point.strip()
        if not sep or point not in POINTS:
            raise ConfigError(
                f"{ENV}: {entry!r} is not <point>=<seconds> with a known point "
                f"({', '.join(POINTS)})"
            )
        try:
            value = float(seconds)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < 0:
            raise ConfigError(f"{ENV}: {entry!r}: seconds must be a finite number >= 0")
        plan[point] = value
    return plan


def validate() -> dict[str, float]:
    """The parsed plan; ConfigError (exit 2) on any malformed entry."""
    return _parse(os.environ.get(ENV, ""))


def pause(point: str) -> None:
    """Sleep here if a test asked for it; announce it first so the test knows it arrived."""
    if point not in POINTS:  # a typo in the code is a bug, not a silent no-op
        raise ValueError(f"unknown pause point {point!r}")
    raw = os.environ.get(ENV)
    if not raw:
        return
    seconds = _parse(raw).get(point)
    if seconds is None:
        return
    sys.stderr.write(f"{MARKER}{point}\n")
    sys.stderr.flush()
    time.sleep(seconds)
