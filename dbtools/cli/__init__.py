"""The `dbtools` command line: parse, confirm, call the library, render. No SQL here.

Each concept has its own module of commands; this file only assembles them, and installs the
SIGINT/SIGTERM handling (dbtools.interrupt) once, around the whole run.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from dbtools import __version__

EPILOG = """\b
Examples:
  dbtools verify                 pre-flight check of dev and prod
  dbtools full-sync --dry-run    what a sync would do, writing nothing
  dbtools full-sync --yes        backup, migrate, copy and check prod
  dbtools rollback --dry-run     which backup a rollback would restore, and how
  dbtools rollback --yes         restore the newest verified prod backup

Exit codes: 0 ok, 1 a check or verification failed, 2 usage or configuration
error, 3 a safety rule refused the operation, 4 not confirmed (answered no,
or no terminal and no --yes; nothing changed), 130 / 143 interrupted by
SIGINT (Ctrl-C) / SIGTERM.
"""


class _Cli(click.Group):
    def main(self, args: Any = None, *a: Any, **kw: Any) -> Any:
        from dbtools import interrupt

        # args is None only for the real program (sys.argv): then this run is the process.
        process = args is None
        try:
            with interrupt.handling_signals(process=process):
                try:
                    return super().main(args, *a, **kw)
                except interrupt.Interrupted as exc:
                    # Interrupted outside a command's handle_errors (while parsing, say).
                    click.echo(f"error: {exc.message}", err=True)
                    sys.exit(exc.exit_code)
        except SystemExit as exc:
            if not process:
                raise
            code = exc.code
        if isinstance(code, str):
            click.echo(code, err=True)
            code = 1
        interrupt.exit_process(int(code or 0))


@click.group(cls=_Cli, epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dbtools")
def main() -> None:
    """Migration-first schema tooling with Parquet data snapshots for PostgreSQL (dev -> prod)."""
    from dbtools import faults
    from dbtools.errors import DbtoolsError

    try:
        faults.validate()  # a malformed test pause is exit 2 before anything runs
    except DbtoolsError as exc:
        click.echo(f"error: {exc.message}", err=True)
        raise SystemExit(exc.exit_code) from None


def _register() -> None:
    from dbtools.cli import migrate_cmd, plan_cmd, snapshot_cmd, sync_cmd, verify_cmd

    for module in (verify_cmd, migrate_cmd, snapshot_cmd, plan_cmd, sync_cmd):
        for command in module.COMMANDS:
            main.add_command(command)


_register()
