"""The snapshot format: manifest, layout, stamps, checksums, atomic publish and verification.

A snapshot is a directory `<snapshot_dir>/<env>/<UTC stamp>/` holding one Parquet file (or a
folder of part files) per table, `schema.sql` and `manifest.json`. The manifest is written
last and carries a checksum of its own content, so a directory without one is an incomplete
run and an edited manifest is told apart from a good one. Snapshots are built in a `.tmp-`
sibling directory and renamed into place only once complete and verified: a rename within
one filesystem is atomic, so a reader never sees half a snapshot under a real stamp.

One module per part: `layout` (names, stamps, modes, file checksums), `fields` (the
manifest's field validators), `manifest` (the Manifest, its self-checksum, read and write),
`integrity` (whether a directory is what its manifest says), `lifecycle` (temp directory,
fsync, atomic publish, discard). Callers import the package as `fmt`.
"""

from dbtools.snapshot.format.fields import check_relative_name
from dbtools.snapshot.format.integrity import file_problem, on_read, table_files, verify_dir
from dbtools.snapshot.format.layout import (
    CLOCK_SKEW,
    DIR_MODE,
    FILE_MODE,
    FORMAT_VERSION,
    MANIFEST,
    SCHEMA_SQL,
    STAMP_FORMAT,
    TMP_PREFIX,
    dir_bytes,
    exposure,
    is_stamp,
    parse_stamp,
    sha256_file,
    snapshot_dirs,
    stamp_of,
    utc_now,
)
from dbtools.snapshot.format.lifecycle import (
    discard,
    fsync_tree,
    make_private,
    make_private_dir,
    new_temp_dir,
    pid_alive,
    publish,
    remove_tree,
    temp_dir_pid,
)
from dbtools.snapshot.format.manifest import (
    ROLLBACK_REASON,
    Manifest,
    TableEntry,
    manifest_sha256,
    read_manifest,
    same_source,
    source_of,
    write_manifest,
)

__all__ = [
    "CLOCK_SKEW",
    "DIR_MODE",
    "FILE_MODE",
    "FORMAT_VERSION",
    "MANIFEST",
    "ROLLBACK_REASON",
    "SCHEMA_SQL",
    "STAMP_FORMAT",
    "TMP_PREFIX",
    "Manifest",
    "TableEntry",
    "check_relative_name",
    "dir_bytes",
    "discard",
    "exposure",
    "file_problem",
    "fsync_tree",
    "is_stamp",
    "make_private",
    "make_private_dir",
    "manifest_sha256",
    "new_temp_dir",
    "on_read",
    "parse_stamp",
    "pid_alive",
    "publish",
    "read_manifest",
    "remove_tree",
    "same_source",
    "sha256_file",
    "snapshot_dirs",
    "source_of",
    "stamp_of",
    "table_files",
    "temp_dir_pid",
    "utc_now",
    "verify_dir",
    "write_manifest",
]
