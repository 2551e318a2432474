"""What every command shares: --json, --quiet, confirmation, progress, rendering, and turning
errors into exit codes.

Commands parse their arguments, call one library function and hand its result to
`Options.emit`. Errors raised below the CLI are dbtools errors; here they become one redacted
line on stderr (or one JSON object on stdout with --json) and the documented exit code.

Progress goes to stderr through one `dbtools.progress.Reporter` per command (`opts.progress`,
the library's `progress` callback): rich's live display on a terminal, plain lines in a CI
log, nothing with --quiet. It is stopped before the result is printed; a command that ends
with its result then says how long it took: "done in 12.3 s" on stderr, or "seconds" in the
--json object.

Lines on stderr never fail a command (a reader that went away, `2>&-`); a result that cannot
be written to stdout (`| head` closed it) is one line on stderr and exit 2, or the command's
own nonzero code. Text for a person shows terminal control characters as escapes.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeVar

import click
import psycopg2

from dbtools import interrupt
from dbtools.config import Settings, load_settings, redact
from dbtools.db import Progress
from dbtools.errors import (
    EXIT_CHECK_FAILED,
    EXIT_CONFIG,
    EXIT_DECLINED,
    EXIT_SAFETY,
    DbtoolsError,
    Declined,
)
from dbtools.progress import Reporter, make_reporter
from dbtools.progress.text import printable

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class Options:
    json: bool = False
    yes: bool = False
    allow_insecure: bool = False
    quiet: bool = False
    _settings: Settings | None = field(default=None, repr=False)
    _started: float = field(default_factory=time.monotonic, repr=False)
    _reporter: Reporter | None = field(default=None, repr=False)
    _closing_line: bool = field(default=False, repr=False)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(allow_insecure=self.allow_insecure)
        return self._settings

    def echo(self, text: str = "") -> None:
        """Human output on stdout; silent under --json so stdout stays one JSON object."""
        if not self.json:
            with self._paused():  # not drawn into the live display of a shared terminal
                click.echo(shown(text))

    @property
    def progress(self) -> Progress:
        """The library's progress callback: the command's reporter (stderr), or None."""
        return self._reporter

    @property
    def seconds(self) -> float:
        """Time since the command started."""
        return time.monotonic() - self._started

    def start_progress(self) -> None:
        """Make and start the command's reporter (module doc); any failure means no progress."""
        try:
            reporter, self._closing_line = make_reporter(sys.stderr, quiet=self.quiet)
            if reporter is not None:
                reporter.start()
            self._reporter = reporter
        except Exception:
            self._reporter = None

    def stop_progress(self) -> None:
        """Stop the reporter's thread and display before anything else is printed
        (idempotent)."""
        reporter, self._reporter = self._reporter, None
        if reporter is not None:
            with contextlib.suppress(Exception):
                reporter.close()

    def _paused(self) -> contextlib.AbstractContextManager[None]:
        """No progress output while a question is shown and answered."""
        if self._reporter is None:
            return contextlib.nullcontext()
        return self._reporter.paused()

    def fail(self, text: str, error: str, exit_code: int) -> NoReturn:
        """A failure that still has a result to show (a report, a plan, the problems): the
        text on stdout as `echo` prints it, then the one error line on stderr, then the exit
        code. Text mode only; under --json the command emits its object instead."""
        self.stop_progress()
        self.echo(text)
        to_stderr(f"error: {printable(redact(error))}")
        sys.exit(exit_code)

    def warn(self, text: str) -> None:
        if not self.json:
            with self._paused():  # the live display is taken down for the line, not torn
                to_stderr(shown(f"warning: {text}"))

    def will_ask(self, what: str) -> bool:
        """Whether a question will be asked: False under --yes (CI), True at a terminal; with
        neither, Declined (exit 4) naming `what`. A command calls this before it computes
        what it will show above the question, so an unanswerable question costs nothing."""
        if self.yes:
            return False
        if not sys.stdin.isatty():
            raise Declined(
                f"refusing without confirmation: {what} (no terminal; pass --yes to confirm)"
            )
        return True

    def show(self, text: str) -> None:
        """What a question is about, printed just before it, where the question goes (stderr:
        stdout stays the command's result, one JSON object under --json)."""
        with self._paused():
            click.echo(shown(text), err=True)

    def confirm(self, question: str) -> None:
        """Ask on a terminal; --yes answers for CI. No (or no answer), or no terminal and no
        --yes, is Declined: exit 4, nothing changed (not 3: no safety rule refused)."""
        if not self.will_ask(question):
            return
        try:
            with self._paused():
                yes = click.confirm(shown(question), default=False, err=True)
        except click.exceptions.Abort:  # end of input at the prompt; or Ctrl-C
            if interrupt.received() is not None:
                raise
            raise Declined("no answer: nothing was changed") from None
        if not yes:
            raise Declined("cancelled: nothing was changed")

    def emit(
        self, data: dict[str, Any], text: str | Callable[[], str] | None = None, exit_code: int = 0
    ) -> NoReturn:
        """The command's result and its closing summary: how long the command took."""
        self.stop_progress()
        took = self.seconds
        result: str | None
        if self.json:
            payload = {"ok": exit_code == 0, **data}
            payload.setdefault("seconds", round(took, 3))
            result = json_text(payload)
        else:
            rendered = text() if callable(text) else text
            result = shown(rendered) if rendered else None
        if result is not None:
            try:
                click.echo(result)
            except OSError as exc:
                # stdout's reader went away (`| head`) or its disk is full: the work is done
                # but its result is lost, which the caller must learn from the exit code.
                lost = f"the result could not be written to stdout ({exc.strerror or exc})"
                to_stderr(f"error: {lost}")
                sys.exit(exit_code or EXIT_CONFIG)
        if not self.json and self._closing_line:
            ended = "done" if exit_code == 0 else f"ended (exit {exit_code})"
            to_stderr(f"{ended} in {took:.1f} s")
        sys.exit(exit_code)


def shown(text: str) -> str:
    """Text for a person: redacted, and what a terminal would act on (an escape sequence in a
    table's name) shown as its escape; newlines stay."""
    return printable(redact(text), keep_newlines=True)


def to_stderr(line: str) -> None:
    """A line on stderr that cannot fail the command: a closed or broken stderr (`2>&-`, a
    reader that went away) loses the line, never the result nor the exit code."""
    with contextlib.suppress(OSError, ValueError):
        click.echo(line, err=True)


def _fail(opts: Options, message: str, code: int, hint: str | None = None) -> NoReturn:
    if opts.json:
        message, hint = redact(message), redact(hint) if hint else None
        payload: dict[str, Any] = {"ok": False, "error": message, "exit_code": code}
        if hint:
            payload["hint"] = hint
        try:
            click.echo(json.dumps(payload, ensure_ascii=False))
            sys.exit(code)
        except OSError:  # stdout's reader went away: the error still gets its line
            pass
    # One line: a newline in a table's name (or a driver's message) does not start another.
    to_stderr(f"error: {printable(redact(message))}")
    if hint:
        to_stderr(f"hint: {printable(redact(hint))}")
    sys.exit(code)


def handle_errors(opts: Options, fn: Callable[[], Any]) -> Any:
    """Run fn and turn anything it raises into one line and an exit code, never a traceback."""
    try:
        return fn()
    except interrupt.Interrupted as exc:
        _fail(opts, exc.message, exc.exit_code)
    except SystemExit as exc:
        if interrupt.received() and exc.code in (0, None):
            signame = signal.Signals(interrupt.received() or signal.SIGINT).name
            _fail(opts, f"interrupted ({signame}) as the command finished", interrupt.exit_code())
        _interrupted_instead(opts)
        raise
    except BaseException as exc:
        # A query cancelled by the signal surfaces as whatever error its caller makes of it:
        # report the interruption, not that error.
        _interrupted_instead(opts)
        _render_error(opts, exc)
        raise


def _interrupted_instead(opts: Options) -> None:
    if interrupt.received() is not None:
        _fail(opts, interrupt.message(), interrupt.exit_code())


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {_redacted(k): _redacted(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redacted(v) for v in value]
    return value


def json_text(payload: Any) -> str:
    """--json output: every string redacted before it is serialized (redacting the finished
    JSON text could eat a closing quote, and did, after `?password=`)."""
    plain = json.loads(json.dumps(payload, default=str, ensure_ascii=False))
    return json.dumps(_redacted(plain), ensure_ascii=False)


def _debug_chain(exc: BaseException) -> None:
    """With DBTOOLS_DEBUG=1: the whole chain behind the one line, oldest first, including the
    causes that `raise ... from None` keeps out of the normal output (redacted like all
    output: a driver's message may quote a URL)."""
    if not os.environ.get("DBTOOLS_DEBUG"):
        return
    chain: list[BaseException] = []
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        chain.append(cur)
        cur = cur.__cause__ or cur.__context__
    parts = [
        "".join(traceback.format_exception(type(e), e, e.__traceback__, chain=False))
        for e in reversed(chain)
    ]
    to_stderr(shown("which led to:\n".join(parts)).rstrip())


def _render_error(opts: Options, exc: BaseException) -> None:
    """One line and the exit code for exc; returns only for what click itself must handle."""
    if isinstance(exc, (DbtoolsError, psycopg2.Error, OSError)):  # others: Python's traceback
        _debug_chain(exc)
    if isinstance(exc, DbtoolsError):
        _fail(opts, exc.message, exc.exit_code, exc.hint)
    if isinstance(exc, psycopg2.Error):
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        _fail(opts, f"database error: {first}", EXIT_CHECK_FAILED)
    if isinstance(exc, KeyboardInterrupt):  # a SIGINT with dbtools' handlers not installed
        _fail(opts, "interrupted: any open transaction was rolled back", 130)
    if isinstance(exc, (click.exceptions.Exit, click.exceptions.Abort, click.ClickException)):
        return
    if isinstance(exc, OSError):
        _fail(opts, f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), EXIT_CONFIG)
    if isinstance(exc, Exception) and not os.environ.get("DBTOOLS_DEBUG"):
        _fail(
            opts,
            f"internal error: {type(exc).__name__}: {exc} (set DBTOOLS_DEBUG=1 for a traceback)",
            EXIT_CHECK_FAILED,
        )


def common_options(*, destructive: bool = False) -> Callable[[F], F]:
    """Add --json, --quiet (and --yes for destructive commands) and pass an Options as first
    argument; progress runs for the command's whole run and stops before its last line."""

    def decorator(fn: F) -> F:
        @click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
        @click.option(
            "--quiet",
            "-q",
            is_flag=True,
            help="No progress on stderr (the result and errors still print).",
        )
        @click.option(
            "--allow-insecure",
            is_flag=True,
            help="Allow a remote database URL without sslmode=require.",
        )
        @functools.wraps(fn)
        def wrapper(
            *args: Any, as_json: bool, quiet: bool, allow_insecure: bool, **kwargs: Any
        ) -> Any:
            yes = bool(kwargs.pop("yes", False)) if destructive else False
            opts = Options(json=as_json, yes=yes, allow_insecure=allow_insecure, quiet=quiet)

            def run() -> Any:
                opts.start_progress()
                try:
                    return fn(opts, *args, **kwargs)
                finally:
                    # Before handle_errors prints the error line: that line comes last.
                    opts.stop_progress()

            return handle_errors(opts, run)

        if destructive:
            wrapper = click.option(
                "--yes", "-y", is_flag=True, help="Confirm without asking (for CI)."
            )(wrapper)
        return wrapper  # type: ignore[return-value]

    return decorator


def target_option(default: str | None = None, *, both: bool = False) -> Callable[[F], F]:
    choices = ["dev", "prod", "both"] if both else ["dev", "prod"]
    return click.option(
        "--target",
        type=click.Choice(choices),
        default=default,
        required=default is None,
        show_default=default is not None,
        help="Which database to act on.",
    )


def table(rows: list[list[Any]], header: list[str]) -> str:
    """A plain text table: the one renderer every command uses."""
    # A cell is one line: a newline (or an escape) in a table's name is shown, not obeyed.
    cells = [[printable(str(h)) for h in header]] + [
        ["" if c is None else printable(str(c)) for c in r] for r in rows
    ]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


__all__ = [
    "EXIT_CHECK_FAILED",
    "EXIT_CONFIG",
    "EXIT_DECLINED",
    "EXIT_SAFETY",
    "Options",
    "common_options",
    "handle_errors",
    "table",
    "target_option",
]
