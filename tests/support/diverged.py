"""Two databases that start equal and then diverge in known ways: dev gets 3 updates, 2
deletes and 4 inserts in `item`, one update in a table with an awkward name and a composite
key, one more row in a table without a key, and a login the preserved `Account` must not get.
Used by the plan and apply tests."""

from __future__ import annotations

from pathlib import Path

from support.db import digests, execute
from support.project import Project, configure

SCHEMA = """
CREATE TABLE item (id int PRIMARY KEY, name text, price numeric(10,2), tags text[],
                   blob bytea, note text);
CREATE TABLE "Odd #?% na/me" ("k 1" text, "k@2" int, v text, PRIMARY KEY ("k 1", "k@2"));
CREATE TABLE nokey (a int, b text);
CREATE TABLE same (id int PRIMARY KEY, v text);
CREATE TABLE "Account" (id int PRIMARY KEY, email text);
"""

FILL = """
INSERT INTO item SELECT g, 'item ' || g, g * 1.5, ARRAY['t' || g], decode(md5(g::text), 'hex'),
       CASE WHEN g % 2 = 0 THEN 'even' END
FROM generate_series(1, 50) g;
INSERT INTO "Odd #?% na/me" SELECT 'ключ ' || g, g, 'v' || g FROM generate_series(1, 5) g;
INSERT INTO nokey SELECT g, 'b' || g FROM generate_series(1, 7) g;
INSERT INTO same SELECT g, 's' || g FROM generate_series(1, 10) g;
INSERT INTO "Account" SELECT g, 'u' || g || '@x' FROM generate_series(1, 3) g;
"""

DEV_CHANGES = """
UPDATE item SET name = 'renamed' WHERE id = 10;
UPDATE item SET price = 999.99, note = 'changed' WHERE id = 20;
UPDATE item SET note = NULL WHERE id = 30;
DELETE FROM item WHERE id IN (5, 6);
INSERT INTO item (id, name) VALUES (51, 'n51'), (52, 'n52'), (53, 'n53'), (54, 'n54');
UPDATE "Odd #?% na/me" SET v = 'changed' WHERE "k@2" = 2;
INSERT INTO nokey VALUES (8, 'b8');
INSERT INTO "Account" VALUES (99, 'dev-only@x');
"""


def diverge(project: Project, checks: Path) -> Project:
    """Both databases get the tables and rows, then dev diverges; `checks` (a new folder)
    gets the one check of these tables (they are not the marketplace's)."""
    checks.mkdir()
    (checks / "items.sql").write_text(
        "-- check: items_present\n-- description: the items arrived\n-- expect: > 0\n"
        "SELECT count(*) FROM item;\n"
    )
    configure(project, f"checks_dir = {checks}\npreserved_tables = Account")
    for url in (project.dev_url, project.prod_url):
        execute(url, SCHEMA)
        execute(url, FILL)
    execute(project.dev_url, DEV_CHANGES)
    return project


def public_digests(url: str) -> dict:
    """Digests of the application's tables (not dbtools' own history)."""
    return {k: v for k, v in digests(url).items() if k.startswith("public.")}


def synced_digests(url: str) -> dict:
    """Digests of the tables a sync replaces (the preserved Account keeps prod's rows)."""
    return {k: v for k, v in public_digests(url).items() if k != "public.Account"}
