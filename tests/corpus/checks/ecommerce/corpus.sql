-- Checks the sync runs inside its load transaction (format: dbtools/checks.py).

-- check: schema_matches_dev
-- description: same schema fingerprint and applied migrations as dev
-- builtin: schema_matches_dev

-- check: orders_as_dev
-- description: every order of dev, across all partitions
-- expect: = dev
-- expect: > 0
SELECT count(*) FROM orders;

-- check: revenue_as_dev
-- description: the generated totals add up as in dev
-- expect: = dev
SELECT sum(total)::text FROM orders;

-- check: logins_kept
-- description: prod's customer sessions survive (preserved)
-- expect: > 0
SELECT count(*) FROM customer_sessions;
