"""A table name in setup.cfg that matches no table is a refusal, never a silent no-op.

A misspelt `preserved_tables` entry ("Acount") used to preserve nothing: sync-data then
replaced prod's login rows with dev's. A misspelt `excluded_tables` entry synced the table
it meant to leave alone. Both now stop the sync before the lock and the backup (exit 2,
naming the entry and the closest real name) and are a problem in `dbtools verify`.
"""

from __future__ import annotations

import json

import pytest

from support.pipeline import migrate, prod_backups, seed_dev, seed_stale_prod, state
from support.project import Project


@pytest.fixture
def synced(project: Project) -> Project:
    migrate(project.dev_url)
    migrate(project.prod_url)
    seed_dev(project.dev_url)
    seed_stale_prod(project.prod_url)
    return project


def _set(project: Project, key: str, value: str) -> None:
    cfg = project.root / "setup.cfg"
    lines = [ln for ln in cfg.read_text().splitlines() if not ln.startswith(f"{key} =")]
    cfg.write_text("\n".join([*lines, f"{key} = {value}"]) + "\n")


@pytest.mark.parametrize(
    ("key", "value", "shown", "close"),
    [
        ("preserved_tables", "Acount, Session, VerificationToken", "public.Acount", "Account"),
        ("preserved_tables", "account, Session", "public.account", "Account"),
        ("excluded_tables", "public.Sesion", "public.Sesion", "Session"),
        ("excluded_tables", "nosuchschema.User", "nosuchschema.User", None),
    ],
)
@pytest.mark.parametrize("command", ["sync-data", "full-sync"])
def test_a_name_matching_no_table_stops_the_sync_before_anything(
    synced: Project, key: str, value: str, shown: str, close: str | None, command: str
) -> None:
    _set(synced, key, value)
    before = state(synced.prod_url)
    result = synced.invoke(command, "--yes")
    assert result.exit_code == 2, result.output
    assert f"{key}: '{shown}' matches no table in dev or prod" in result.output
    if close:
        assert f"(did you mean 'public.{close}'?)" in result.output
    assert "Traceback" not in result.output
    assert state(synced.prod_url) == before
    assert prod_backups(synced) == []


def test_verify_names_the_entry_that_matches_no_table(synced: Project) -> None:
    _set(synced, "preserved_tables", "Acount")
    result = synced.invoke("verify", "--json")
    assert result.exit_code == 2, result.output  # a setup.cfg problem, like a bad URL
    problems = json.loads(result.stdout)["problems"]
    assert problems == [
        "setup.cfg [dbtools] preserved_tables: 'public.Acount' matches no table in dev or prod "
        "(did you mean 'public.Account'?)"
    ]


def test_names_that_match_sync_as_before(synced: Project) -> None:
    _set(synced, "preserved_tables", "Account, public.Session, VerificationToken")
    assert synced.invoke("sync-data", "--yes").exit_code == 0
