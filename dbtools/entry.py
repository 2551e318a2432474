"""The `dbtools` program's entry point: signal handling from the first moment.

Importing the CLI takes about half a second (pyarrow, DuckDB, psycopg2); until
`interrupt.handling_signals` takes over, Python's own SIGINT handling would end a Ctrl-C there
with a KeyboardInterrupt traceback, and SIGTERM with no word at all. Nothing has been done
yet at that point, so the early handler only says so, in the documented form, and exits with
the documented code. Library users importing dbtools never get these handlers: only the
program installs them.
"""

from __future__ import annotations

import contextlib
import os
import signal
from types import FrameType

_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


def _early(signum: int, frame: FrameType | None) -> None:
    name = signal.Signals(signum).name
    line = f"error: interrupted ({name}) while starting; nothing was done\n"
    with contextlib.suppress(OSError):  # no stderr: the exit code still says it
        os.write(2, line.encode())
    os._exit(_CODES.get(signal.Signals(signum), 128 + signum))


def run() -> None:
    for s in _CODES:
        signal.signal(s, _early)
    from dbtools.cli import main

    main()
