-- The seed's success criteria (DATABASE_SYNC.md, "Success Criteria") as declarative checks.
-- `dbtools check --target prod` runs them; sync-data runs them inside its load transaction
-- and commits only if every one passes. Format: see dbtools/checks.py.
--   -- check: <name>            starts a check
--   -- description: <text>      one line for people
--   -- expect: [rows] OP RHS    OP = != > >= < <=; RHS a number, true/false, 'text' or dev
--   -- builtin: <name>          a check computed by dbtools itself (schema_matches_dev)
--   -- list: <name>             starts a listing: `dbtools check --list <name>` prints its rows
-- "dev" runs the same query on dev (read-only) and compares with its result.
-- A check's (or list's) query is exactly one read-only SELECT, VALUES or TABLE statement (no
-- INTO, no INSERT/UPDATE/DELETE in a WITH, no FOR UPDATE, no second statement): dbtools
-- refuses the file otherwise, and runs each query read-only under a savepoint it rolls back.
-- What `dbtools verify` shows of each side is in summary.sql, in the same format.

-- check: builders_visible
-- description: all builders visible in the marketplace (searchable), as many as in dev
-- expect: = dev
-- expect: > 0
SELECT count(*) FROM "BuilderProfile" WHERE searchable;

-- check: liam_com
-- description: exactly one liam@buildappswith.com account
-- expect: = 1
SELECT count(*) FROM "User" WHERE lower(email) = 'liam@buildappswith.com';

-- check: no_buildappswith_ai
-- description: no @buildappswith.ai address left (prod uses .com, never .ai)
-- expect: = 0
SELECT count(*) FROM "User" WHERE lower(email) LIKE '%@buildappswith.ai';

-- check: demo_builders_flagged
-- description: demo builders flagged (User.isDemo) and as many as in dev
-- expect: = dev
-- expect: > 0
SELECT count(*)
FROM "BuilderProfile" b JOIN "User" u ON u.id = b."userId"
WHERE u."isDemo";

-- check: demo_flags_match_dev
-- description: the same accounts carry the demo flag as in dev
-- expect: = dev
SELECT coalesce(string_agg(email, ',' ORDER BY email), '') FROM "User" WHERE "isDemo";

-- check: schema_matches_dev
-- description: no schema mismatch: same fingerprint and same applied migrations as dev
-- builtin: schema_matches_dev

-- check: marketplace_listing
-- description: the marketplace listing query runs and returns rows (9 per page)
-- expect: rows > 0
SELECT b.id, b."displayName", b.headline, b.featured, b."validationTier", b.rating,
       u.id AS "userId", u.name, u.image, u."isDemo"
FROM "BuilderProfile" b
JOIN "User" u ON u.id = b."userId"
WHERE b.searchable
ORDER BY b.featured DESC, b."validationTier" DESC, b.rating DESC NULLS LAST
LIMIT 9;

-- list: builders
-- description: every builder profile (name, email, flags), in listing order
SELECT coalesce(b."displayName", u.name) AS name, u.email, b.searchable,
       u."isDemo" AS demo, b.featured, b.headline
FROM "BuilderProfile" b JOIN "User" u ON u.id = b."userId"
ORDER BY b.featured DESC, b."validationTier" DESC, b.rating DESC NULLS LAST, u.email;
