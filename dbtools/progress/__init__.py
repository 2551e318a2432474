"""Progress you can see: a live display on a terminal, plain lines in a CI log.

The CLI makes one `Reporter` per command (cli/output.py) and passes it down as the `progress`
callback: called with a line of text, it is a `db.Progress` like any other. Library code marks
its long work at table granularity with `phase(...)` and `table_task(...)`; given a plain
callback (or None) those hooks only say the line they always said, so the library works as
before for every other caller.

Rows done are read from the server, not counted in the COPY loops (progress/poll.py); the
expected total is the caller's (a load: the manifest's rows) or, for an export,
pg_class.reltuples shown as "about".

Both outputs go to stderr (stdout stays the command's result, one JSON object with --json):

* "rich" (progress/terminal.py): on a terminal, one live bar per phase and per table being
  worked on (rows and bytes done, rate, time left, time spent); a finished table leaves one
  line, e.g. "✓ loaded public.User: 500,027 rows in 3.1 s", and so does each step the library
  says ("locked the tables").
* "plain": without a terminal, one line per table when it ends, and a line at
  least every `interval` seconds (DBTOOLS_PROGRESS_INTERVAL, 10) while work goes on, e.g.
  "loading public.User: 310,000 / 500,027 rows, 62%, 14 s (38.0 MB, 22,143 rows/s, about 9 s
  left)", or "still working, 40 s so far" between tables, so a long run in a CI log never
  looks hung. The library's step lines stay for a person at a terminal, as before: a log gets
  what shows it moving, not a narration.

`choose()` picks the mode: --quiet or DBTOOLS_PROGRESS=off is "off"; DBTOOLS_PROGRESS=rich or
=plain forces one; otherwise ("auto") a terminal gets rich, any other stderr of the process
plain lines, and a CLI run inside another Python program that captured sys.stderr (click's
CliRunner, a test) neither.

Progress never fails a command: the reporter swallows its own errors (a closed or broken
stderr included: the display goes quiet, the result and the exit code stay), prints every
line through config.redact (and never a connection error), stops its thread and closes its
connections before the command's last line, and after a signal prints nothing more (the
interrupted line is the command's last word). The ticker thread blocks SIGINT/SIGTERM, which
therefore always reach a thread that acts on them.

A table's name is anyone's choice: whatever in a line a terminal would act on (an escape
sequence, CR, a newline, a bidirectional override) is shown as its escape ("\\x1b[31m"),
and rich markup is never interpreted. Only a table still running after the poll period is
asked about, so a run of small tables opens no extra connection at all.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from collections.abc import Iterator, Mapping
from typing import Any, TextIO

from dbtools.db import Progress
from dbtools.progress.reporter import (
    DEFAULT_INTERVAL,
    THREAD_NAME,
    TICK_SECONDS,
    PhaseTask,
    Reporter,
    TableTask,
)

ENV_MODE = "DBTOOLS_PROGRESS"
ENV_INTERVAL = "DBTOOLS_PROGRESS_INTERVAL"
MODES = ("auto", "rich", "plain", "off")
# A line per running table every ticker step is the most a log gets (1e-9 must not flood).
MIN_INTERVAL = TICK_SECONDS


def interval_from(environ: Mapping[str, str]) -> float:
    """Seconds between plain lines: DBTOOLS_PROGRESS_INTERVAL when it is a positive, finite
    number ("inf" would never say the run is alive), and at least MIN_INTERVAL."""
    try:
        value = float(environ.get(ENV_INTERVAL, "") or DEFAULT_INTERVAL)
    except ValueError:
        return DEFAULT_INTERVAL
    if not math.isfinite(value) or value <= 0:
        return DEFAULT_INTERVAL
    return max(value, MIN_INTERVAL)


def choose(
    stream: Any, *, quiet: bool, environ: Mapping[str, str] | None = None
) -> tuple[str, bool]:
    """(mode, closing): the progress mode for `stream` ("rich", "plain" or "off", module doc)
    and whether the command's closing line ("done in 12.3 s") is printed there."""
    env = os.environ if environ is None else environ
    if stream is None:  # stderr closed (`2>&-`): no thread, no connection, for nobody
        return "off", False
    wanted = env.get(ENV_MODE, "auto").strip().lower() or "auto"
    if wanted not in MODES:
        wanted = "auto"
    # Another program holds our stderr in memory (the CLI called as a function): what we
    # print there lands in its captured output, where nobody is watching.
    captured = stream is not sys.__stderr__
    closing = wanted != "auto" or not captured
    if quiet or wanted == "off":
        return "off", closing
    if wanted != "auto":
        return wanted, closing
    if captured:
        return "off", closing
    try:
        tty = bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        tty = False
    # A terminal that cannot move its cursor gets lines, as a log does.
    return ("rich" if tty and env.get("TERM") != "dumb" else "plain"), closing


def make_reporter(
    stream: TextIO, *, quiet: bool, environ: Mapping[str, str] | None = None
) -> tuple[Reporter | None, bool]:
    """The CLI's reporter on `stream` (None when progress is off) and whether the closing line
    goes there (`choose`)."""
    env = os.environ if environ is None else environ
    mode, closing = choose(stream, quiet=quiet, environ=env)
    if mode == "off":
        return None, closing
    return Reporter(mode, stream=stream, interval=interval_from(env)), closing


# --- the hooks library code calls -------------------------------------------------------------


class _Said(TableTask):
    def __init__(self, progress: Progress) -> None:
        self._progress = progress


@contextlib.contextmanager
def phase(progress: Progress, name: str, tables: int | None = None) -> Iterator[PhaseTask]:
    """A stretch of work over `tables` tables, e.g. "snapshot of dev": a bar on a terminal."""
    if not isinstance(progress, Reporter):
        yield PhaseTask()
        return
    handle = progress.begin_phase(name, tables)
    try:
        yield handle
    finally:
        progress.end_phase(handle)


@contextlib.contextmanager
def table_task(
    progress: Progress,
    verb: str,
    key: str,
    *,
    conn: Any = None,
    total: int | None = None,
    estimate: tuple[str, str] | None = None,
) -> Iterator[TableTask]:
    """One table worked on ("loading", "public.User"). `conn`: the connection that runs its
    COPY (rows done are read for its backend pid); `total`: the rows expected; `estimate`:
    (schema, name) whose pg_class.reltuples is shown as an "about" total instead. A table left
    without `done` (an error, a skip) ends without a line."""
    if not isinstance(progress, Reporter):
        yield _Said(progress)
        return
    task = progress.begin_table(verb, key, conn=conn, total=total, estimate=estimate)
    try:
        yield task
    finally:
        progress.end_table(task)


__all__ = [
    "DEFAULT_INTERVAL",
    "ENV_INTERVAL",
    "ENV_MODE",
    "THREAD_NAME",
    "PhaseTask",
    "Reporter",
    "TableTask",
    "choose",
    "interval_from",
    "make_reporter",
    "phase",
    "table_task",
]
