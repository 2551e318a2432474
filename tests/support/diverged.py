"""Two databases that start equal and then diverge in known ways: dev gets 3 updates, 2
deletes and 4 inserts in `item`, one update in a table with an awkward name and a composite
key, one more row in a table without a key, and a login the preserved `Account` must not get.
Used by the plan and apply tests."""

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
