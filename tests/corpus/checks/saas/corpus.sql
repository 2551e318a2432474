-- Checks the sync runs inside its load transaction (format: dbtools/checks.py).

-- check: schema_matches_dev
-- description: same schema fingerprint and applied migrations as dev
-- builtin: schema_matches_dev

-- check: tenants_as_dev
-- description: every tenant of dev, with its billing account
-- expect: = dev
-- expect: > 0
SELECT count(*) FROM app.tenants t JOIN billing.accounts a ON a.id = t.billing_account_id;

-- check: heartbeat_rows_as_dev
-- description: the zero-column table keeps its row count
-- expect: = dev
SELECT count(*) FROM app.heartbeat;

-- check: discounts_kept
-- description: prod's rows of billing."50% off" survive (preserved)
-- expect: > 0
SELECT count(*) FROM billing."50% off";
