"""The yoyo wrapper: status, apply, rollback, new, mark, unlock; file checksums and drift.

One module per thing it holds: `files` (a directory's migrations, a file's statements,
checksum and rollback file, `new`), `state` (what a database records: applied ids, checksums,
its status against the files, the drift refusal), `session` (yoyo's backend on dbtools'
parsed URL parts, with the guard connection), `lock` (dbtools' run lock and yoyo's lock row),
`plan` (what apply and rollback would run, and the dry run), `run` (one migration and its
bookkeeping per transaction) and `operations` (apply, rollback, mark, unlock under the safety
rules and the lock; `apply_all` for test and demo databases). This package exports the
public API; callers import it as `dbtools.migrations`.
"""

from dbtools.migrations.files import (
    ID_PATTERN,
    NewResult,
    file_checksum,
    migration_ids,
    new,
    rollback_statements,
)
from dbtools.migrations.lock import LOCK_NAME, LOCK_TABLE, ForeignLock, clear_stale_lock
from dbtools.migrations.operations import (
    UnlockResult,
    apply,
    apply_all,
    mark,
    rollback,
    unlock,
)
from dbtools.migrations.plan import ApplyResult, MigrationStep
from dbtools.migrations.state import (
    CHECKSUM_TABLE,
    MIGRATION_TABLE,
    MigrationStatus,
    applied_ids,
    assert_no_drift,
    drift_error,
    recorded_checksums,
    schema_state,
    status,
    status_of,
    status_summary,
)

__all__ = [
    "CHECKSUM_TABLE",
    "ID_PATTERN",
    "LOCK_NAME",
    "LOCK_TABLE",
    "MIGRATION_TABLE",
    "ApplyResult",
    "ForeignLock",
    "MigrationStatus",
    "MigrationStep",
    "NewResult",
    "UnlockResult",
    "applied_ids",
    "apply",
    "apply_all",
    "assert_no_drift",
    "clear_stale_lock",
    "drift_error",
    "file_checksum",
    "mark",
    "migration_ids",
    "new",
    "recorded_checksums",
    "rollback",
    "rollback_statements",
    "schema_state",
    "status",
    "status_of",
    "status_summary",
    "unlock",
]
