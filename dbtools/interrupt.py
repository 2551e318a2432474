"""SIGINT and SIGTERM: every command ends within seconds, cleanly, with exit 130 / 143.

The CLI installs the handlers once (`handling_signals()` around the whole command). A signal
then does three things:

1. The first one raises `Interrupted` in the main thread (Python runs signal handlers there),
   which unwinds the command through its `finally` blocks and rollbacks like any error.
2. A watcher thread, woken through `signal.set_wakeup_fd` even while the main thread sits in
   libpq (which retries its poll() on EINTR, so the Python handler could not run for the
   length of a query), cancels the in-flight query of every connection registered with
   `cancel_on_signal`: COPYs, content hashes, lock waits. The blocked call returns at once
   with an error, the Python handler runs, and worker threads see `received()` and stop.
   The watcher also re-sends the signal to the main thread: the kernel may have delivered it
   to another thread, which would leave the main thread asleep and its handler unrun.
3. If the process still has not exited `GRACE_SECONDS` later, the watcher prints the line
   and ends it with os._exit: the server then rolls back whatever was open, as it does for
   any closed connection. A hang is never an outcome.

Library code reports what an interruption leaves behind with `outcome("...")`, e.g. "no
snapshot was written"; `message()` builds the one line the CLI prints. Work that must not be
cut in half (a COMMIT and the bookkeeping right after it) runs inside `deferred()`: signals
arriving then are recorded and raised when the block ends.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import select
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any, NoReturn

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}
GRACE_SECONDS = 8.0
DEFAULT_OUTCOME = "any open transaction was rolled back"


class Interrupted(BaseException):
    """A SIGINT/SIGTERM reached dbtools. BaseException, like KeyboardInterrupt, so that no
    `except Exception` turns it into an ordinary error on its way to the CLI."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self._message = message(signum)  # what is true where it was raised
        super().__init__(self._message)

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(signal.Signals(self.signum), 128 + self.signum)

    @property
    def message(self) -> str:
        return self._message


# Reentrant: the Python handler runs in the main thread between any two bytecodes, possibly
# while that thread holds this lock (in cancel_on_signal, say); a plain Lock deadlocks there.
_lock = threading.RLock()
_signum: int | None = None  # the first signal received, if any
_raised = False
_deferred = 0
_conns: dict[int, Any] = {}
_outcomes: list[str] = []
_watcher: _Watcher | None = None


def received() -> int | None:
    """The signal number once SIGINT/SIGTERM arrived (the first one), else None."""
    return _signum


def exit_code() -> int:
    assert _signum is not None
    return EXIT_CODES.get(signal.Signals(_signum), 128 + _signum)


def message(signum: int | None = None) -> str:
    """'interrupted (SIGTERM): <what was and was not changed>'."""
    num = signum if signum is not None else (_signum or signal.SIGINT)
    what = _outcomes[-1] if _outcomes else DEFAULT_OUTCOME
    return f"interrupted ({signal.Signals(num).name}): {what}"


def raise_if_received() -> None:
    """Raise Interrupted if a signal arrived: for worker threads and for error paths, so that
    a query cancelled by the signal is reported as the interruption it is."""
    if _signum is not None and not _deferred:
        _raise(_signum)


def _raise(signum: int) -> None:
    """Raise Interrupted; in the main thread, the handler then raises no second one (which
    could land inside the cleanup the first one started, e.g. removing a partial build)."""
    global _raised
    if threading.current_thread() is threading.main_thread():
        with _lock:
            _raised = True
    raise Interrupted(signum)


@contextlib.contextmanager
def outcome(text: str) -> Iterator[None]:
    """While inside, an interruption leaves `text` true ("the load was rolled back, ...").

    Leaving the block drops its entry by position, including a `set_outcome` replacement
    of it and anything an inner block left, so an outer block's text is the one in force.
    """
    depth = len(_outcomes)
    _outcomes.append(text)
    try:
        yield
    except BaseException:
        if _signum is None:
            del _outcomes[depth:]
        # else: left in place for the CLI's line (the stack is reset with the handlers)
        raise
    del _outcomes[depth:]


def set_outcome(text: str) -> None:
    """Replace the innermost outcome: a step finished and the state on interruption changed."""
    if _outcomes:
        _outcomes[-1] = text
    else:
        _outcomes.append(text)


@contextlib.contextmanager
def cancel_on_signal(conn: Any) -> Iterator[None]:
    """A signal cancels conn's running query (conn.cancel()) while inside this block.

    Entering after a signal raises Interrupted at once, so no new query starts.
    """
    key = id(conn)
    with _lock:
        stop = _signum is not None and not _deferred
        if not stop:
            _conns[key] = conn
    if stop:
        assert _signum is not None
        _raise(_signum)
    try:
        yield
    finally:
        with _lock:
            _conns.pop(key, None)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Finish the block whatever arrives (a COMMIT must not be cut); raise afterwards."""
    global _deferred
    with _lock:
        _deferred += 1
    try:
        yield
    finally:
        with _lock:
            _deferred -= 1
    raise_if_received()


def _cancel_all() -> None:
    with _lock:
        if _deferred:
            return
        conns = list(_conns.values())
    for conn in conns:
        with contextlib.suppress(Exception):
            conn.cancel()


def _record(signum: int) -> bool:
    """Note the signal; True the first time."""
    global _signum
    with _lock:
        if _signum is not None:
            return False
        _signum = signum
        return True


def _handler(signum: int, _frame: Any) -> None:
    """The Python-level handler (main thread): record, cancel, raise once."""
    global _raised
    _record(signum)
    _cancel_all()
    with _lock:
        if _raised or _deferred:
            return
        _raised = True
    assert _signum is not None
    raise Interrupted(_signum)


def _wake_main(signum: int) -> None:
    """Deliver the signal to the main thread itself.

    The kernel gives a process-directed signal to any thread that does not block it: a worker
    in libpq, one of Arrow's threads. The main thread is then not woken: asleep in a pause or
    blocked in a lock it would stay there, its handler never run and its cleanup (removing a
    partial build) never done, until the grace period ends the process. Sent to it directly,
    the signal interrupts that wait; if the handler already ran, the second call is a no-op.
    """
    with _lock:
        if _raised:  # the main thread already took it and is unwinding
            return
    with contextlib.suppress(Exception):
        signal.pthread_kill(threading.main_thread().ident or 0, signum)


class _Watcher(threading.Thread):
    """Reads the wakeup fd: cancels queries at once and bounds the time to exit."""

    def __init__(self, wake_fd: int) -> None:
        super().__init__(name="dbtools-signal-watcher", daemon=True)
        self.wake_fd = wake_fd
        self.stop_r, self.stop_w = os.pipe()
        self.stopped = threading.Event()

    def run(self) -> None:
        while True:
            ready, _, _ = select.select([self.wake_fd, self.stop_r], [], [])
            if self.stop_r in ready:
                return
            try:
                data = os.read(self.wake_fd, 64)
            except BlockingIOError:
                continue
            nums = [n for n in data if n in (signal.SIGINT, signal.SIGTERM)]
            if not nums:
                continue
            _record(nums[0])
            _cancel_all()
            _wake_main(nums[0])
            if not self.stopped.wait(GRACE_SECONDS):
                # Cleanup is stuck (a server that does not answer a cancel): end it here. The
                # server rolls back what was open when it sees the connection close.
                with contextlib.suppress(Exception):
                    sys.stderr.write(f"error: {message()} (forced exit)\n")
                    sys.stderr.flush()
                os._exit(exit_code())

    def stop(self) -> None:
        self.stopped.set()
        with contextlib.suppress(OSError):
            os.write(self.stop_w, b"x")
        if self is not threading.current_thread():
            self.join()
        for fd in (self.stop_r, self.stop_w):
            with contextlib.suppress(OSError):
                os.close(fd)


@contextlib.contextmanager
def handling_signals(*, process: bool) -> Iterator[None]:
    """Install the SIGINT/SIGTERM handling for the block (the CLI's whole run).

    Only in the main thread and only once (nested calls, or a CLI run inside a test runner's
    worker thread, leave the handlers as they are). `process`: this run is the whole process
    (the real CLI), which then ends with `exit_process`: the handling stays installed until
    then. Otherwise (a CLI invoked in-process by tests) the previous handlers are restored.
    """
    global _watcher, _signum, _raised, _wake_r
    if threading.current_thread() is not threading.main_thread() or _watcher is not None:
        yield
        return
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    previous = {s: signal.getsignal(s) for s in EXIT_CODES}
    old_fd = signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    _signum, _raised, _wake_r = None, False, wake_r
    _watcher = _Watcher(wake_r)
    _watcher.start()
    atexit.register(_watcher.stop)  # a sys.exit that skips the finally still stops it
    for s in EXIT_CODES:
        signal.signal(s, _handler)
    try:
        yield
    finally:
        if process:
            with _lock:
                _raised = True  # from here a signal is only recorded, for exit_process
        else:
            # Handlers first: a signal from here on must not raise inside this cleanup.
            for s, h in previous.items():
                signal.signal(s, h)
            watcher, _watcher = _watcher, None
            watcher.stop()
            atexit.unregister(watcher.stop)
            signal.set_wakeup_fd(old_fd)
            for fd in (wake_r, wake_w):
                with contextlib.suppress(OSError):
                    os.close(fd)
            _outcomes.clear()
            _conns.clear()
            _signum, _raised, _wake_r = None, False, None


_wake_r: int | None = None


def exit_process(code: int) -> NoReturn:
    """End the real CLI process now, with `code`, or 130/143 if a signal arrived at any time.

    Signals are blocked first, then every trace of one is collected: the watcher's record,
    a byte still in the wakeup pipe (delivered, its Python handler not yet run), a pending
    signal. Interpreter finalization is skipped: every connection is closed and every thread
    joined by now, and finalization would reset the handlers (a late signal would then kill
    the process instead of exiting 130/143).
    """
    with contextlib.suppress(Exception):
        signal.pthread_sigmask(signal.SIG_BLOCK, set(EXIT_CODES))
    if _watcher is not None:
        _watcher.stop()
    seen: int | None = _signum
    if seen is None and _wake_r is not None:
        with contextlib.suppress(OSError):
            late = [n for n in os.read(_wake_r, 64) if n in EXIT_CODES]
            seen = late[0] if late else None
    if seen is None:
        with contextlib.suppress(Exception):
            pending = sorted(set(EXIT_CODES) & signal.sigpending())
            seen = pending[0] if pending else None
    if seen is not None and code not in EXIT_CODES.values():
        with contextlib.suppress(Exception):
            sys.stderr.write(
                f"error: interrupted ({signal.Signals(seen).name}) as the command finished "
                f"(exit {code} otherwise)\n"
            )
        code = EXIT_CODES.get(signal.Signals(seen), 128 + seen)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)
