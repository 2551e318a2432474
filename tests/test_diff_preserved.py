"""`dbtools diff` after a good sync: preserved tables differ by design (issue #15, item 4).

Prod keeps its own rows in setup.cfg's preserved_tables through every sync, so their row
counts are shown, marked as expected, and do not fail the diff; any other difference still
exits 1.
"""

from __future__ import annotations

import json
import re

import pytest

from support.db import execute
from support.pipeline import (
    INSERT_ACCOUNT,
    INSERT_USER,
    OLD,
    migrate,
    seed_dev,
    seed_stale_prod,
)
from support.project import Project, configure

EXPECTED = "expected (preserved: prod keeps its rows)"


@pytest.fixture
def synced(project: Project) -> Project:
    """The demo's starting point, prod holding one more login than dev, then a full sync."""
    migrate(project.dev_url)
    migrate(project.prod_url, OLD)
    seed_dev(project.dev_url)
    seed_stale_prod(project.prod_url)
    execute(project.prod_url, INSERT_ACCOUNT, ("acc-prod-2", "liam", "github", "prod-2", "t"))
    done = project.invoke("full-sync", "--yes")
    assert done.exit_code == 0, done.output
    return project


def test_diff_right_after_a_good_sync_exits_0_showing_preserved_tables(synced: Project) -> None:
    result = synced.invoke("diff")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "schema: identical" in out
    assert "row counts: identical apart from preserved tables" in out
    # prod kept its two logins and no session; dev has one of each
    assert re.search(rf"public\.Account\s+1\s+2\s+{re.escape(EXPECTED)}", out), out
    assert re.search(rf"public\.Session\s+1\s+0\s+{re.escape(EXPECTED)}", out), out
    assert out.rstrip().splitlines()[-1] == (
        "dev and prod match (preserved tables keep prod's rows, as expected)"
    )

    data = json.loads(synced.invoke("diff", "--json").output)
    assert data["ok"] is True and data["differs"] is False
    assert data["row_counts"] == {}
    assert data["preserved_row_counts"] == {
        "public.Account": {"dev": 1, "prod": 2},
        "public.Session": {"dev": 1, "prod": 0},
    }
    assert data["expected"] == [
        "public.Account: preserved: prod keeps its rows",
        "public.Session: preserved: prod keeps its rows",
    ]


def test_a_real_difference_beside_preserved_tables_still_exits_1(synced: Project) -> None:
    execute(synced.prod_url, INSERT_USER, ("hand", "Hand", "hand@example.com", False, "{CLIENT}"))
    result = synced.invoke("diff")
    assert result.exit_code == 1, result.output
    assert re.search(r"public\.User\s+\d+\s+\d+\s*$", result.output, re.M), result.output
    assert EXPECTED in result.output  # the preserved tables are still shown, as expected
    assert result.output.rstrip().splitlines()[-1] == "dev and prod differ"
    data = json.loads(synced.invoke("diff", "--json").output)
    assert data["differs"] is True
    assert set(data["row_counts"]) == {"public.User"}
    assert set(data["preserved_row_counts"]) == {"public.Account", "public.Session"}


def test_a_table_not_preserved_is_a_difference_again(synced: Project) -> None:
    """The setting decides: the same counts fail once Session is no longer preserved."""
    configure(synced, "preserved_tables = Account, VerificationToken")
    result = synced.invoke("diff", "--json")
    assert result.exit_code == 1, result.output
    data = json.loads(result.output)
    assert data["row_counts"] == {"public.Session": {"dev": 1, "prod": 0}}
    assert set(data["preserved_row_counts"]) == {"public.Account"}
