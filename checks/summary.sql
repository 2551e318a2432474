-- What `dbtools verify` shows of each side besides identity, row counts and migrations: the
-- facts the seed's verify scripts printed, as data. One line per entry, "<description>:
-- <value>"; `dbtools verify --json` has them as .sides.<dev|prod>.summary.<name>.
--   -- summary: <name>          starts an entry (a single word: its key in --json)
--   -- description: <text>      the label verify prints (default: the name)
-- The query returns one value (one row of one column) and follows the rules of a check (see
-- checks/marketplace.sql): one read-only query, refused when the file is loaded otherwise
-- (exit 2), run read-only under a savepoint that is rolled back. On a side whose schema
-- lacks a table or column the query names (an older migration), the value is n/a.

-- summary: users
-- description: users
SELECT count(*) FROM "User";

-- summary: builder_profiles
-- description: builder profiles
SELECT count(*) FROM "BuilderProfile";

-- summary: searchable_builders
-- description: searchable builders
SELECT count(*) FROM "BuilderProfile" WHERE searchable;

-- summary: demo_users
-- description: demo users
SELECT count(*) FROM "User" WHERE "isDemo";

-- summary: liam_com
-- description: liam@buildappswith.com
SELECT CASE WHEN count(*) > 0 THEN 'present' ELSE 'MISSING' END
FROM "User" WHERE lower(email) = 'liam@buildappswith.com';

-- summary: buildappswith_ai_addresses
-- description: @buildappswith.ai addresses
SELECT count(*) FROM "User" WHERE lower(email) LIKE '%@buildappswith.ai';
