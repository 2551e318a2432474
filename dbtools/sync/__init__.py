"""The pipelines: backup, sync-data, full-sync, apply, rollback, and the dry-run preview.

One module per thing it holds: `session` (the guarded write session and its backup),
`refusals` (what every pipeline refuses before a backup), `provenance` (where a snapshot
comes from, what a restore into prod may touch), `data` (sync-data), `apply` (a reviewed
plan of `dbtools plan`, refused when prod moved since), `steps` (full-sync),
`undo` (rollback, restore into prod, what retention keeps for rollback), `schema`
(sync-schema and migrate --target prod under the guard), `dryrun` (the preview a dry run
prints) and `results`.
This package exports the public API; callers import it as `dbtools.sync`.

One rule holds for every path that writes prod, and it lives in ONE function,
`guarded_prod_write`: open a direct (non-pooler) connection to prod, check the safety rules
(expected name, prod distinct from dev), hold the "sync" advisory lock on that connection
for the whole run (a second sync is refused; the lock dies with the session, so a killed run
leaves none behind), and take a backup snapshot of prod and verify it before anything is
written. A failure anywhere in there means prod was not touched.

sync-data, full-sync, restore --target prod and rollback are each ONE transaction on that
connection. Before any lock, refuse what makes every load fail or leave prod wrong (a foreign
key from a table that is not synced, a default drawing from a sequence no snapshot holds);
then lock the synced tables IN EXCLUSIVE MODE (application writes wait, reads go on),
check every refusal (drift, schema, source, coverage, migrations that cannot run in a
transaction) so a refusal costs not even a backup, back up (the backup's own connections need
only ACCESS SHARE and see every committed write), run migrations in the transaction
(migrate_txn), load, check, record the write in prod's history (history module), COMMIT.
Killed anywhere before COMMIT, PostgreSQL rolls all of it back; after COMMIT, prod's history
names the backup `rollback` returns to. No committed application write can land between the
backup and the load, so none is lost.

A snapshot goes into prod by restore or rollback only if it is known to be of this prod (its
manifest's source, or prod's history listing it as one of its backups), and only if the
backup taken first covers every schema, table and sequence the load replaces.

Dev is only ever read: the connections opened here to dev are read-only sessions, and the
dev snapshot is read in a READ ONLY transaction by the snapshot module.

Preserved tables (settings.preserved_tables: e.g. an application's login and session tables)
keep prod's rows through sync-data. Their foreign keys stay valid because the loader
re-inserts the preserved rows after dev's parents are loaded, inside the same transaction,
with the constraints in force: a preserved row whose parent does not exist in dev's data
fails the load, which rolls back completely and names the orphans. The cure is then to keep
that parent row in dev, or to delete the stale preserved row in prod on purpose.
"""

from dbtools.sync.apply import apply_plan
from dbtools.sync.data import sync_data
from dbtools.sync.dryrun import preview
from dbtools.sync.results import (
    BackupResult,
    FullSyncResult,
    Preview,
    ProdRestoreResult,
    Step,
    SyncResult,
    TableChange,
)
from dbtools.sync.schema import SchemaSyncRun, migrate_prod, sync_schema
from dbtools.sync.session import Guard, backup, guarded_prod_write
from dbtools.sync.steps import STEPS, full_sync
from dbtools.sync.undo import prune, restore_prod, rollback, rollback_target

__all__ = [
    "STEPS",
    "BackupResult",
    "FullSyncResult",
    "Guard",
    "Preview",
    "ProdRestoreResult",
    "SchemaSyncRun",
    "Step",
    "SyncResult",
    "TableChange",
    "apply_plan",
    "backup",
    "full_sync",
    "guarded_prod_write",
    "migrate_prod",
    "preview",
    "prune",
    "restore_prod",
    "rollback",
    "rollback_target",
    "sync_data",
    "sync_schema",
]
