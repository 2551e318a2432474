"""migrations/ and `dbtools migrate`: the schema, rename, rollback, drift, failures, locks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import psycopg2
import pytest

from dbtools import catalog, db, migrations
from dbtools.errors import DbtoolsError, MigrationError
from dbtools.migrations.lock import locked
from dbtools.migrations.session import open_session

from support.db import SERVER_URL, applied_migrations, execute, fingerprint, schema_objects
from support.project import REPO, Project

MIGRATIONS = REPO / "migrations"
HEAD = migrations.migration_ids(MIGRATIONS)


@pytest.fixture
def own_migrations(project: Project) -> Path:
    """A copy of migrations/ the test may edit, wired into the project's setup.cfg."""
    target = project.root / "migrations"
    shutil.copytree(MIGRATIONS, target)
    cfg = project.root / "setup.cfg"
    cfg.write_text(
        cfg.read_text().replace(f"migrations_dir = {MIGRATIONS}", "migrations_dir = migrations")
    )
    return target


# --- the schema ----------------------------------------------------------------------------

TABLES = {
    "User", "Account", "Session", "VerificationToken", "BuilderProfile", "ClientProfile",
    "SubscriberProfile", "SessionType", "Booking", "AvailabilityRule", "AvailabilityException",
    "Skill", "BuilderSkill", "SkillResource", "UserSkillProgress", "App", "AICapability",
    "CapabilityExample", "CapabilityLimitation", "CapabilityRequirement", "Project",
    "ProjectMilestone",
}  # fmt: skip

ENUMS = {
    "UserRole": "CLIENT, BUILDER, ADMIN, SUBSCRIBER",
    "AppStatus": "LIVE, DEMO, CONCEPT",
    "BookingStatus": "PENDING, CONFIRMED, CANCELLED, COMPLETED",
    "PaymentStatus": "UNPAID, PAID, REFUNDED, CANCELLED",
    "ProgressStatus": "NOT_STARTED, IN_PROGRESS, COMPLETED",
    "CompletionMethod": "ASSESSMENT, BUILDER_VALIDATION, AUTO, MANUAL",
    "ProjectStatus": "DRAFT, OPEN, IN_PROGRESS, COMPLETED, CANCELLED",
    "ResourceType": "ARTICLE, VIDEO, EXERCISE, PROJECT, ASSESSMENT",
    "SkillStatus": "EMERGING, ACTIVE, DECLINING, ARCHIVED",
}


def test_fresh_database_at_head_matches_the_schema_document(make_db) -> None:
    url = make_db("head")
    assert migrations.apply_all(url, MIGRATIONS) == HEAD
    objs = schema_objects(url)
    assert {k.split(".", 1)[1] for k in objs if k.startswith("table ")} == TABLES
    assert {k.split(".", 1)[1]: v for k, v in objs.items() if k.startswith("enum ")} == ENUMS

    col = lambda t, c: objs[f"column public.{t}.{c}"]  # noqa: E731
    assert col("User", "image") == "text"
    assert "column public.User.imageUrl" not in objs
    assert col("User", "roles") == '"UserRole"[] DEFAULT ARRAY[\'CLIENT\'::"UserRole"]'
    assert col("User", "isDemo") == "boolean NOT NULL DEFAULT false"
    assert col("User", "updatedAt") == "timestamp(3) without time zone NOT NULL"
    assert col("BuilderProfile", "hourlyRate") == "numeric(10,2)"
    assert col("BuilderProfile", "rating") == "double precision"
    assert col("BuilderProfile", "portfolioItems") == "jsonb[]"
    assert col("BuilderProfile", "topSkills") == "text[] DEFAULT ARRAY[]::text[]"
    assert col("BuilderProfile", "searchable") == "boolean NOT NULL DEFAULT true"
    assert col("BuilderProfile", "validationTier") == "integer NOT NULL DEFAULT 1"
    assert col("BuilderProfile", "availability") == "text NOT NULL DEFAULT 'available'::text"
    assert col("ClientProfile", "pathways") == "jsonb NOT NULL DEFAULT '[]'::jsonb"
    assert col("BuilderProfile", "adhd_focus") == "boolean NOT NULL DEFAULT false"

    conn = psycopg2.connect(url)
    try:
        fks = {
            (f.table.split(".")[1], f.columns): f
            for f in catalog.read_foreign_keys(conn, ["public"])
        }
    finally:
        conn.close()
    assert len(fks) == 23
    assert all(f.on_update == "CASCADE" for f in fks.values())
    special = {
        ("BuilderSkill", ("skillId",)): "RESTRICT",
        ("Booking", ("sessionTypeId",)): "SET NULL",
        ("AICapability", ("createdById",)): "SET NULL",
    }
    for key, fk in fks.items():
        assert fk.on_delete == special.get(key, "CASCADE"), key
    for name in ("featured", "searchable", "availability", "validationTier"):
        assert f"index public.BuilderProfile_{name}_idx" in objs
    assert "UNIQUE" in objs["index public.BuilderProfile_slug_key"]
    assert "UNIQUE" in objs["index public.Account_provider_providerAccountId_key"]
    assert "UNIQUE" in objs["index public.UserSkillProgress_userId_skillId_pathway_key"]


def test_apply_all_then_rollback_all_returns_to_an_identical_fingerprint(project: Project) -> None:
    empty = fingerprint(project.dev_url)
    result = project.invoke("migrate", "apply", "--target", "dev", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["targets"]["dev"]["done"] == HEAD
    head = fingerprint(project.dev_url)

    result = project.invoke("migrate", "rollback", "--target", "dev", "--all", "--json", "--yes")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["done"] == list(reversed(HEAD))
    assert fingerprint(project.dev_url) == empty
    assert applied_migrations(project.dev_url) == []

    assert project.invoke("migrate", "apply", "--target", "dev").exit_code == 0
    assert fingerprint(project.dev_url) == head


def test_rename_keeps_every_value_both_ways(project: Project) -> None:
    url = project.dev_url
    migrations.apply_all(url, MIGRATIONS, upto="0002_marketplace_fields")
    images = {
        "u1": "https://img.example.com/a.png",
        "u2": None,
        "u3": "https://img.example.com/ünïcødé/ß.png?x=1&y='2'",
        "u4": "",
        "u5": "x" * 5000,
    }
    for uid, img in images.items():
        execute(
            url,
            'INSERT INTO "User" (id, email, "imageUrl", "updatedAt") VALUES (%s, %s, %s, now())',
            (uid, f"{uid}@example.com", img),
        )

    result = project.invoke("migrate", "apply", "--target", "dev")
    assert result.exit_code == 0, result.output
    assert "0003_rename_user_image" in result.output
    assert dict(execute(url, 'SELECT id, image FROM "User"')) == images

    result = project.invoke(
        "migrate", "rollback", "--target", "dev", "--id", "0003_rename_user_image", "--yes"
    )
    assert result.exit_code == 0, result.output
    assert dict(execute(url, 'SELECT id, "imageUrl" FROM "User"')) == images
    assert applied_migrations(url) == HEAD[:2]


def test_status_shows_applied_pending_and_no_drift(project: Project) -> None:
    migrations.apply_all(project.dev_url, MIGRATIONS, upto="0001_initial")
    result = project.invoke("migrate", "status", "--target", "both", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)["targets"]
    assert data["dev"]["applied"] == HEAD[:1]
    assert data["dev"]["pending"] == HEAD[1:]
    assert data["dev"]["drift"] == []
    assert data["prod"]["applied"] == [] and data["prod"]["pending"] == HEAD
    text = project.invoke("migrate", "status", "--target", "dev").output
    assert "0002_marketplace_fields  pending" in text and "no drift" in text


# --- drift ---------------------------------------------------------------------------------


def test_an_edited_applied_file_is_reported_and_blocks_apply(
    project: Project, own_migrations: Path
) -> None:
    assert (
        project.invoke(
            "migrate", "apply", "--target", "dev", "--upto", "0002_marketplace_fields"
        ).exit_code
        == 0
    )
    edited = own_migrations / "0002_marketplace_fields.sql"
    edited.write_text(edited.read_text() + '\nALTER TABLE "User" ADD COLUMN "sneaky" text;\n')

    result = project.invoke("migrate", "status", "--target", "dev", "--json")
    assert result.exit_code == 1
    assert json.loads(result.output)["targets"]["dev"]["drift"] == ["0002_marketplace_fields"]

    before = fingerprint(project.dev_url)
    result = project.invoke("migrate", "apply", "--target", "dev")
    assert result.exit_code == 1
    assert "0002_marketplace_fields" in result.output and "changed" in result.output
    assert "Traceback" not in result.output
    assert fingerprint(project.dev_url) == before  # 0003 was not applied either
    assert applied_migrations(project.dev_url) == HEAD[:2]


def test_crlf_checkout_is_not_drift(project: Project, own_migrations: Path) -> None:
    assert project.invoke("migrate", "apply", "--target", "dev").exit_code == 0
    path = own_migrations / "0003_rename_user_image.sql"
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    assert project.invoke("migrate", "status", "--target", "dev").exit_code == 0


# --- failures and transactions -------------------------------------------------------------


def test_a_migration_failing_half_way_leaves_the_database_exactly_as_before(
    project: Project, own_migrations: Path
) -> None:
    assert project.invoke("migrate", "apply", "--target", "dev").exit_code == 0
    execute(
        project.dev_url,
        """INSERT INTO "User" (id, email, "updatedAt") VALUES ('u1', 'a@b.c', now())""",
    )
    (own_migrations / "0004_half_way.sql").write_text(
        "-- depends: 0003_rename_user_image\n"
        'CREATE TABLE "Review" ("id" TEXT PRIMARY KEY, "body" TEXT);\n'
        'ALTER TABLE "User" ADD COLUMN "nickname" TEXT;\n'
        'UPDATE "User" SET "email" = \'changed@b.c\';\n'
        'CREATE INDEX "Review_body_idx" ON "Review"("body");\n'
        'ALTER TABLE "Review" ADD CONSTRAINT "Review_user_fkey" FOREIGN KEY ("id") '
        'REFERENCES "Nope"("id");\n'
    )
    (own_migrations / "0004_half_way.rollback.sql").write_text('DROP TABLE "Review";\n')
    before = schema_objects(project.dev_url)

    result = project.invoke("migrate", "apply", "--target", "dev")
    assert result.exit_code == 1
    assert "0004_half_way" in result.output and '"Nope" does not exist' in result.output
    assert "Traceback" not in result.output
    assert schema_objects(project.dev_url) == before
    assert applied_migrations(project.dev_url) == HEAD
    assert execute(project.dev_url, 'SELECT email FROM "User"') == [("a@b.c",)]
    assert "0004_half_way" not in migrations.recorded_checksums(psycopg2.connect(project.dev_url))


def test_non_transactional_migration_runs_create_index_concurrently(
    project: Project, own_migrations: Path
) -> None:
    assert project.invoke("migrate", "apply", "--target", "dev").exit_code == 0
    index = 'CREATE INDEX CONCURRENTLY "Booking_status_idx" ON "Booking"("status");\n'
    (own_migrations / "0004_booking_status_idx.sql").write_text(
        "-- depends: 0003_rename_user_image\n" + index
    )
    (own_migrations / "0004_booking_status_idx.rollback.sql").write_text(
        'DROP INDEX CONCURRENTLY "Booking_status_idx";\n'
    )
    # In a transaction PostgreSQL refuses it, cleanly: nothing applied, nothing recorded.
    result = project.invoke("migrate", "apply", "--target", "dev")
    assert result.exit_code == 1
    assert "cannot run inside a transaction block" in result.output
    assert "index public.Booking_status_idx" not in schema_objects(project.dev_url)
    assert applied_migrations(project.dev_url) == HEAD

    (own_migrations / "0004_booking_status_idx.sql").write_text(
        "-- transactional: false\n-- depends: 0003_rename_user_image\n" + index
    )
    result = project.invoke("migrate", "apply", "--target", "dev", "--dry-run")
    assert result.exit_code == 0 and "outside a transaction" in result.output
    result = project.invoke("migrate", "apply", "--target", "dev")
    assert result.exit_code == 0, result.output
    assert "index public.Booking_status_idx" in schema_objects(project.dev_url)
    assert applied_migrations(project.dev_url) == [*HEAD, "0004_booking_status_idx"]
    result = project.invoke("migrate", "rollback", "--target", "dev", "--yes")
    assert result.exit_code == 0, result.output
    assert "index public.Booking_status_idx" not in schema_objects(project.dev_url)


# --- locks ---------------------------------------------------------------------------------


def test_a_second_concurrent_run_fails_clearly(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DBTOOLS_LOCK_TIMEOUT", "1")
    t = db.Target("dev", project.dev_url, project.dev_name)
    with open_session(t, MIGRATIONS) as s, locked(s, 1):
        result = project.invoke("migrate", "apply", "--target", "dev")
    assert result.exit_code == 3
    assert "another dbtools migration run holds the lock" in result.output
    assert applied_migrations(project.dev_url) == []
    assert project.invoke("migrate", "apply", "--target", "dev").exit_code == 0


def test_a_foreign_lock_is_reported_with_the_command_that_clears_it(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DBTOOLS_LOCK_TIMEOUT", "1")
    migrations.apply_all(project.dev_url, MIGRATIONS, upto="0001_initial")
    execute(project.dev_url, "INSERT INTO yoyo_lock (locked, ctime, pid) VALUES (1, now(), 424242)")

    result = project.invoke("migrate", "apply", "--target", "dev")
    assert result.exit_code == 3
    # A positive pid is a plain yoyo's (or an old dbtools'): maybe alive, never cleared on a guess.
    assert "not a dbtools run" in result.output and "424242" in result.output
    assert "dbtools migrate unlock --target dev" in result.output
    assert "another dbtools migration run" not in result.output
    assert applied_migrations(project.dev_url) == HEAD[:1]

    result = project.invoke("migrate", "unlock", "--target", "dev", "--yes", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["held_by_pid"] == 424242
    assert project.invoke("migrate", "apply", "--target", "dev").exit_code == 0
    assert applied_migrations(project.dev_url) == HEAD


# --- new, mark, connections ----------------------------------------------------------------


def test_new_writes_the_next_numbered_pair(project: Project, own_migrations: Path) -> None:
    result = project.invoke("migrate", "new", "Add builder timezone", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["id"] == "0004_add_builder_timezone"
    sql = Path(data["path"]).read_text()
    assert "-- depends: 0003_rename_user_image" in sql
    assert Path(data["rollback_path"]).is_file()
    assert migrations.migration_ids(own_migrations) == [*HEAD, "0004_add_builder_timezone"]
    # an empty new migration applies and rolls back cleanly
    assert project.invoke("migrate", "apply", "--target", "dev").exit_code == 0
    assert applied_migrations(project.dev_url)[-1] == "0004_add_builder_timezone"


def test_mark_baselines_a_database_built_without_yoyo(project: Project) -> None:
    for mid in HEAD:
        execute(project.dev_url, (MIGRATIONS / f"{mid}.sql").read_text())
    before = fingerprint(project.dev_url)
    result = project.invoke("migrate", "mark", "--target", "dev", "--yes", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["targets"]["dev"]["done"] == HEAD
    status = json.loads(project.invoke("migrate", "status", "--target", "dev", "--json").output)
    assert status["targets"]["dev"]["pending"] == [] and status["targets"]["dev"]["unchecked"] == []
    result = project.invoke("migrate", "apply", "--target", "dev")
    assert result.exit_code == 0 and "nothing to do" in result.output
    assert fingerprint(project.dev_url) == before


def test_prod_apply_needs_confirmation(project: Project) -> None:
    result = project.invoke("migrate", "apply", "--target", "prod")
    assert result.exit_code == 4 and "--yes" in result.output
    assert applied_migrations(project.prod_url) == []


@pytest.mark.pure
def test_yoyo_gets_the_whole_query_string() -> None:
    url = (
        "postgresql://u:p%40ss@ep-x.neon.tech/Buildappswith-prod?sslmode=require"
        "&channel_binding=require"
    )
    got = db.libpq_params(db.Target("prod", url, "Buildappswith-prod"))
    assert got["sslmode"] == "require" and got["channel_binding"] == "require"
    assert got["dbname"] == "Buildappswith-prod" and got["password"] == "p@ss"


def test_pooler_host_is_refused_for_migrations(project: Project) -> None:
    project.env["DEV_DATABASE_URL"] = (
        "postgresql://u:hunter2secret@ep-cool-1-pooler.eu.aws.neon.tech/db?sslmode=require"
    )
    result = project.invoke("migrate", "apply", "--target", "dev")
    assert result.exit_code == 3
    assert "pooler" in result.output and "hunter2secret" not in result.output


def test_connection_errors_are_one_redacted_line(make_db) -> None:
    url = "postgresql://postgres:topsecretpw@127.0.0.1:5432/dbt_does_not_exist_x"
    with pytest.raises(DbtoolsError) as info:
        migrations.apply_all(url, MIGRATIONS)
    assert "topsecretpw" not in str(info.value)
    assert "does not exist" in str(info.value)
    assert info.value.exit_code == 2


# --- rollback: confirmation and empty rollback files --------------------------------------


def test_rollback_on_dev_asks_like_every_destructive_command(project: Project) -> None:
    migrations.apply_all(project.dev_url, MIGRATIONS)
    result = project.invoke("migrate", "rollback", "--target", "dev")  # no terminal, no --yes
    assert result.exit_code == 4
    assert "refusing without confirmation" in result.output and "--yes" in result.output
    assert applied_migrations(project.dev_url) == HEAD

    result = project.invoke("migrate", "rollback", "--target", "dev", "--dry-run")
    assert result.exit_code == 0, result.output  # a dry run changes nothing: no question
    result = project.invoke("migrate", "rollback", "--target", "dev", "--yes")
    assert result.exit_code == 0, result.output
    assert applied_migrations(project.dev_url) == HEAD[:-1]


@pytest.mark.parametrize(
    "content",
    ["", "   \n\n\t\n", "-- Undo 0004: nothing yet\n\n", "/* block */\n-- line\n;\n", None],
    ids=["empty", "whitespace", "comments", "comments-and-semicolon", "missing"],
)
def test_an_empty_rollback_file_is_refused_naming_it(
    project: Project, own_migrations: Path, content: str | None
) -> None:
    (own_migrations / "0004_add_nickname.sql").write_text(
        '-- depends: 0003_rename_user_image\nALTER TABLE "User" ADD COLUMN "nickname" text;\n'
    )
    rollback_file = own_migrations / "0004_add_nickname.rollback.sql"
    if content is not None:
        rollback_file.write_text(content)
    assert project.invoke("migrate", "apply", "--target", "dev").exit_code == 0
    before = schema_objects(project.dev_url)

    for extra in (["--dry-run"], ["--yes"]):
        result = project.invoke("migrate", "rollback", "--target", "dev", *extra)
        assert result.exit_code == 3, result.output  # as the sync's rollback refuses it
        assert str(rollback_file) in result.output and "nothing changed" in result.output
        assert "Traceback" not in result.output
    assert schema_objects(project.dev_url) == before  # the column stays, and so does the record
    assert applied_migrations(project.dev_url)[-1] == "0004_add_nickname"
    # ... so the migration can still be rolled back once its file is written
    rollback_file.write_text('ALTER TABLE "User" DROP COLUMN "nickname";\n')
    result = project.invoke("migrate", "rollback", "--target", "dev", "--yes")
    assert result.exit_code == 0, result.output
    assert project.invoke("migrate", "apply", "--target", "dev").exit_code == 0


def test_assert_no_drift_is_the_one_refusal(project: Project, own_migrations: Path) -> None:
    migrations.apply_all(project.dev_url, own_migrations)
    migrations.apply_all(project.prod_url, own_migrations, upto=HEAD[0])
    conn = psycopg2.connect(project.dev_url)
    try:
        assert migrations.assert_no_drift(conn, own_migrations, "dev").drift == []
        edited = own_migrations / "0001_initial.sql"
        edited.write_text(edited.read_text() + "\n-- edited\n")
        with pytest.raises(MigrationError, match="changed since they were applied") as info:
            migrations.assert_no_drift(conn, own_migrations, "dev database x")
        assert info.value.exit_code == 1
    finally:
        conn.close()
    # every command that applies or rolls back migrations refuses the same way, writing nothing
    for args in (
        ["migrate", "apply", "--target", "dev"],
        ["migrate", "rollback", "--target", "dev", "--yes"],
        ["migrate", "apply", "--target", "prod", "--yes"],
        ["migrate", "mark", "--target", "dev", "--yes"],
        ["sync-schema", "--yes"],
    ):
        result = project.invoke(*args)
        assert result.exit_code == 1, (args, result.output)
        assert "0001_initial" in result.output and "changed since" in result.output
    assert applied_migrations(project.dev_url) == HEAD
    assert applied_migrations(project.prod_url) == HEAD[:1]


BAD = (
    "-- depends: 0003_rename_user_image\n"
    "-- a table for reviews\n"
    'CREATE TABLE "Review" ("id" TEXT PRIMARY KEY);\n'
    "\n"
    'CREATE TABEL "Oops" ("id" TEXT);\n'
)


def test_a_failing_statement_is_named_by_file_line_and_column(
    project: Project, own_migrations: Path
) -> None:
    assert project.invoke("migrate", "apply", "--target", "dev").exit_code == 0
    (own_migrations / "0004_typo.sql").write_text(BAD)
    (own_migrations / "0004_typo.rollback.sql").write_text('DROP TABLE "Review";\n')

    result = project.invoke("migrate", "apply", "--target", "dev")

    assert result.exit_code == 1, result.output
    line = result.output.strip().splitlines()[0]
    assert 'syntax error at or near "TABEL"' in line
    assert 'at 0004_typo.sql line 5, column 8: CREATE TABEL "Oops" ("id" TEXT);' in line, line


def test_the_in_transaction_runner_names_the_place_too(
    project: Project, own_migrations: Path
) -> None:
    from dbtools import migrate_txn

    assert project.invoke("migrate", "apply", "--target", "dev").exit_code == 0
    (own_migrations / "0004_typo.sql").write_text(BAD)
    (own_migrations / "0004_typo.rollback.sql").write_text('DROP TABLE "Review";\n')
    conn = psycopg2.connect(project.dev_url)
    try:
        steps = migrate_txn.plan(own_migrations, ["0004_typo"], "apply")
        with pytest.raises(MigrationError) as caught:
            migrate_txn.run(conn, steps, "apply", "dev database x")
        conn.rollback()
    finally:
        conn.close()
    assert 'at 0004_typo.sql line 5, column 8: CREATE TABEL "Oops"' in caught.value.message


def _scratch_databases() -> list[str]:
    rows = execute(
        SERVER_URL, "SELECT datname FROM pg_database WHERE datname LIKE 'dbtools_mtest_%'"
    )
    return [r[0] for r in rows]


def test_migrate_test_round_trips_the_projects_migrations(project: Project) -> None:
    before = _scratch_databases()
    result = project.invoke("migrate", "test", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [s["migration"] for s in data["steps"]] == HEAD
    assert all(s["apply"] == s["rollback"] == s["reapply"] == "ok" for s in data["steps"])
    assert _scratch_databases() == before  # the scratch database is gone
    assert applied_migrations(project.dev_url) == []  # dev itself untouched


@pytest.mark.parametrize(
    "rollback,said",
    [
        ("-- nothing to undo\n", "0004_two_tables.rollback.sql) has no statements"),
        (
            'DROP TABLE "Review";\n',
            "0004_two_tables.rollback.sql does not undo 0004_two_tables: only in after its "
            "rollback: table public.Rating",
        ),
    ],
    ids=["empty", "incomplete"],
)
def test_migrate_test_names_a_rollback_that_does_not_undo(
    project: Project, own_migrations: Path, rollback: str, said: str
) -> None:
    (own_migrations / "0004_two_tables.sql").write_text(
        "-- depends: 0003_rename_user_image\n"
        'CREATE TABLE "Review" ("id" TEXT PRIMARY KEY);\n'
        'CREATE TABLE "Rating" ("id" TEXT PRIMARY KEY);\n'
    )
    (own_migrations / "0004_two_tables.rollback.sql").write_text(rollback)
    before = _scratch_databases()

    result = project.invoke("migrate", "test")

    assert result.exit_code == 1, result.output
    assert "migrate test: FAILED" in result.output
    problem = next(line for line in result.output.splitlines() if line.startswith("problem: "))
    assert said in problem, problem
    assert _scratch_databases() == before


def test_migrate_test_data_fills_the_projects_tables_and_passes(project: Project) -> None:
    before = _scratch_databases()
    result = project.invoke("migrate", "test", "--data", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["data"] is True and data["ok"] is True
    # every table of the marketplace got rows, foreign keys and enums included
    assert data["notes"] == [] and data["filled"]["public.User"] == 20
    assert data["filled"]["public.Booking"] == 20
    assert _scratch_databases() == before


RENAME = (
    "-- depends: 0003_rename_user_image\n"
    + 'ALTER TABLE "User" RENAME COLUMN "name" TO "fullName";\n'
)


@pytest.mark.parametrize(
    "rollback,loses",
    [
        ('ALTER TABLE "User" RENAME COLUMN "fullName" TO "name";\n', False),
        # the schema comes back exactly, the names do not
        (
            'ALTER TABLE "User" DROP COLUMN "fullName";\n'
            'ALTER TABLE "User" ADD COLUMN "name" TEXT;\n',
            True,
        ),
    ],
    ids=["rename-back", "drop-and-add"],
)
def test_migrate_test_data_names_a_rollback_that_loses_values(
    project: Project, own_migrations: Path, rollback: str, loses: bool
) -> None:
    (own_migrations / "0004_rename_name.sql").write_text(RENAME)
    (own_migrations / "0004_rename_name.rollback.sql").write_text(rollback)

    plain = project.invoke("migrate", "test")
    result = project.invoke("migrate", "test", "--data")

    assert plain.exit_code == 0, plain.output  # the schema alone cannot tell
    if not loses:
        assert result.exit_code == 0, result.output
        return
    assert result.exit_code == 1, result.output
    problem = next(line for line in result.output.splitlines() if line.startswith("problem: "))
    assert problem.startswith(
        "problem: 0004_rename_name rollback: 0004_rename_name.rollback.sql loses rows or "
        "values that 0004_rename_name kept: public.User.name: values changed"
    ), problem
