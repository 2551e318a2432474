"""The reporter behind `dbtools.progress` (see its module doc): phases and tables, the plain
lines or the terminal's bars, and the ticker thread that reads rows done (progress/poll.py)
and prints a line when one is due.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TextIO

from dbtools import interrupt
from dbtools.config import redact
from dbtools.db import Progress, say
from dbtools.progress import poll
from dbtools.progress.text import count, printable, seconds, size

DEFAULT_INTERVAL = 10.0
POLL_SECONDS = 1.0  # how often pg_stat_progress_copy is read (at most the interval)
TICK_SECONDS = 0.2  # the ticker's step: redraws, and the check for a line that is due
IDLE_CLOSE_SECONDS = 5.0  # a polling connection with nothing to poll is closed after this
JOIN_SECONDS = 5.0  # bound on waiting for the ticker at the end (its queries time out first)
THREAD_NAME = "dbtools-progress"


# --- the handles library code holds ---------------------------------------------------------


class TableTask:
    """One table being worked on. With a plain callback (or None) `done` only says its line."""

    _progress: Progress = None

    def set_total(self, total: int | None) -> None:
        """The rows expected, once known."""

    def add(self, rows: int) -> None:
        """Rows of a COPY that just finished, for a table copied in several COPYs."""

    def done(self, text: str) -> None:
        """The table is finished; `text` is its line ("loaded public.User: 9 rows")."""
        say(self._progress, text)


class PhaseTask:
    """A phase (a stretch of work over several tables)."""

    def advance(self, n: int = 1) -> None:
        """Tables of the phase finished without a table task of their own."""


# --- the reporter --------------------------------------------------------------------------


@dataclass(eq=False)
class _Phase(PhaseTask):
    reporter: Reporter
    name: str
    total: int | None
    finished: int = 0
    bar: Any = None

    def advance(self, n: int = 1) -> None:
        with self.reporter._lock:
            self.finished += n
            self.reporter._redraw_phase(self)


@dataclass(eq=False)
class _Task(TableTask):
    reporter: Reporter
    verb: str
    key: str
    started: float
    phase: _Phase | None = None
    pid: int | None = None
    server: poll.Server | None = None
    total: int | None = None
    about: bool = False
    estimate: tuple[str, str] | None = None
    base_rows: int = 0  # rows of the table's finished COPYs
    base_bytes: int = 0
    base_at: float = 0.0  # when base_rows last grew: samples asked for before are stale
    copy_rows: int = 0  # the running COPY's, as last read
    copy_bytes: int = 0
    last_line: float = 0.0
    closing: str | None = None
    bar: Any = None

    @property
    def rows(self) -> int:
        return self.base_rows + self.copy_rows

    @property
    def nbytes(self) -> int:
        return self.base_bytes + self.copy_bytes

    def set_total(self, total: int | None) -> None:
        with self.reporter._lock:
            self.total, self.about, self.estimate = total, False, None

    def add(self, rows: int) -> None:
        with self.reporter._lock:
            self.base_rows += rows
            self.base_bytes += self.copy_bytes
            self.copy_rows = self.copy_bytes = 0
            self.base_at = time.monotonic()

    def done(self, text: str) -> None:
        self.closing = text


class Reporter:
    """The CLI's progress callback (module doc); safe to call from several threads at once."""

    def __init__(
        self,
        mode: str,
        *,
        stream: TextIO,
        interval: float = DEFAULT_INTERVAL,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        self.mode = mode
        self.stream = stream
        self.interval = interval
        self.poll_seconds = min(poll_seconds, interval)
        self.started = time.monotonic()
        self._lock = threading.RLock()
        self._tasks: list[_Task] = []
        self._phases: list[_Phase] = []
        self._servers: dict[tuple[tuple[str, str], ...], poll.Server] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._paused = 0
        self._last_line = self.started
        self._last_poll = 0.0
        self._rich: Any = None
        # A terminal's finished lines, printed together on the next tick: each print redraws
        # the live area, which costs milliseconds (a line per table was most of the time of a
        # thousand small tables).
        self._pending: list[tuple[str, bool]] = []
        if mode == "rich":
            try:
                from dbtools.progress.terminal import RichView

                self._rich = RichView(stream)
            except Exception:
                self.mode = "plain"

    # -- lifecycle

    def start(self) -> None:
        """Start the ticker thread (idempotent, never raises)."""
        with self._lock:
            if self._thread is not None or self._closed:
                return
            thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)
            with contextlib.suppress(Exception):
                thread.start()
                self._thread = thread

    def close(self) -> None:
        """Stop the ticker, close its connections and clear the live display (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
        self._stop.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(JOIN_SECONDS)
        with self._lock:
            self._tasks.clear()
            self._phases.clear()
            if thread is None or not thread.is_alive():  # else it closes its own on the way out
                self._close_servers()
            self._show_live(False)
            with contextlib.suppress(Exception):
                self.stream.flush()

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Nothing printed while inside: a question waits for its answer on this stream."""
        with self._lock:
            self._flush()  # what happened before the question shows above it
            self._paused += 1
            self._show_live(False)
        try:
            yield
        finally:
            with self._lock:
                self._paused -= 1
                self._last_line = time.monotonic()
                self._show_live(self._busy())

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    # -- the Progress callback

    def __call__(self, text: str) -> None:
        """A step the library says: shown on a terminal only (module doc)."""
        if self._rich is not None:
            with self._lock:
                self._line(text)

    # -- phases and tables (never raise: progress must not fail the command)

    def begin_phase(self, name: str, tables: int | None) -> _Phase:
        ph = _Phase(self, name, tables)
        with self._lock, contextlib.suppress(Exception):
            self._phases.append(ph)
            if self._rich is not None:
                ph.bar = self._rich.add(printable(name), tables, "tables", False)
            self._show_live(True)
        return ph

    def end_phase(self, ph: _Phase) -> None:
        with self._lock, contextlib.suppress(Exception):
            if ph in self._phases:
                self._phases.remove(ph)
            if self._rich is not None and ph.bar is not None:
                self._rich.remove(ph.bar)
            self._show_live(self._busy())

    def begin_table(
        self,
        verb: str,
        key: str,
        *,
        conn: Any = None,
        total: int | None = None,
        estimate: tuple[str, str] | None = None,
    ) -> _Task:
        now = time.monotonic()
        task = _Task(self, verb, key, now, total=total, base_at=now, last_line=now)
        task.estimate = estimate if total is None else None
        with contextlib.suppress(Exception):
            if conn is not None:
                task.pid, params = poll.identify(conn)
                task.server = self._server(params)
        with self._lock, contextlib.suppress(Exception):
            task.phase = self._phases[-1] if self._phases else None
            self._tasks.append(task)
            if self._rich is not None:
                task.bar = self._rich.add(printable(f"  {verb} {key}"), total, "rows", False)
                self._show_live(True)
            # Plain lines: none when a table starts. Its end says it (one line per table, as a
            # CI log wants), and a table that runs longer than the interval gets its lines of
            # rows done meanwhile, so the log never goes quiet for longer than that.
        return task

    def end_table(self, task: _Task) -> None:
        with self._lock, contextlib.suppress(Exception):
            if task not in self._tasks:
                return
            self._tasks.remove(task)
            if self._rich is not None and task.bar is not None:
                self._rich.remove(task.bar)
            if task.closing is not None:
                if task.phase is not None:
                    task.phase.finished += 1
                    self._redraw_phase(task.phase)
                spent = time.monotonic() - task.started
                self._line(f"{task.closing} in {spent:.1f} s", mark=True)
            self._show_live(self._busy())

    # -- output (the lock held)

    def _silent(self) -> bool:
        return self._closed or self._paused > 0 or interrupt.received() is not None

    def _line(self, text: str, *, mark: bool = False) -> None:
        if self._silent():
            return
        with contextlib.suppress(Exception):
            # Redacted as written; then whatever a terminal would act on (a table's name is
            # anyone's choice: an escape sequence, a newline) is shown as its escape.
            line = printable(redact(text))
            if self._rich is not None:
                self._pending.append((line, mark))
                if not self._rich.live:
                    self._flush()
            else:
                self.stream.write(line + "\n")
                self.stream.flush()
            self._last_line = time.monotonic()

    def _busy(self) -> bool:
        return bool(self._tasks or self._phases)

    def _flush(self) -> None:
        """Print the terminal's pending lines (after a signal: drop them, module doc)."""
        lines, self._pending = self._pending, []
        if self._rich is None or not lines or interrupt.received() is not None:
            return
        with contextlib.suppress(Exception):
            self._rich.print_lines(lines)

    def _show_live(self, on: bool) -> None:
        if self._rich is not None:
            if not on:
                self._flush()
            with contextlib.suppress(Exception):
                self._rich.show(on and not self._silent())

    def _redraw_phase(self, ph: _Phase) -> None:
        if self._rich is not None and ph.bar is not None:
            with contextlib.suppress(Exception):
                self._rich.update(ph.bar, ph.finished, ph.total, False)

    def status(self, task: _Task, now: float | None = None) -> str:
        """A table's plain line: 'loading public.User: 310,000 / 500,027 rows, 62%, 14 s
        (38.0 MB, 22,143 rows/s, about 9 s left)'."""
        spent = (time.monotonic() if now is None else now) - task.started
        rows, head = task.rows, f"{task.verb} {task.key}: "
        if task.total is None and rows == 0:
            return f"{head}{seconds(spent)} so far"
        parts: list[str] = []
        if task.total is not None:
            about = "about " if task.about else ""
            parts.append(f"{count(rows)} / {about}{count(task.total)} rows")
            if task.total > 0:
                parts.append(f"{min(rows / task.total, 0.99 if task.about else 1.0):.0%}")
        else:
            parts.append(f"{count(rows)} rows")
        parts.append(seconds(spent))
        extra = [size(task.nbytes)] if task.nbytes else []
        if rows and spent > 0:
            rate = rows / spent
            extra.append(f"{count(round(rate))} rows/s")
            left = (task.total - rows) / rate if task.total is not None else 0.0
            if left >= 1:
                extra.append(f"about {seconds(left)} left")
        return head + ", ".join(parts) + (f" ({', '.join(extra)})" if extra else "")

    def _plain_tick(self, now: float) -> None:
        for task in self._tasks:
            if now - task.last_line >= self.interval:
                self._line(self.status(task, now))
                task.last_line = now
        if not self._tasks and now - self._last_line >= self.interval:
            where = f"{self._phases[-1].name}: " if self._phases else ""
            self._line(f"{where}still working, {seconds(now - self.started)} so far")

    # -- the ticker thread

    def _run(self) -> None:
        with contextlib.suppress(Exception):  # signals are the main thread's (module doc)
            signal.pthread_sigmask(signal.SIG_BLOCK, set(interrupt.EXIT_CODES))
        try:
            while not self._stop.wait(TICK_SECONDS):
                if interrupt.received() is not None:
                    break
                with contextlib.suppress(Exception):
                    self._tick()
        finally:
            with self._lock:
                self._close_servers()

    def _tick(self) -> None:
        now = time.monotonic()
        if now - self._last_poll >= self.poll_seconds:
            self._last_poll = now
            self._poll(now)
        with self._lock:
            if self._silent():
                return
            if self._rich is not None:
                for task in self._tasks:
                    if task.bar is not None:
                        self._rich.update(task.bar, task.rows, task.total, task.about, task.nbytes)
                self._rich.refresh()
                self._flush()
            else:
                self._plain_tick(now)

    def _server(self, params: dict[str, str]) -> poll.Server:
        key = tuple(sorted(params.items()))
        with self._lock:
            server = self._servers.get(key)
            if server is None:
                server = self._servers[key] = poll.Server(params)
            return server

    def _poll(self, now: float) -> None:
        """Rows done and estimates for every table running, database by database; the lock
        is not held while a server answers."""
        with self._lock:
            work: dict[int, tuple[poll.Server, list[_Task]]] = {}
            for task in self._tasks:
                # A table done within the poll period is never asked about: a run of many
                # small tables opens no connection of ours, and takes no slot a worker of the
                # command might need (max_connections, a role's CONNECTION LIMIT).
                young = now - task.started < self.poll_seconds
                if task.server is not None and not task.server.broken and not young:
                    work.setdefault(id(task.server), (task.server, []))[1].append(task)
            idle = [s for s in self._servers.values() if id(s) not in work and s.conn]
            phases = bool(self._phases)
        for server in idle:
            # Closed when its phase is over (a scratch database is dropped next), or after a
            # pause between tables that outlasted IDLE_CLOSE_SECONDS.
            if server.idle_since is None:
                server.idle_since = now
            if not phases or now - server.idle_since >= IDLE_CLOSE_SECONDS:
                server.close()
        for server, tasks in work.values():
            server.idle_since = None
            asked = time.monotonic()
            pids = sorted({t.pid for t in tasks if t.pid is not None})
            wanted = [t.estimate for t in tasks if t.estimate is not None and t.total is None]
            try:
                copies, totals = poll.read(server, pids, wanted)
            except BaseException:
                server.close()
                server.broken = True
                continue
            with self._lock:
                for task in tasks:
                    if task.estimate is not None and task.estimate in totals:
                        if task.total is None and totals[task.estimate] is not None:
                            task.total, task.about = totals[task.estimate], True
                        task.estimate = None
                    # A pid without a row has no COPY running (yet, or any more): keep what
                    # was read last, until `add` counts the finished COPY.
                    if task.pid in copies and task.base_at <= asked:
                        task.copy_rows, task.copy_bytes = copies[task.pid]

    def _close_servers(self) -> None:
        for server in list(self._servers.values()):
            server.close()
