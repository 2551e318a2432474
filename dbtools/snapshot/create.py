"""`snapshot create` / `backup`: every table of a database, read in one consistent view.

One coordinator connection opens a REPEATABLE READ READ ONLY transaction, exports its
snapshot (pg_export_snapshot) and takes ACCESS SHARE locks on every table so no DDL can
change them while they are read. Worker connections import that snapshot (SET TRANSACTION
SNAPSHOT, as pg_dump -j does) and export tables in parallel; every file therefore shows the
database at one instant. The result is built in a temporary directory, verified, and only
then renamed to its stamp.

The coordinator runs in autocommit mode with an explicit BEGIN: catalog helpers end their
work with `conn.rollback()` when not in autocommit mode, which would end the exported
snapshot; in autocommit mode psycopg2 makes those calls no-ops and our transaction lives on.
"""

from __future__ import annotations

import contextlib
import queue
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.errors
import psycopg2.extensions

from dbtools import __version__, catalog, db, faults, interrupt, migrations
from dbtools.config import Settings, redact
from dbtools.db import Conn, Progress
from dbtools.errors import DbtoolsError, SnapshotError
from dbtools.progress import phase, table_task
from dbtools.snapshot import dedup, encryption, store, types
from dbtools.snapshot import format as fmt
from dbtools.snapshot.export import TableExport
from dbtools.snapshot.parquet_files import Dest
from dbtools.snapshot.restore import lock_tables
from dbtools.snapshot.upload import RemoteBuild


@dataclass
class SnapshotResult:
    path: Path
    env: str
    tables: int
    rows: int
    bytes: int
    verified: bool
    manifest: fmt.Manifest
    notes: list[str] = field(default_factory=list)
    # Tables whose files were linked from the previous snapshot (snapshot.dedup), and their
    # bytes: what this snapshot did not write.
    reused: list[str] = field(default_factory=list)
    bytes_reused: int = 0
    # The xmin of the snapshot it was read in: a row whose xmin does not precede it may be
    # newer than the snapshot (sync.delta proves what it overwrites is not).
    xmin: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": store.shown(self.path),
            "env": self.env,
            "database": self.manifest.database,
            "created_at": self.manifest.created_at,
            "tables": self.tables,
            "rows": self.rows,
            "bytes": self.bytes,
            "verified": self.verified,
            "migration_head": self.manifest.migration_head,
            "schema_fingerprint": self.manifest.schema_fingerprint,
            "excluded_tables": self.manifest.excluded_tables,
            "notes": self.notes,
            "bytes_written": self.bytes - self.bytes_reused,
            "bytes_reused": self.bytes_reused,
            "tables_reused": self.reused,
        }


def applied_migrations(conn: Conn) -> list[str]:
    """Applied migration ids, or [] where yoyo's table is absent."""
    try:
        with db.savepoint(conn, "dbtools_migrations"):
            return [str(i) for i in migrations.applied_ids(conn)]
    except psycopg2.Error:
        return []  # a database never migrated has no yoyo table: no applied migrations


def _bookkeeping_present(conn: Conn, schemas: list[str]) -> list[str]:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT schemaname || '.' || tablename FROM pg_tables "
            "WHERE schemaname = ANY(%s) AND tablename = ANY(%s) ORDER BY 1",
            (schemas, sorted(catalog.BOOKKEEPING_TABLES)),
        )
        return [r[0] for r in cur.fetchall()]


def _schema_sql(
    t: db.Target, snapshot_id: str, schemas: list[str], objects: dict[str, str], lock_timeout: float
) -> str:
    """The schema as DDL: pg_dump --schema-only on our exported snapshot where possible."""
    # One URL parser for every connection (db.subprocess_target): the password goes to
    # pg_dump through its environment, never its command line (other local users can read
    # argv), and a database name holding '#', '?' or '%' reaches the same database.
    conninfo, env = db.subprocess_target(t)
    args = [
        "pg_dump",
        "--schema-only",
        "--no-owner",
        "--no-privileges",
        f"--snapshot={snapshot_id}",
        # Never queue behind another session's lock request while our snapshot holds
        # ACCESS SHARE: app queries would queue behind both.
        f"--lock-wait-timeout={max(1, int(lock_timeout * 1000))}",
    ]
    args += [f"--schema={s}" for s in schemas]
    try:
        done = subprocess.run(
            [*args, "--dbname", conninfo], env=env, capture_output=True, text=True, timeout=300
        )
        if done.returncode == 0 and done.stdout.strip():
            return done.stdout
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
    except (OSError, subprocess.SubprocessError) as exc:
        reason = str(exc)
    lines = [
        f"-- pg_dump could not be used ({redact(reason)});",
        "-- below, every schema object with its definition as the server reported it.",
    ]
    for name, definition in objects.items():
        kind, _, obj = name.partition(" ")
        if kind == "index":
            lines.append(f"{definition};")
        else:
            lines.append(f"-- {kind} {obj}: {definition}")
    return "\n".join(lines) + "\n"


def _owner_key(owned_by: str | None, tables: dict[str, Any], excluded: set[str]) -> str | None:
    """The table key in 'schema.table.column' (names may hold dots: the longest known key)."""
    if not owned_by:
        return None
    known = [k for k in (*tables, *excluded) if owned_by.startswith(k + ".")]
    return max(known, key=len) if known else owned_by.rsplit(".", 1)[0]


def _sequence_entries(
    seqs: list[catalog.SequenceInfo], tables: dict[str, catalog.Table], excluded: set[str]
) -> tuple[dict[str, list[dict[str, Any]]], list[dict[str, Any]]]:
    """Sequences by owning table, and those owned by no snapshotted table."""
    owned: dict[str, list[dict[str, Any]]] = {}
    free: list[dict[str, Any]] = []
    for s in seqs:
        item = {
            "name": s.key,
            "owned_by": s.owned_by,
            "last_value": s.last_value,
            "is_called": s.is_called,
        }
        owner = _owner_key(s.owned_by, tables, excluded)
        if owner in tables:
            owned.setdefault(owner, []).append(item)
        elif owner not in excluded:
            free.append(item)
    return owned, free


class _FirstBatchPause:
    """The `snapshot.export` fault point, taken by the main thread while the first table's
    COPY is open: a worker thread could not be woken from the test's sleep by a signal."""

    def __init__(self) -> None:
        self.wanted = "snapshot.export" in faults.validate()
        self.reached = threading.Event()
        self.released = threading.Event()
        self._taken = False
        self._lock = threading.Lock()

    def callback(self) -> Callable[[], None] | None:
        """For the workers' export_table: the first table with a batch waits for the main
        thread (an empty first table never calls it)."""
        return self._arrive if self.wanted and not self._taken else None

    def _arrive(self) -> None:
        with self._lock:
            if self._taken:
                return
            self._taken = True
        self.reached.set()
        while not self.released.wait(0.1):
            interrupt.raise_if_received()

    def hold(self, threads: list[threading.Thread]) -> None:
        """Main thread: pause once the first batch is out (unless every worker ended)."""
        if not self.wanted:
            return
        try:
            while not self.reached.wait(0.1):
                if not any(th.is_alive() for th in threads):
                    return
            faults.pause("snapshot.export")
        finally:
            self.released.set()


def _export_all(
    t: db.Target,
    settings: Settings,
    snapshot_id: str,
    tables: list[catalog.Table],
    dest: Dest,
    workers: int,
    progress: Progress,
    prev: dedup.Previous | None = None,
    ring: encryption.Keyring | None = None,
) -> dict[str, Any]:
    """Export every table on worker connections that share the coordinator's snapshot; a
    table unchanged since `prev` is linked from it instead (snapshot.dedup).

    A signal cancels the workers' queries (dbtools.interrupt); they stop, and every worker
    thread is joined before this returns or raises, so none outlives the command.
    """
    from dbtools.snapshot import export

    work: queue.Queue[catalog.Table] = queue.Queue()
    for table in tables:
        work.put(table)
    results: dict[str, Any] = {}
    errors: list[BaseException] = []
    lock = threading.Lock()
    pause = _FirstBatchPause()

    def worker() -> None:
        conns: list[psycopg2.extensions.connection] = []
        try:
            # Two connections in the same snapshot: one streams the rows, the other computes
            # the content hash meanwhile, so a table costs max(COPY, hash), not their sum.
            for _ in range(2):
                interrupt.raise_if_received()
                c = db.connect(t, purpose="copy", settings=settings)
                conns.append(c)
                with interrupt.cancel_on_signal(c), c.cursor() as cur:
                    cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    cur.execute("SET TRANSACTION SNAPSHOT %s", (snapshot_id,))
                    # A worker's lock request can queue behind another session's pending
                    # ACCESS EXCLUSIVE request even though the coordinator holds its lock.
                    timeout_ms = max(1, int(settings.lock_timeout_seconds * 1000))
                    cur.execute(f"SET LOCAL lock_timeout = '{timeout_ms}ms'")
            conn, hash_conn = conns
            while not errors:
                interrupt.raise_if_received()
                try:
                    table = work.get_nowait()
                except queue.Empty:
                    return
                with table_task(
                    progress, "exporting", table.key, conn=conn, estimate=(table.schema, table.name)
                ) as task:
                    if prev is not None and (reused := dedup.reuse(conn, table, prev, dest)):
                        with lock:
                            results[table.key] = reused
                        task.done(f"reused {table.key}: unchanged since {prev.path.name}")
                        continue
                    result = export.export_table(
                        conn,
                        table,
                        dest,
                        hash_conn=hash_conn,
                        on_first_batch=pause.callback(),
                        sealing=encryption.table_key(ring) if ring else None,
                    )
                    with lock:
                        results[table.key] = result
                    task.done(f"exported {table.key}: {result.rows:,} rows")
        except BaseException as exc:
            with lock:
                errors.append(exc)
        finally:
            for c in conns:
                c.close()

    count = max(1, min(workers, len(tables)))
    threads = [
        threading.Thread(target=worker, name=f"dbtools-export-{n}", daemon=True)
        for n in range(count)
    ]
    try:
        with phase(progress, f"snapshot of {t.env}", len(tables)):
            for th in threads:
                th.start()
            pause.hold(threads)
            for th in threads:
                th.join()
    except BaseException:
        # Interrupted in the main thread: the workers' queries were cancelled and they see
        # the signal; wait for them so that no connection or thread outlives us.
        pause.released.set()
        with lock:
            errors.append(SnapshotError("export stopped"))
        for th in threads:
            if th.ident is not None:
                th.join()
        raise
    if errors:
        interrupt.raise_if_received()
        exc = errors[0]
        if isinstance(exc, DbtoolsError):
            raise exc
        if isinstance(exc, interrupt.Interrupted):
            raise exc
        if isinstance(exc, psycopg2.Error):
            raise SnapshotError(f"export failed: {db.describe_error(exc)}") from None
        raise SnapshotError(f"export failed: {type(exc).__name__}: {redact(str(exc))}") from None
    return results


def _checksums(
    dest: Dest, ex: TableExport, prev: dedup.Previous | None
) -> tuple[dict[str, str], int, str | None]:
    """A table's files with their sha256, their bytes, and where they are stored (None: in
    the snapshot itself). Uploaded files were hashed as they streamed (upload.HashingSink);
    reused ones in object storage are the previous manifest's entry."""
    if isinstance(dest, RemoteBuild):
        if isinstance(ex, dedup.Reused) and prev is not None:
            entry = prev.manifest.tables[ex.table]
            return dict(entry.files), entry.bytes, ex.stored_in
        files = {rel: dest.sha256(rel) for rel in ex.files}
        return files, sum(dest.size(rel) for rel in ex.files), None
    files = {rel: fmt.sha256_file(dest / rel) for rel in ex.files}
    return files, sum((dest / rel).stat().st_size for rel in ex.files), None


def create_snapshot(
    settings: Settings,
    env: str,
    *,
    progress: Progress = None,
    workers: int = 2,
    reason: str = "manual",
) -> SnapshotResult:
    """Snapshot the env database into settings.snapshot_dir/<env>/<stamp>/ (see module doc).

    `reason` is recorded in the manifest: "manual", or "before <command>" for a backup that a
    prod write takes first.
    """
    with interrupt.outcome(
        f"no snapshot of {env} was written (the partial one was removed); "
        f"{env} was only read, nothing in it changed"
    ):
        return _create(settings, env, progress=progress, workers=workers, reason=reason)


def _create(
    settings: Settings, env: str, *, progress: Progress, workers: int, reason: str
) -> SnapshotResult:
    t = db.target(settings, env)
    env_dir = settings.snapshot_dir / env
    # Encryption configured but unusable fails here, before anything is read or written.
    ring = encryption.for_writing()
    # An archive in object storage: the snapshot is streamed into the bucket (upload.py).
    remote = store.remote_for(settings.snapshot_dir)
    conn = db.connect(t, purpose="copy", settings=settings, autocommit=True)
    temp: Path | None = None
    build: RemoteBuild | None = None
    cancel = contextlib.ExitStack()
    try:
        # A signal cancels our lock waits and catalog reads at once.
        cancel.enter_context(interrupt.cancel_on_signal(conn))
        schemas = list(settings.schemas)
        with conn.cursor() as cur:
            cur.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            cur.execute(
                "SELECT pg_export_snapshot(), now(), txid_snapshot_xmin(txid_current_snapshot())"
            )
            row = cur.fetchone()
            assert row is not None
            snapshot_id, snapshot_xmin = str(row[0]), int(row[2])
        ident = db.identity(conn)
        created = fmt.utc_now()
        # ACCESS SHARE, as pg_dump takes: rows may change, DDL waits until we are done.
        lock_tables(
            conn, schemas, settings.excluded_tables, "ACCESS SHARE", settings.lock_timeout_seconds
        )
        cat = catalog.read_catalog(conn, schemas, settings.excluded_tables)
        cat.tables = sorted(cat.tables, key=lambda tb: tb.key)  # zero-column ones included
        for table in cat.tables:  # a type no load could read back: refuse before writing
            types.plan_table(table)
        objects = catalog.schema_objects(conn, schemas)
        migrations = applied_migrations(conn)
        bookkeeping = _bookkeeping_present(conn, schemas)
        db.say(progress, f"snapshot of {env} ({t.masked}): {len(cat.tables)} tables")

        dest: Dest
        if remote is not None:
            remote.refresh(env)  # the published manifests: dedup's candidates, taken names
            dest = build = RemoteBuild(remote, env, created)
        else:
            dest = temp = fmt.new_temp_dir(env_dir)
        prev = dedup.previous(env_dir, ident, ring.current_id)
        exports = _export_all(
            t, settings, snapshot_id, cat.tables, dest, workers, progress, prev, ring
        )
        schema_sql = _schema_sql(t, snapshot_id, schemas, objects, settings.lock_timeout_seconds)
        # schema.sql as stored: sealed when snapshots are encrypted (encryption.protect).
        schema_bytes = encryption.protect(schema_sql, ring)
        if build is not None:
            build.write_bytes(fmt.SCHEMA_SQL, schema_bytes)
            schema_sha = build.sha256(fmt.SCHEMA_SQL)
        else:
            assert temp is not None
            (temp / fmt.SCHEMA_SQL).write_bytes(schema_bytes)
            schema_sha = fmt.sha256_file(temp / fmt.SCHEMA_SQL)

        by_key = {tb.key: tb for tb in cat.tables}
        owned, free = _sequence_entries(cat.sequences, by_key, set(cat.excluded))
        entries: dict[str, fmt.TableEntry] = {}
        for table in cat.tables:
            ex = exports[table.key]
            files, size, stored_in = _checksums(dest, ex, prev)
            entries[table.key] = fmt.TableEntry(
                schema=table.schema,
                name=table.name,
                rows=int(ex.rows),
                bytes=size,
                files=files,
                columns=list(ex.columns),
                content_hash=str(ex.content_hash),
                sequences=owned.get(table.key, []),
                primary_key=list(table.primary_key),
                stored_in=stored_in,
                key_salt=ex.key_salt,
            )
        manifest = fmt.Manifest(
            created_at=created.isoformat().replace("+00:00", "Z"),
            env=env,
            database=ident.database,
            server_version=ident.server_version,
            tool_version=__version__,
            schemas=schemas,
            migrations=migrations,
            schema_fingerprint=catalog.fingerprint_of(objects),
            schema_objects=objects,
            tables=entries,
            excluded_tables=list(cat.excluded),
            bookkeeping_tables=bookkeeping,
            sequences=free,
            schema_sql_sha256=schema_sha,
            reason=reason,
            source=fmt.source_of(ident),
            snapshot_xmin=snapshot_xmin,
            encryption=encryption.manifest_field(ring),
        )
        if build is not None:
            problems = build.verify(manifest)
        else:
            assert temp is not None
            fmt.write_manifest(temp, manifest)
            _, problems = fmt.verify_dir(temp)
        if problems:
            raise SnapshotError(
                f"the snapshot just written does not verify: {problems[0]}"
                + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
            )
        faults.pause("snapshot.publish")
        with interrupt.deferred():  # the rename and what we say about it go together
            if build is not None:
                final = build.publish(manifest)
            else:
                assert temp is not None
                final = fmt.publish(temp, env_dir, created)
            temp = None
            interrupt.set_outcome(
                f"the snapshot was written to {store.shown(final)}; {env} was only read"
            )
        with conn.cursor() as cur:
            cur.execute("COMMIT")
        notes = [] if cat.tables else [f"no tables in schemas {', '.join(schemas)}"]
        db.say(progress, f"snapshot written to {store.shown(final)}")
        reused_bytes = sum(ex.bytes for ex in exports.values() if isinstance(ex, dedup.Reused))
        return SnapshotResult(
            path=final,
            env=env,
            tables=len(entries),
            rows=manifest.rows,
            bytes=(
                build.bytes_written() + reused_bytes if build is not None else fmt.dir_bytes(final)
            ),
            verified=True,
            manifest=manifest,
            notes=notes,
            xmin=snapshot_xmin,
            reused=sorted(k for k, ex in exports.items() if isinstance(ex, dedup.Reused)),
            bytes_reused=reused_bytes,
        )
    except psycopg2.Error as exc:
        interrupt.raise_if_received()
        raise SnapshotError(f"snapshot of {env} failed: {db.describe_error(exc)}") from None
    except OSError as exc:
        interrupt.raise_if_received()
        raise SnapshotError(
            f"snapshot of {env} failed writing {exc.filename or env_dir}: {exc.strerror or exc}"
        ) from None
    finally:
        cancel.close()
        if temp is not None:
            fmt.remove_tree(temp)
        if build is not None:
            with contextlib.suppress(DbtoolsError):
                build.discard()
        conn.close()
