"""Real-world schemas round-trip exactly (issue #10, the load side).

Each test builds one hard case in SQL in dev and prod, fills dev (and gives prod other rows),
snapshots dev and restores the snapshot into prod, then asserts what a user relies on: every
table and partition holds dev's rows (md5 of the ordered row text, ONLY the table itself),
sequences continue where dev's are, triggers are in the state they were, and the schema
(`pg_dump --schema-only`) is untouched by the restore.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import psycopg2
import pytest

from dbtools import db
from dbtools.config import load_settings
from dbtools.errors import DbtoolsError, SafetyError
from dbtools.snapshot import format as fmt
from dbtools.snapshot import restore as restore_mod
from dbtools.snapshot.create import create_snapshot
from dbtools.snapshot.restore import RestoreResult, load_snapshot

from support.db import digests, execute, granted
from support.project import Project, configure


def _snapshot(project: Project) -> Path:
    return create_snapshot(load_settings(project.root), "dev").path


def _restore(project: Project, path: Path) -> RestoreResult:
    """restore() into the second database (prod by name) without the prod pipeline's backup
    and history: what these tests look at is the load itself."""
    settings = load_settings(project.root)
    conn = db.connect(db.target(settings, "prod"), purpose="write", settings=settings)
    try:
        restore_mod.refuse_outside_references(conn, settings.schemas, settings.excluded_tables)
        with granted(conn):
            load = load_snapshot(conn, path, settings=settings)
        return RestoreResult(path, "prod", db.identity(conn).database, load, [])
    finally:
        conn.close()


def sequences(url: str) -> dict[str, tuple[int, bool]]:
    out = {}
    for schema, name in execute(
        url,
        "SELECT schemaname, sequencename FROM pg_sequences "
        "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2",
    ):
        row = execute(url, f'SELECT last_value, is_called FROM "{schema}"."{name}"')[0]
        out[f"{schema}.{name}"] = (int(row[0]), bool(row[1]))
    return out


def trigger_states(url: str) -> dict[str, str]:
    return {
        f"{r[0]}.{r[1]}": str(r[2])
        for r in execute(
            url,
            "SELECT tgrelid::regclass::text, tgname, tgenabled FROM pg_trigger "
            "WHERE NOT tgisinternal ORDER BY 1, 2",
        )
    }


def schema_dump(url: str) -> str:
    done = subprocess.run(
        ["pg_dump", "--schema-only", "--no-owner", "--dbname", url],
        capture_output=True,
        text=True,
        check=True,
    )
    # \restrict lines carry a random key per run.
    return "\n".join(
        line
        for line in done.stdout.splitlines()
        if not line.startswith(("-- Dumped", "\\restrict", "\\unrestrict"))
    )


def roundtrip(
    project: Project,
    schema: str,
    dev_data: str,
    prod_data: str = "",
    *,
    cfg: str = "",
) -> RestoreResult:
    """Schema on both sides, data, snapshot of dev restored into prod; asserts that prod now
    holds dev's rows and sequence states while its schema and triggers are as they were."""
    execute(project.dev_url, schema)
    execute(project.prod_url, schema)
    execute(project.dev_url, dev_data)
    if prod_data:
        execute(project.prod_url, prod_data)
    configure(project, cfg)
    path = _snapshot(project)
    dump, triggers = schema_dump(project.prod_url), trigger_states(project.prod_url)
    result = _restore(project, path)
    assert digests(project.prod_url) == digests(project.dev_url)
    assert sequences(project.prod_url) == sequences(project.dev_url)
    assert trigger_states(project.prod_url) == triggers
    assert schema_dump(project.prod_url) == dump
    return result


# --- 1. partitioned tables: keys declared on partitions, sub- and default partitions ------

PARTITIONS = """
CREATE TABLE event (
    id int NOT NULL, user_id int, at date NOT NULL, PRIMARY KEY (id, at)
) PARTITION BY RANGE (at);
CREATE TABLE event_p2022_01 PARTITION OF event FOR VALUES FROM ('2022-01-01') TO ('2022-02-01');
ALTER TABLE event_p2022_01 ADD CONSTRAINT event_p2022_01_user_fkey
    FOREIGN KEY (user_id) REFERENCES "user"(id);
CREATE TABLE event_p2022_02 PARTITION OF event FOR VALUES FROM ('2022-02-01') TO ('2022-03-01')
    PARTITION BY RANGE (id);
CREATE TABLE event_p2022_02_a PARTITION OF event_p2022_02 FOR VALUES FROM (0) TO (3);
ALTER TABLE event_p2022_02_a ADD FOREIGN KEY (user_id) REFERENCES "user"(id);
CREATE TABLE event_p2022_02_rest PARTITION OF event_p2022_02 DEFAULT;
CREATE TABLE event_default PARTITION OF event DEFAULT;
ALTER TABLE event_default ADD FOREIGN KEY (user_id) REFERENCES "user"(id);
-- A key TO a partitioned table, from a table that sorts before it.
CREATE TABLE attendance (
    event_id int, event_at date, FOREIGN KEY (event_id, event_at) REFERENCES event (id, at)
);
"""

PARTITION_DATA = """
INSERT INTO "user" VALUES (1, 'ann'), (2, 'bob'), (3, 'cy');
INSERT INTO event VALUES (1, 1, '2022-01-05'), (2, 2, '2022-02-07'), (3, 3, '2022-02-08'),
    (4, 3, '2023-06-01');
INSERT INTO attendance VALUES (1, '2022-01-05'), (4, '2023-06-01');
"""


def test_keys_declared_on_partitions_order_the_load(project: Project) -> None:
    schema = 'CREATE TABLE "user" (id int PRIMARY KEY, name text);' + PARTITIONS
    result = roundtrip(
        project,
        schema,
        PARTITION_DATA,
        "INSERT INTO \"user\" VALUES (9, 'old prod');",
    )
    assert execute(project.prod_url, "SELECT count(*) FROM ONLY event_p2022_02_a") == [(1,)]
    assert result.load.tables["public.event"]["rows_after"] == 4


def test_cycle_through_a_partition_key_is_deferred(project: Project) -> None:
    # customer -> order (a key to the partitioned table), order_2022 -> customer (a key
    # declared on the partition, with a quoted weird name): no table order satisfies both.
    schema = """
    CREATE TABLE customer (id int PRIMARY KEY, last_order_id int, last_order_at date);
    CREATE TABLE "order" (id int, customer_id int, at date, PRIMARY KEY (id, at))
        PARTITION BY RANGE (at);
    CREATE TABLE order_2022 PARTITION OF "order"
        FOR VALUES FROM ('2022-01-01') TO ('2023-01-01');
    ALTER TABLE order_2022 ADD CONSTRAINT "a ""weird"" fk"
        FOREIGN KEY (customer_id) REFERENCES customer(id);
    ALTER TABLE customer ADD CONSTRAINT customer_last_order_fkey
        FOREIGN KEY (last_order_id, last_order_at) REFERENCES "order"(id, at);
    """
    data = """
    BEGIN;
    ALTER TABLE order_2022 DROP CONSTRAINT "a ""weird"" fk";
    INSERT INTO "order" VALUES (1, 1, '2022-03-01');
    INSERT INTO customer VALUES (1, 1, '2022-03-01');
    ALTER TABLE order_2022 ADD CONSTRAINT "a ""weird"" fk"
        FOREIGN KEY (customer_id) REFERENCES customer(id);
    COMMIT;
    """
    result = roundtrip(project, schema, data)
    assert sorted(result.load.deferred_constraints) == [
        "public.customer.customer_last_order_fkey",
        'public.order_2022.a "weird" fk',
    ]
    deferrable = execute(
        project.prod_url, "SELECT DISTINCT condeferrable FROM pg_constraint WHERE contype = 'f'"
    )
    assert deferrable == [(False,)]


# --- 2. user triggers do not fire during the load ------------------------------------------

TRIGGERS = """
CREATE SCHEMA log;
CREATE TABLE log.truncations (at timestamptz DEFAULT now(), tbl text);
CREATE TABLE audit (id serial PRIMARY KEY, what text);
CREATE TABLE doc (id int PRIMARY KEY, title text, tsv tsvector, updated_at timestamptz);
CREATE FUNCTION doc_compute() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.tsv := to_tsvector('simple', coalesce(NEW.title, '') || ' computed');
    NEW.updated_at := now();
    RETURN NEW;
END $$;
CREATE FUNCTION doc_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO audit (what) VALUES (TG_NAME || ' ' || NEW.id); RETURN NULL; END $$;
CREATE FUNCTION log_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO log.truncations (tbl) VALUES (TG_TABLE_NAME); RETURN NULL; END $$;
CREATE TRIGGER doc_compute BEFORE INSERT OR UPDATE ON doc
    FOR EACH ROW EXECUTE FUNCTION doc_compute();
CREATE TRIGGER doc_audit AFTER INSERT ON doc FOR EACH ROW EXECUTE FUNCTION doc_audit();
CREATE TRIGGER doc_audit_always AFTER INSERT ON doc FOR EACH ROW EXECUTE FUNCTION doc_audit();
CREATE TRIGGER doc_audit_replica AFTER INSERT ON doc FOR EACH ROW EXECUTE FUNCTION doc_audit();
CREATE TRIGGER doc_audit_off AFTER INSERT ON doc FOR EACH ROW EXECUTE FUNCTION doc_audit();
CREATE TRIGGER doc_truncate BEFORE TRUNCATE ON doc
    FOR EACH STATEMENT EXECUTE FUNCTION log_truncate();
ALTER TABLE doc ENABLE ALWAYS TRIGGER doc_audit_always;
ALTER TABLE doc ENABLE REPLICA TRIGGER doc_audit_replica;
ALTER TABLE doc DISABLE TRIGGER doc_audit_off;
-- A partitioned table whose trigger is cloned to partitions in states of their own.
CREATE TABLE note (id int, body text, tsv tsvector, updated_at timestamptz)
    PARTITION BY RANGE (id);
CREATE TABLE note_low PARTITION OF note FOR VALUES FROM (0) TO (100);
CREATE TABLE note_high PARTITION OF note FOR VALUES FROM (100) TO (200) PARTITION BY RANGE (id);
CREATE TABLE note_high_a PARTITION OF note_high FOR VALUES FROM (100) TO (200);
CREATE FUNCTION note_compute() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.body := upper(NEW.body); NEW.updated_at := now(); RETURN NEW; END $$;
CREATE TRIGGER note_compute BEFORE INSERT ON note FOR EACH ROW EXECUTE FUNCTION note_compute();
CREATE TRIGGER note_truncate BEFORE TRUNCATE ON note_low
    FOR EACH STATEMENT EXECUTE FUNCTION log_truncate();
ALTER TABLE ONLY note_high_a ENABLE ALWAYS TRIGGER note_compute;
ALTER TABLE ONLY note_low ENABLE REPLICA TRIGGER note_compute;
"""

TRIGGER_DEV_DATA = """
ALTER TABLE doc DISABLE TRIGGER doc_compute;
INSERT INTO doc VALUES (1, 'First', 'first:1', '2020-01-01 00:00:00+00'),
    (2, 'Second', NULL, NULL);
ALTER TABLE doc ENABLE TRIGGER doc_compute;
INSERT INTO doc VALUES (3, 'Third', NULL, NULL);
INSERT INTO note VALUES (5, 'low', NULL, '2021-01-01'), (150, 'high', 'x', NULL);
"""


def test_user_triggers_do_not_fire_and_keep_their_states(project: Project) -> None:
    result = roundtrip(
        project,
        TRIGGERS,
        TRIGGER_DEV_DATA,
        "INSERT INTO doc VALUES (7, 'prod', NULL, NULL);",
        cfg="schemas = public\n",
    )
    # Rows as snapshotted: the BEFORE triggers' values would differ (now(), 'computed').
    rows = execute(project.prod_url, "SELECT tsv::text, updated_at::text FROM doc WHERE id = 1")
    assert rows == [("'first':1", "2020-01-01 00:00:00+00")]
    # The AFTER triggers added no audit rows: audit holds dev's (3 inserts, 2 firing each).
    assert execute(project.prod_url, "SELECT count(*) FROM audit") == [(6,)]
    # No TRUNCATE trigger fired: its table, outside the synced schemas, stayed empty.
    assert execute(project.prod_url, "SELECT count(*) FROM log.truncations") == [(0,)]
    assert "public.doc.doc_compute" in result.load.suspended_triggers
    assert "public.doc.doc_audit_off" not in result.load.suspended_triggers
    states = trigger_states(project.prod_url)
    assert states["doc.doc_audit_always"] == "A"
    assert states["doc.doc_audit_replica"] == "R"
    assert states["doc.doc_audit_off"] == "D"
    assert states["note_low.note_compute"] == "R"
    assert states["note_high_a.note_compute"] == "A"
    assert states["note_high.note_compute"] == "O"


def test_a_failed_load_leaves_rows_and_trigger_states_as_they_were(project: Project) -> None:
    execute(project.dev_url, TRIGGERS)
    execute(project.prod_url, TRIGGERS)
    execute(project.dev_url, TRIGGER_DEV_DATA)
    execute(project.prod_url, "INSERT INTO doc VALUES (7, 'prod', NULL, NULL);")
    settings = load_settings(project.root)
    path = create_snapshot(settings, "dev").path
    before, states = digests(project.prod_url), trigger_states(project.prod_url)
    seen: list[dict[str, str]] = []

    def refuse(conn: object) -> None:
        seen.append(trigger_states(project.prod_url))  # another session: the committed states
        raise DbtoolsError("refused by the caller's check")

    conn = db.connect(db.target(settings, "prod"), purpose="write", settings=settings)
    try:
        with pytest.raises(DbtoolsError, match="refused by the caller"), granted(conn):
            load_snapshot(conn, path, settings=settings, before_commit=refuse)
    finally:
        conn.close()
    assert seen == [states]
    assert digests(project.prod_url) == before
    assert trigger_states(project.prod_url) == states


def test_constraint_triggers_stay_on(project: Project) -> None:
    schema = """
    CREATE TABLE item (id int PRIMARY KEY, title text);
    CREATE FUNCTION no_forbidden() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.title = 'forbidden' THEN RAISE EXCEPTION 'forbidden title'; END IF;
        RETURN NULL;
    END $$;
    CREATE CONSTRAINT TRIGGER no_forbidden AFTER INSERT ON item
        FOR EACH ROW EXECUTE FUNCTION no_forbidden();
    """
    execute(project.dev_url, schema)
    execute(project.prod_url, schema)
    # dev got the row past its check; prod's check must still refuse it.
    execute(
        project.dev_url,
        "ALTER TABLE item DISABLE TRIGGER no_forbidden;"
        "INSERT INTO item VALUES (1, 'forbidden');"
        "ALTER TABLE item ENABLE TRIGGER no_forbidden;",
    )
    execute(project.prod_url, "INSERT INTO item VALUES (2, 'fine')")
    path = _snapshot(project)
    before, states = digests(project.prod_url), trigger_states(project.prod_url)
    with pytest.raises(DbtoolsError, match="forbidden title"):
        _restore(project, path)
    assert digests(project.prod_url) == before
    assert trigger_states(project.prod_url) == states


# --- 3. table inheritance: each statement touches the table alone -------------------------

INHERITANCE = """
CREATE TABLE city (name text PRIMARY KEY, population int);
CREATE TABLE capital (state text) INHERITS (city);
"""


def test_preserved_parent_keeps_only_its_own_rows(project: Project) -> None:
    execute(project.dev_url, INHERITANCE)
    execute(project.prod_url, INHERITANCE)
    execute(
        project.dev_url,
        "INSERT INTO city VALUES ('Lyon', 500);"
        "INSERT INTO capital VALUES ('Paris', 2100, 'IDF'), ('Bonn', 300, 'NRW');",
    )
    execute(
        project.prod_url,
        "INSERT INTO city VALUES ('Nice', 340);INSERT INTO capital VALUES ('Rome', 2800, 'LAZ');",
    )
    configure(project, "preserved_tables = city\n")
    settings = load_settings(project.root)
    path = create_snapshot(settings, "dev").path
    conn = db.connect(db.target(settings, "prod"), purpose="write", settings=settings)
    try:
        with granted(conn):
            result = load_snapshot(conn, path, settings=settings, preserved=["city"])
    finally:
        conn.close()
    assert execute(project.prod_url, "SELECT name FROM ONLY city ORDER BY 1") == [("Nice",)]
    assert execute(project.prod_url, "SELECT name FROM ONLY capital ORDER BY 1") == [
        ("Bonn",),
        ("Paris",),
    ]
    assert result.tables["public.city"] == {"rows_before": 1, "rows_after": 1, "preserved": True}


def test_inheritance_parent_and_child_round_trip(project: Project) -> None:
    # Needs the export side too: COPY-out and the content hash of the parent must read ONLY
    # the parent, or the children's rows are exported (and loaded) twice.
    roundtrip(
        project,
        INHERITANCE,
        "INSERT INTO city VALUES ('Lyon', 500);"
        "INSERT INTO capital VALUES ('Paris', 2100, 'IDF'), ('Bonn', 300, 'NRW');",
        "INSERT INTO capital VALUES ('Rome', 2800, 'LAZ');",
    )
    assert execute(project.prod_url, "SELECT count(*) FROM city") == [(3,)]


def test_row_counts_count_the_table_alone(project: Project) -> None:
    execute(project.prod_url, INHERITANCE + "INSERT INTO capital VALUES ('Rome', 2800, 'LAZ');")
    result = project.invoke("verify", "--json")
    data = json.loads(result.stdout)
    assert data["sides"]["prod"]["tables"] == {"public.capital": 1, "public.city": 0}


# --- 4. foreign keys from tables that are not synced ---------------------------------------

OUTSIDE = """
CREATE SCHEMA ext;
CREATE TABLE account (id int PRIMARY KEY);
CREATE TABLE ext.login (account_id int REFERENCES account(id));
CREATE TABLE session (account_id int CONSTRAINT "session ""acct"" fk" REFERENCES account(id));
"""


def test_restore_refuses_before_writing_when_an_outside_table_references_a_synced_one(
    project: Project,
) -> None:
    execute(project.dev_url, OUTSIDE)
    execute(project.prod_url, OUTSIDE)
    execute(project.dev_url, "INSERT INTO account VALUES (1), (2)")
    execute(project.prod_url, "INSERT INTO account VALUES (5); INSERT INTO ext.login VALUES (5)")
    path = _snapshot(project)
    before = digests(project.prod_url)
    with pytest.raises(SafetyError) as caught:
        _restore(project, path)
    message = caught.value.message
    assert caught.value.exit_code == 3
    assert "ext.login" in message and "public.account" in message
    assert "`schemas`" in message and "setup.cfg [dbtools]" in message
    assert "\n" not in message
    assert digests(project.prod_url) == before


def test_excluded_referrer_is_refused_and_named(project: Project) -> None:
    schema = OUTSIDE.replace("CREATE TABLE ext.login", "CREATE TABLE ext_login_unused")
    execute(project.dev_url, schema)
    execute(project.prod_url, schema)
    execute(project.dev_url, "INSERT INTO account VALUES (1)")
    execute(project.prod_url, "INSERT INTO account VALUES (5); INSERT INTO session VALUES (5)")
    configure(project, "excluded_tables = session\n")
    path = _snapshot(project)
    before = digests(project.prod_url)
    result = project.invoke(
        "restore", str(path), "--target", "prod", "--yes", "--allow-other-source"
    )
    assert result.exit_code == 3, result.output
    assert "public.session" in result.output and "`excluded_tables`" in result.output
    assert "Traceback" not in result.output
    assert digests(project.prod_url) == before


def test_verify_reports_an_outside_reference_as_one_problem(project: Project) -> None:
    configure(project, "preserved_tables =\n")  # this schema has no marketplace logins
    execute(project.dev_url, OUTSIDE)
    execute(project.prod_url, OUTSIDE)
    result = project.invoke("verify", "--json")
    assert result.exit_code == 1, result.output
    problems = json.loads(result.stdout)["problems"]
    outside = [p for p in problems if "ext.login" in p]
    assert len(outside) == 2  # one per side
    assert outside[0].startswith("dev: table ext.login references synced table public.account")
    # With ext synced, nothing is left outside.
    configure(project, "schemas = public, ext\n")
    result = project.invoke("verify", "--json")
    assert result.exit_code == 0, result.output


# --- 5. tables without columns -------------------------------------------------------------


def test_zero_column_table_row_count_is_restored(project: Project) -> None:
    # Needs the export side too: a table without columns must be exported (its row count).
    roundtrip(
        project,
        "CREATE TABLE marker (); CREATE TABLE other (id int);",
        "INSERT INTO marker SELECT FROM generate_series(1, 3); INSERT INTO other VALUES (1);",
        "INSERT INTO marker DEFAULT VALUES;",
    )
    assert execute(project.prod_url, "SELECT count(*) FROM marker") == [(3,)]


# --- 6. materialized views ------------------------------------------------------------------

MATVIEWS = """
CREATE TABLE sale (id int PRIMARY KEY, amount int);
CREATE VIEW big_sale AS SELECT * FROM sale WHERE amount > 10;
CREATE MATERIALIZED VIEW a_total AS SELECT count(*) AS n, sum(amount) AS s FROM big_sale;
CREATE MATERIALIZED VIEW z_per_sale AS SELECT id, amount FROM sale;
CREATE MATERIALIZED VIEW b_summary AS
    SELECT t.n, (SELECT count(*) FROM z_per_sale) AS rows FROM a_total t;
CREATE MATERIALIZED VIEW never_filled AS SELECT id FROM sale WITH NO DATA;
CREATE TABLE unrelated (id int);
CREATE MATERIALIZED VIEW unrelated_mv AS SELECT 1 AS one;
"""


def test_materialized_views_are_refreshed_in_dependency_order(project: Project) -> None:
    execute(project.dev_url, MATVIEWS)
    execute(project.prod_url, MATVIEWS)
    execute(project.dev_url, "INSERT INTO sale VALUES (1, 5), (2, 50), (3, 500)")
    execute(
        project.dev_url,
        "REFRESH MATERIALIZED VIEW a_total; REFRESH MATERIALIZED VIEW z_per_sale;"
        "REFRESH MATERIALIZED VIEW b_summary;",
    )
    execute(project.prod_url, "INSERT INTO sale VALUES (9, 99)")
    execute(
        project.prod_url,
        "REFRESH MATERIALIZED VIEW a_total; REFRESH MATERIALIZED VIEW z_per_sale;"
        "REFRESH MATERIALIZED VIEW b_summary;",
    )
    path = _snapshot(project)
    dump = schema_dump(project.prod_url)
    result = _restore(project, path)
    assert execute(project.prod_url, "SELECT n, s FROM a_total") == [(2, 550)]
    assert execute(project.prod_url, "SELECT n, rows FROM b_summary") == [(2, 3)]
    assert digests(project.prod_url) == digests(project.dev_url)
    refreshed = result.load.refreshed
    assert sorted(refreshed) == ["public.a_total", "public.b_summary", "public.z_per_sale"]
    assert refreshed.index("public.b_summary") > refreshed.index("public.a_total")
    assert refreshed.index("public.b_summary") > refreshed.index("public.z_per_sale")
    assert execute(
        project.prod_url, "SELECT relispopulated FROM pg_class WHERE relname = 'never_filled'"
    ) == [(False,)]
    assert schema_dump(project.prod_url) == dump


# --- 7. the other hard cases of real schemas ------------------------------------------------

ASSORTED = """
CREATE SCHEMA billing;
CREATE TABLE person (
    id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text,
    dropped_later text,
    manager_id int REFERENCES person(id),
    name_upper text GENERATED ALWAYS AS (upper(name)) STORED
);
ALTER TABLE person DROP COLUMN dropped_later;
CREATE TABLE tag (id int GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, label text);
CREATE UNLOGGED TABLE cache (k text PRIMARY KEY, v text);
CREATE SEQUENCE free_counter;
CREATE SEQUENCE untouched_counter START 40;
CREATE TABLE billing.invoice (
    id int PRIMARY KEY,
    person_id int REFERENCES public.person(id) DEFERRABLE INITIALLY DEFERRED
);
-- A trigger on the table with the deferred key: setting it back after the load must not
-- meet the key's pending checks ("cannot ALTER TABLE ... pending trigger events").
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.id := NEW.id + 1000; RETURN NEW; END $$;
CREATE TRIGGER invoice_touch BEFORE INSERT ON billing.invoice
    FOR EACH ROW EXECUTE FUNCTION touch();
ALTER TABLE billing.invoice DISABLE TRIGGER invoice_touch;
CREATE TRIGGER invoice_touch_on BEFORE UPDATE ON billing.invoice
    FOR EACH ROW EXECUTE FUNCTION touch();
CREATE TABLE aaa_line (
    invoice_id int REFERENCES billing.invoice(id), amount numeric(10, 2)
);
"""

ASSORTED_DEV = """
INSERT INTO person (name) VALUES ('boss');
INSERT INTO person (name, manager_id) VALUES ('worker', 1), ('intern', 2);
INSERT INTO tag (label) VALUES ('a'), ('b');
INSERT INTO tag (id, label) VALUES (10, 'explicit');
INSERT INTO cache VALUES ('k', 'v');
SELECT setval('free_counter', 7, false);
SELECT nextval('untouched_counter');
INSERT INTO billing.invoice VALUES (1, 3), (2, 1);
INSERT INTO aaa_line VALUES (1, 9.99), (2, 0.01);
"""


def test_identity_generated_sequences_unlogged_and_cross_schema_keys(project: Project) -> None:
    roundtrip(
        project,
        ASSORTED,
        ASSORTED_DEV,
        "INSERT INTO person (name) VALUES ('prod only'); SELECT setval('free_counter', 99);",
        cfg="schemas = public, billing\n",
    )
    assert execute(project.prod_url, "SELECT name_upper FROM person WHERE id = 3") == [("INTERN",)]
    assert execute(project.prod_url, "SELECT nextval('free_counter')") == [(7,)]
    assert execute(project.prod_url, "INSERT INTO person (name) VALUES ('n') RETURNING id") == [
        (4,)
    ]
    assert execute(project.prod_url, "INSERT INTO tag (label) VALUES ('c') RETURNING id") == [(3,)]


def test_load_result_lists_refreshes_and_suspended_triggers(project: Project) -> None:
    execute(project.dev_url, "CREATE TABLE t (id int)")
    execute(project.prod_url, "CREATE TABLE t (id int)")
    path = _snapshot(project)
    payload = _restore(project, path).as_dict()["load"]
    assert payload["refreshed"] == [] and payload["suspended_triggers"] == []
    assert fmt.read_manifest(path).table("t").rows == 0


def test_the_guard_locks_an_inheritance_parent_alone(project: Project) -> None:
    """An excluded child held by the application does not stop a sync of its parent: the
    guard's LOCK TABLE on the parent must not recurse into children it does not sync."""
    from dbtools.snapshot import restore as restore_mod

    execute(project.prod_url, INHERITANCE)
    execute(
        project.prod_url,
        "CREATE TABLE part (p int) PARTITION BY RANGE (p);"
        "CREATE TABLE part_1 PARTITION OF part FOR VALUES FROM (0) TO (10)",
    )
    holder = psycopg2.connect(project.prod_url)
    conn = psycopg2.connect(project.prod_url)
    try:
        with holder.cursor() as cur:
            cur.execute("LOCK TABLE capital IN ACCESS EXCLUSIVE MODE")  # the app, busy
        with conn.cursor() as cur:
            locked = restore_mod.lock_tables(conn, ["public"], ["capital"], "EXCLUSIVE", 1)
            assert locked == ["public.city", "public.part"]
            # A partitioned table is locked with its partitions: they receive its rows.
            cur.execute(
                "SELECT c.relname FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                "WHERE l.pid = pg_backend_pid() AND l.mode = 'ExclusiveLock' ORDER BY 1"
            )
            assert [r[0] for r in cur.fetchall()] == ["city", "part", "part_1"]
    finally:
        conn.rollback()
        conn.close()
        holder.rollback()
        holder.close()
