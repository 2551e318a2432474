"""The project a test works in: a directory with its setup.cfg, and its dev and prod databases
(the `project` fixture in conftest.py makes one)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner, Result

REPO = Path(__file__).resolve().parent.parent.parent


@dataclass
class Project:
    """A dbtools project in a temp dir with its own dev and prod databases."""

    root: Path
    dev_url: str
    prod_url: str
    dev_name: str
    prod_name: str
    snapshot_dir: Path
    env: dict[str, str]

    def invoke(self, *args: str, input: str | None = None) -> Result:
        from dbtools.cli import main

        runner = CliRunner()
        return runner.invoke(main, list(args), env=self.env, input=input, catch_exceptions=False)


def configure(project: Project, extra: str) -> None:
    """Set [dbtools] options ("key = value" lines), replacing the project's own."""
    cfg = project.root / "setup.cfg"
    lines = cfg.read_text().splitlines()
    for option in extra.splitlines():
        key = option.partition("=")[0].strip()
        lines = [line for line in lines if line.partition("=")[0].strip() != key] + [option]
    cfg.write_text("\n".join(lines) + "\n")
