-- Checks the sync runs inside its load transaction (format: dbtools/checks.py).

-- check: schema_matches_dev
-- description: same schema fingerprint and applied migrations as dev
-- builtin: schema_matches_dev

-- check: bytes_as_dev
-- description: every byte of dev's assets
-- expect: = dev
-- expect: > 0
SELECT sum(byte_size) FROM assets;

-- check: folder_tree_as_dev
-- description: the folder tree, parent by parent
-- expect: = dev
SELECT count(*) FROM folders f JOIN folders p ON p.id = f.parent_id;
