"""`dbtools plan`: exactly what a sync would change in prod, row by row, writing nothing.

Dev and prod start equal; dev then gets 3 updates, 2 deletes and 4 inserts in one table. The
plan must report exactly those, with the changed columns and sample keys, leave both
databases byte-identical, and say plainly what it cannot compare row by row.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from dbtools.cli import main

from support.db import digests, execute
from support.diverged import DEV_CHANGES, FILL, SCHEMA
from support.project import Project, configure


@pytest.fixture
def diverged(project: Project) -> Project:
    configure(project, "preserved_tables = Account")
    for url in (project.dev_url, project.prod_url):
        execute(url, SCHEMA)
        execute(url, FILL)
    execute(project.dev_url, DEV_CHANGES)
    return project


def _plan(project: Project, *args: str) -> dict:
    result = project.invoke("plan", "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def _table(plan: dict, key: str) -> dict:
    return next(t for t in plan["tables"] if t["table"] == key)


def test_plan_reports_exactly_the_rows_and_columns_that_differ(diverged: Project) -> None:
    before = digests(diverged.dev_url), digests(diverged.prod_url)

    plan = _plan(diverged)

    item = _table(plan, "public.item")
    assert item["mode"] == "by-key" and item["key"] == ["id"]
    assert (item["inserted"], item["updated"], item["deleted"], item["unchanged"]) == (4, 3, 2, 45)
    assert item["changed_columns"] == {"name": 1, "price": 1, "note": 2}
    assert item["samples"] == {
        "inserted": [{"id": 51}, {"id": 52}, {"id": 53}],
        "updated": [{"id": 10}, {"id": 20}, {"id": 30}],
        "deleted": [{"id": 5}, {"id": 6}],
    }
    odd = _table(plan, "public.Odd #?% na/me")
    assert (odd["inserted"], odd["updated"], odd["deleted"]) == (0, 1, 0)
    assert odd["changed_columns"] == {"v": 1}
    assert odd["samples"]["updated"] == [{"k 1": "ключ 2", "k@2": 2}]
    nokey = _table(plan, "public.nokey")
    assert nokey["mode"] == "replaced whole" and "no primary key" in nokey["note"]
    assert (nokey["inserted"], nokey["deleted"]) == (8, 7)
    assert _table(plan, "public.same")["mode"] == "unchanged"
    account = _table(plan, "public.Account")
    assert account["mode"] == "preserved" and account["unchanged"] == 3
    assert account["inserted"] == 0  # dev's extra login is never copied
    assert plan["totals"] == {"inserted": 4 + 8, "updated": 3 + 1, "deleted": 2 + 7}
    # computing the plan wrote nothing to either database
    assert (digests(diverged.dev_url), digests(diverged.prod_url)) == before


def test_text_and_markdown_show_the_same_counts(diverged: Project) -> None:
    text = diverged.invoke("plan")
    assert text.exit_code == 0, text.output
    row = next(line for line in text.output.splitlines() if line.startswith("public.item "))
    assert row.split()[:6] == ["public.item", "by-key", "4", "3", "2", "45"]
    assert "public.item deleted: 5, 6" in text.output
    assert "in all: 12 inserted, 4 updated, 9 deleted" in text.output

    md = diverged.invoke("plan", "--markdown")
    assert md.exit_code == 0, md.output
    assert "| public.item | by-key | 4 | 3 | 2 | 45 | name (1), note (2), price (1) |" in md.output
    assert "| public.Odd #?% na/me | by-key | 0 | 1 | 0 | 4 | v (1) |" in md.output


def test_saved_plan_is_private_and_named_by_its_content(diverged: Project) -> None:
    plan = _plan(diverged, "--save")
    saved = Path(plan["saved"])
    assert saved.parent == diverged.snapshot_dir / "plans"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert stat.S_IMODE(saved.parent.stat().st_mode) == 0o700
    body = json.loads(saved.read_text())
    assert body["plan_id"] == plan["plan_id"] and saved.name.endswith(
        plan["plan_id"][:12] + ".json"
    )
    assert body["tables"] == plan["tables"]

    # the same two snapshots give the same plan, offline
    again = _plan(
        diverged, "--dev-snapshot", plan["dev"]["path"], "--prod-snapshot", plan["prod"]["path"]
    )
    assert again["plan_id"] == plan["plan_id"]
    # named as every command names snapshots
    latest = _plan(diverged, "--dev-snapshot", "dev:latest", "--prod-snapshot", "prod:latest")
    assert latest["plan_id"] == plan["plan_id"]


def test_swapped_snapshots_or_one_database_twice_are_refused(diverged: Project) -> None:
    plan = _plan(diverged)
    dev, prod = plan["dev"]["path"], plan["prod"]["path"]
    swapped = diverged.invoke("plan", "--dev-snapshot", prod, "--prod-snapshot", dev)
    assert swapped.exit_code == 2
    assert swapped.output.splitlines()[0] == (
        f"error: the dev snapshot {prod} is a snapshot of prod, not of dev"
    )
    missing = diverged.invoke("plan", "--dev-snapshot", dev + "-x", "--prod-snapshot", prod)
    assert missing.exit_code == 2
    assert missing.output.splitlines()[0].startswith(f"error: snapshot {dev}-x does not exist")

    env = {**diverged.env, "DEV_DATABASE_URL": diverged.prod_url}
    configure(diverged, f"dev_database = {diverged.prod_name}")
    same = CliRunner().invoke(main, ["plan"], env=env)
    assert same.exit_code == 3, same.output
    assert "dev and prod are the same database" in same.output


def test_half_given_or_tampered_inputs_get_one_line(diverged: Project) -> None:
    plan = _plan(diverged)
    half = diverged.invoke("plan", "--dev-snapshot", plan["dev"]["path"])
    assert half.exit_code == 2
    assert half.output.strip().splitlines() == [
        "error: give both --dev-snapshot and --prod-snapshot, or neither"
    ]

    prod = Path(plan["prod"]["path"])
    victim = next(prod.glob("public.item*.parquet"))
    victim.chmod(0o600)
    victim.write_bytes(victim.read_bytes()[:-20])
    tampered = diverged.invoke(
        "plan", "--dev-snapshot", plan["dev"]["path"], "--prod-snapshot", str(prod)
    )
    assert tampered.exit_code == 1, tampered.output
    lines = tampered.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: the prod snapshot ")
    assert "does not verify" in lines[0] and "Traceback" not in tampered.output


def test_plan_of_the_marketplace_matches_every_table_on_its_key(project: Project) -> None:
    from support.pipeline import migrate, seed_dev, seed_stale_prod

    migrate(project.dev_url)
    migrate(project.prod_url)
    seed_dev(project.dev_url, builders=20)
    seed_stale_prod(project.prod_url)
    dev_counts = {k: v[0] for k, v in digests(project.dev_url).items()}

    plan = _plan(project)

    for t in plan["tables"]:
        assert t["mode"] in ("by-key", "unchanged", "preserved"), t
        if t["mode"] != "preserved":  # what prod holds after the load is dev's rows
            assert t["dev_rows"] == t["inserted"] + t["updated"] + t["unchanged"], t
            assert t["prod_rows"] == t["updated"] + t["deleted"] + t["unchanged"], t
            assert t["dev_rows"] == dev_counts[t["table"]], t
    assert plan["totals"]["inserted"] > 0


def test_a_misspelt_preserved_table_is_refused_as_the_sync_would(diverged: Project) -> None:
    configure(diverged, "preserved_tables = account")
    result = diverged.invoke("plan")
    assert result.exit_code == 2
    assert result.output.splitlines()[0] == (
        "error: setup.cfg [dbtools] preserved_tables: 'public.account' matches no table in dev "
        "or prod (did you mean 'public.Account'?)"
    )


def test_columns_differing_only_in_case_and_marker_like_names_are_compared_apart(
    project: Project,
) -> None:
    """DuckDB folds identifiers' case: "v" and "V" must still be two columns, and a user
    column named like the join's markers must not be taken for one."""
    configure(project, "preserved_tables = ")
    ddl = (
        'CREATE TABLE c (id int PRIMARY KEY, "v" int, "V" int, "ID" int, '
        '"__dbtools_in_dev" int, "__dbtools_in_prod" int)'
    )
    for url in (project.dev_url, project.prod_url):
        execute(url, ddl)
    execute(project.dev_url, "INSERT INTO c VALUES (1, 1, 1, 7, 1, 1), (2, 2, 2, 2, NULL, 2)")
    execute(project.prod_url, "INSERT INTO c VALUES (1, 1, 100, 7, 1, 1), (2, 2, 2, 5, 9, 2)")

    c = _table(_plan(project), "public.c")

    assert (c["inserted"], c["updated"], c["deleted"]) == (0, 2, 0)
    assert c["changed_columns"] == {"V": 1, "ID": 1, "__dbtools_in_dev": 1}
    assert c["samples"]["updated"] == [{"id": 1}, {"id": 2}]


def test_float_keys_stay_valid_json(project: Project) -> None:
    configure(project, "preserved_tables = ")
    for url in (project.dev_url, project.prod_url):
        execute(url, "CREATE TABLE f (k float8 PRIMARY KEY, v int)")
    execute(project.dev_url, "INSERT INTO f VALUES ('NaN', 1), ('Infinity', 2)")
    result = project.invoke("plan", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output, parse_constant=lambda c: pytest.fail(f"non-JSON {c}"))
    assert _table(data, "public.f")["samples"]["inserted"] == [{"k": "Infinity"}, {"k": "NaN"}]


def test_a_table_name_cannot_forge_lines_of_the_review(project: Project) -> None:
    configure(project, "preserved_tables = ")
    evil = "evil\n```\n</details>\n\n# All clear: 0 changes\n<!--"
    quoted = '"' + evil.replace('"', '""') + '"'
    for url in (project.dev_url, project.prod_url):
        execute(url, f"CREATE TABLE {quoted} (id int PRIMARY KEY)")
    execute(project.dev_url, f"INSERT INTO {quoted} VALUES (1)")

    md = project.invoke("plan", "--markdown")
    text = project.invoke("plan")

    assert md.exit_code == 0 and text.exit_code == 0, md.output + text.output
    assert "# All clear" not in [line.strip() for line in md.output.splitlines()]
    lines = md.output.splitlines()
    fence = next(line for line in lines if set(line) == {"`"})
    assert len(fence) > 3  # longer than the name's run of three backticks
    opened, closed = lines.index(fence), len(lines) - 1 - lines[::-1].index(fence)
    outside = lines[:opened] + lines[closed + 1 :]
    assert not any("<!--" in line or line.startswith("# ") for line in outside), outside
    assert "| public.evil\\n\\`\\`\\`\\n&lt;/details&gt;" in md.output  # the cell, escaped
    assert not any(line.startswith("# All clear") for line in text.output.splitlines())
    assert "public.evil\\n```\\n</details>\\n\\n# All clear: 0 changes\\n<!--" in text.output
