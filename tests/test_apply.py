"""`dbtools apply`: exactly the reviewed plan goes into prod, or nothing does.

The plan pins its dev snapshot and prod's per-table content hashes. A plan whose prod moved
since, a plan edited after it was saved, or a swapped snapshot is refused with exit 3 and
prod byte-identical; a committed apply is recorded in prod's history with the plan's id and
row counts, and `rollback` returns to the state before it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import psycopg2
import pytest

from support.db import digests, execute
from support.diverged import public_digests, synced_digests
from support.project import Project, configure


def _saved_plan(project: Project) -> tuple[Path, dict]:
    result = project.invoke("plan", "--save", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    return Path(data["saved"]), data


def _apply(project: Project, path: Path) -> tuple[int, str]:
    result = project.invoke("apply", str(path), "--yes", "--json")
    return result.exit_code, result.output


def test_apply_loads_exactly_the_reviewed_snapshot_and_records_it(diverged: Project) -> None:
    path, plan = _saved_plan(diverged)
    planned_dev = synced_digests(diverged.dev_url)
    prod_account = digests(diverged.prod_url)["public.Account"]
    # dev moves on after the review: apply must not pick that up
    execute(diverged.dev_url, "UPDATE item SET name = 'after the review' WHERE id = 1")

    code, out = _apply(diverged, path)

    assert code == 0, out
    data = json.loads(out)
    assert data["plan_id"] == plan["plan_id"]
    item = next(t for t in data["tables"] if t["table"] == "public.item")
    assert (item["inserted"], item["updated"], item["deleted"]) == (4, 3, 2)
    assert synced_digests(diverged.prod_url) == planned_dev
    assert digests(diverged.prod_url)["public.Account"] == prod_account
    assert execute(diverged.prod_url, "SELECT name FROM item WHERE id = 1") == [("item 1",)]

    listed = diverged.invoke("history", "--json")
    assert listed.exit_code == 0, listed.output
    newest = json.loads(listed.output)["entries"][0]
    assert newest["operation"] == "apply" and newest["plan_id"] == plan["plan_id"]
    assert newest["tables"]["public.item"]["updated"] == 3
    text = diverged.invoke("history")
    assert f"apply      {plan['plan_id'][:12]}  +12 ~4 -9" in text.output, text.output


def test_a_plan_is_refused_once_prod_moved(diverged: Project) -> None:
    path, _ = _saved_plan(diverged)
    execute(diverged.prod_url, "UPDATE same SET v = 'app wrote this' WHERE id = 3")
    before = digests(diverged.prod_url)

    code, out = _apply(diverged, path)

    assert code == 3, out
    error = json.loads(out)["error"]
    assert "prod changed since the plan was computed (public.same changed in prod)" in error
    assert error.endswith("nothing was changed")
    assert digests(diverged.prod_url) == before
    assert json.loads(diverged.invoke("history", "--json").output)["entries"] == []


def test_an_edited_plan_or_a_swapped_snapshot_is_refused(diverged: Project) -> None:
    path, plan = _saved_plan(diverged)
    before = digests(diverged.prod_url)
    body = json.loads(path.read_text())
    body["tables"][0]["inserted"] += 1
    edited = path.with_name("edited.json")
    edited.write_text(json.dumps(body))

    code, out = _apply(diverged, edited)
    assert code == 3, out
    assert "does not match its plan id" in json.loads(out)["error"]

    # another dev snapshot under the plan's path: same name, other content
    other = diverged.invoke("snapshot", "create", "--target", "dev", "--json")
    assert other.exit_code == 0, other.output
    plan_dev = Path(plan["dev"]["path"])
    other_path = Path(json.loads(other.output)["path"])
    (plan_dev / "manifest.json").chmod(0o600)
    (plan_dev / "manifest.json").write_bytes((other_path / "manifest.json").read_bytes())
    code, out = _apply(diverged, path)
    assert code == 3, out
    assert "its dev snapshot" in json.loads(out)["error"]
    assert "does not verify" in json.loads(out)["error"]
    assert digests(diverged.prod_url) == before


def test_rollback_after_a_refused_apply_returns_to_before_the_committed_one(
    diverged: Project,
) -> None:
    original = public_digests(diverged.prod_url)
    path, _ = _saved_plan(diverged)
    assert _apply(diverged, path)[0] == 0
    # a second plan goes stale and is refused: it must not change what rollback does
    stale, _ = _saved_plan(diverged)
    execute(diverged.prod_url, "UPDATE same SET v = 'moved' WHERE id = 1")
    assert _apply(diverged, stale)[0] == 3
    execute(diverged.prod_url, "UPDATE same SET v = 's1' WHERE id = 1")

    result = diverged.invoke("rollback", "--yes", "--json")

    assert result.exit_code == 0, result.output
    assert public_digests(diverged.prod_url) == original


def test_a_plan_is_refused_when_preserved_tables_changed_since(diverged: Project) -> None:
    path, _ = _saved_plan(diverged)
    before = digests(diverged.prod_url)
    configure(diverged, "preserved_tables = ")  # Account was kept in the reviewed plan

    code, out = _apply(diverged, path)

    assert code == 3, out
    error = json.loads(out)["error"]
    assert "preserved_tables changed since the plan was computed" in error
    assert "no longer preserved: public.Account" in error
    assert digests(diverged.prod_url) == before


def _forge(path: Path, edit: Callable[[dict], None]) -> Path:
    """The plan edited and its id recomputed, as someone with write access could."""
    data = json.loads(path.read_text())
    data.pop("plan_id")
    edit(data)
    body = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    data["plan_id"] = hashlib.sha256(body.encode()).hexdigest()
    forged = path.with_name("forged.json")
    forged.write_text(json.dumps(data))
    return forged


def test_a_reader_of_prods_history_does_not_block_the_next_apply(diverged: Project) -> None:
    path, _ = _saved_plan(diverged)
    assert _apply(diverged, path)[0] == 0  # creates _dbtools.history
    execute(diverged.dev_url, "UPDATE item SET name = 'second' WHERE id = 2")
    second, _ = _saved_plan(diverged)
    reader = psycopg2.connect(diverged.prod_url)
    try:
        with reader.cursor() as cur:  # an open transaction that has read the history
            cur.execute("SELECT count(*) FROM _dbtools.history")
        code, out = _apply(diverged, second)
    finally:
        reader.close()
    assert code == 0, out


def test_a_forged_plan_that_hides_a_table_is_refused(diverged: Project) -> None:
    path, _ = _saved_plan(diverged)
    execute(diverged.prod_url, "INSERT INTO same VALUES (999, 'an app write after the plan')")
    before = digests(diverged.prod_url)

    def hide(d: dict) -> None:
        d["tables_only_in_prod"] = [t["table"] for t in d["tables"]]
        d["tables"] = []

    code, out = _apply(diverged, _forge(path, hide))

    assert code == 3, out
    assert (
        "does not describe its dev snapshot (public.Account is in the snapshot but not"
        in (json.loads(out)["error"])
    )
    assert digests(diverged.prod_url) == before


def test_a_plan_is_applied_once_not_again_after_its_rollback(diverged: Project) -> None:
    path, _ = _saved_plan(diverged)
    assert _apply(diverged, path)[0] == 0
    assert diverged.invoke("rollback", "--yes").exit_code == 0
    before = digests(diverged.prod_url)

    code, out = _apply(diverged, path)

    assert code == 3, out
    assert "prod's history shows it applied already (history id 1)" in json.loads(out)["error"]
    assert digests(diverged.prod_url) == before


def test_a_sequence_that_moved_in_prod_makes_the_plan_stale(diverged: Project) -> None:
    for url in (diverged.dev_url, diverged.prod_url):
        execute(url, "CREATE TABLE counter (id serial PRIMARY KEY)")
    path, _ = _saved_plan(diverged)
    execute(diverged.prod_url, "SELECT nextval('counter_id_seq') FROM generate_series(1, 5)")

    code, out = _apply(diverged, path)

    assert code == 3, out
    assert "sequence public.counter_id_seq moved in prod" in json.loads(out)["error"]


@pytest.mark.parametrize(
    "content",
    ["[" * 100_000 + "]" * 100_000, '{"plan_id": "x", "dev": {}, "tables": "abc"}', "[1, 2]"],
    ids=["deeply-nested", "wrong-types", "not-an-object"],
)
def test_a_file_that_is_no_plan_is_one_line_exit_2(
    diverged: Project, tmp_path: Path, content: str
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    code, out = _apply(diverged, bad)
    assert code == 2, out
    assert json.loads(out)["error"] == f"cannot read the plan {bad}: " + (
        "not a JSON plan" if content.startswith("[[") else "not a plan saved by dbtools"
    )


def test_a_fifo_is_no_plan(diverged: Project, tmp_path: Path) -> None:
    fifo = tmp_path / "plan.json"
    os.mkfifo(fifo)
    code, out = _apply(diverged, fifo)
    assert code == 2, out
    assert json.loads(out)["error"] == f"cannot read the plan {fifo}: not a regular file"
