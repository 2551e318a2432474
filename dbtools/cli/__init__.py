"""The `dbtools` command line: parse, confirm, call the library, render. No SQL here.

Each concept has its own module of commands; this file only assembles them.
"""

from __future__ import annotations

import click

from dbtools import __version__

EPILOG = """\b
Examples:
  dbtools verify                 pre-flight check of dev and prod
  dbtools full-sync --dry-run    what a sync would do, writing nothing
  dbtools full-sync --yes        backup, migrate, copy and check prod
  dbtools rollback --yes         restore the newest verified prod backup

Exit codes: 0 ok, 1 a check or verification failed, 2 usage or configuration
error, 3 a safety rule refused the operation.
"""


@click.group(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dbtools")
def main() -> None:
    """Migration-first schema tooling with Parquet data snapshots for PostgreSQL (dev -> prod)."""


def _register() -> None:
    from dbtools.cli import migrate_cmd, snapshot_cmd, sync_cmd, verify_cmd

    for module in (verify_cmd, migrate_cmd, snapshot_cmd, sync_cmd):
        for command in module.COMMANDS:
            main.add_command(command)


_register()
