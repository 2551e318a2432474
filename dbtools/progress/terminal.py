"""The terminal display: rich's Progress in a transient live area on stderr, one bar per phase
and per table being worked on, and a line above them for each finished table and message.

Imported only when stderr is a terminal (or DBTOOLS_PROGRESS=rich): other runs never load rich.
The reporter holds its lock around every call here and drives the redraws from its ticker
(auto_refresh off), so rich starts no thread of its own.
"""

from __future__ import annotations

import contextlib
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as Bars
from rich.table import Column
from rich.text import Text

from dbtools.progress.text import short, size


class _Done(ProgressColumn):
    """'310.0k/500.0k rows', '3/12 tables', '~' before an estimated total."""

    def __init__(self) -> None:
        super().__init__(table_column=Column(no_wrap=True))

    def render(self, task: Task) -> Text:
        unit = task.fields.get("unit", "")
        done = short(task.completed)
        if task.total is None:
            return Text(f"{done} {unit}")
        about = "~" if task.fields.get("about") else ""
        return Text(f"{done}/{about}{short(task.total)} {unit}")


class _Share(ProgressColumn):
    def render(self, task: Task) -> Text:
        if not task.total:
            return Text("")
        cap = 0.99 if task.fields.get("about") else 1.0
        return Text(f"{min(task.completed / task.total, cap):>4.0%}")


class _Bytes(ProgressColumn):
    def render(self, task: Task) -> Text:
        n = int(task.fields.get("nbytes") or 0)
        return Text(size(n) if n else "")


class _Rate(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.speed
        if not speed or task.fields.get("unit") != "rows":
            return Text("")
        return Text(f"{short(speed)} rows/s")


class _Console(Console):
    """rich's Console, except for a broken pipe: rich's own answer dup2s /dev/null onto
    stdout (fd 1, the command's result) and raises SystemExit(1). Here the display just
    goes quiet; the command, its result and its exit code go on."""

    def on_broken_pipe(self) -> None:
        self.quiet = True


class _Bars(Bars):
    """rich's Progress, redrawn only when the reporter says (add_task would redraw at once:
    milliseconds per table, most of the time of a run over many small tables)."""

    def refresh(self) -> None:
        pass

    def redraw(self) -> None:
        super().refresh()


class RichView:
    def __init__(self, stream: TextIO) -> None:
        # force_terminal: DBTOOLS_PROGRESS=rich asks for the display on any stream.
        self.console = _Console(file=stream, force_terminal=True, highlight=False, markup=False)
        self.bars = _Bars(
            TextColumn(
                "{task.description}",
                markup=False,
                table_column=Column(max_width=40, no_wrap=True, overflow="ellipsis"),
            ),
            BarColumn(bar_width=16),
            _Done(),
            _Share(),
            _Bytes(),
            _Rate(),
            TimeRemainingColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
            auto_refresh=False,
            expand=False,
            redirect_stdout=False,  # stdout is the command's result, never the display's
        )
        self.live = False

    def print_lines(self, lines: list[tuple[str, bool]]) -> None:
        """Lines above the live area, in one print (each print redraws the area): (text,
        whether it is a finished table's, marked with a check)."""
        shown = [Text(("✓ " if mark else "") + text) for text, mark in lines]
        self.console.print(Text("\n").join(shown), soft_wrap=True)

    def add(self, description: str, total: int | None, unit: str, about: bool) -> TaskID:
        """A bar, drawn on the next refresh (the ticker's, a few times a second)."""
        return self.bars.add_task(description, total=total, unit=unit, about=about, nbytes=0)

    def update(
        self, bar: TaskID, done: int, total: int | None, about: bool, nbytes: int = 0
    ) -> None:
        self.bars.update(bar, completed=done, total=total, about=about, nbytes=nbytes)

    def remove(self, bar: TaskID) -> None:
        """Drop a bar, gone on the next refresh (lines are printed after it: they do not
        bring the old area back)."""
        with contextlib.suppress(KeyError):
            self.bars.remove_task(bar)

    def show(self, on: bool) -> None:
        """Start or stop the live area (stopped, it leaves nothing on the screen)."""
        if on and not self.live:
            self.bars.start()
            self.live = True
        elif not on and self.live:
            self.live = False
            self.bars.stop()

    def refresh(self) -> None:
        if self.live:
            self.bars.redraw()
