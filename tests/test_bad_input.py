"""Bad input: one clear line, the documented exit code, never a traceback, no password shown."""

from __future__ import annotations

import json
import time

import pytest
from click.testing import CliRunner

from dbtools.cli import main
from dbtools.db import quote_ident

from support.pgpeer import free_port, peer
from support.project import Project


def run(project: Project, *args: str, **env: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), env={**project.env, **env})
    return result.exit_code, result.stdout, result.stderr


def assert_one_line_error(stderr: str, fragment: str) -> None:
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert errors and fragment in errors[0], stderr
    assert "Traceback" not in stderr


def test_missing_url_is_exit_2(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROD_DATABASE_URL")
    env = {k: v for k, v in project.env.items() if k != "PROD_DATABASE_URL"}
    result = CliRunner().invoke(main, ["verify"], env={**env, "PROD_DATABASE_URL": None})  # type: ignore[dict-item]
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, "no prod database URL: set PROD_DATABASE_URL")


def test_malformed_url_is_exit_2(project: Project) -> None:
    code, _, err = run(project, "verify", PROD_DATABASE_URL="postgresql://u:Sekr3tPw@h:port/db")
    assert code == 2
    assert_one_line_error(err, "malformed database URL")
    assert "Sekr3tPw" not in err


def test_connection_refused_is_exit_2(project: Project) -> None:
    url = f"postgresql://app:Sekr3tPw@127.0.0.1:{free_port()}/{project.prod_name}"
    code, _, err = run(project, "verify", PROD_DATABASE_URL=url)
    assert code == 2
    assert_one_line_error(err, "cannot connect to prod database")
    assert "Sekr3tPw" not in err


def test_unresponsive_host_fails_within_the_connect_timeout(project: Project) -> None:
    with peer("silent") as port:
        url = f"postgresql://app:Sekr3tPw@127.0.0.1:{port}/{project.prod_name}"
        started = time.monotonic()
        code, _, err = run(project, "verify", PROD_DATABASE_URL=url, DBTOOLS_CONNECT_TIMEOUT="2")
        elapsed = time.monotonic() - started
    assert code == 2
    assert_one_line_error(err, "cannot connect to prod database")
    assert elapsed < 30  # a hang guard: it must not wait forever on a silent host


def test_wrong_password_is_exit_2_and_not_shown(project: Project) -> None:
    with peer("password-fails") as port:
        url = f"postgresql://app:WrongPw-991@127.0.0.1:{port}/{project.prod_name}"
        code, out, err = run(project, "verify", "--json", PROD_DATABASE_URL=url)
    assert code == 2
    data = json.loads(out)
    assert "password authentication failed" in data["sides"]["prod"]["error"]
    assert "WrongPw-991" not in out + err


def test_nonexistent_database_is_exit_2(project: Project) -> None:
    url = project.prod_url.rsplit("/", 1)[0] + "/no_such_database_here"
    code, _, err = run(project, "verify", PROD_DATABASE_URL=url)
    assert code == 2
    assert_one_line_error(err, 'database "no_such_database_here" does not exist')


def test_pooler_host_is_warned_for_reads(project: Project) -> None:
    from dbtools import db
    from dbtools.errors import SafetyError

    t = db.Target("prod", "postgresql://u:p@ep-x-pooler.neon.tech/db?sslmode=require", "db")
    warnings = db.check_endpoint(t, "read")
    assert "Use the direct host ep-x.neon.tech" in warnings[0]
    with pytest.raises(SafetyError, match=r"direct host ep-x\.neon\.tech"):
        db.check_endpoint(t, "copy")


def test_remote_host_without_sslmode_is_refused_unless_allowed(project: Project) -> None:
    url = "postgresql://u:Sekr3tPw@db.example.com/db"
    code, _, err = run(project, "verify", PROD_DATABASE_URL=url)
    assert code == 3
    assert_one_line_error(err, "lacks sslmode=require")
    assert "Sekr3tPw" not in err


@pytest.mark.parametrize(
    "setup",
    [
        lambda root: (root / ".env.production.local").write_bytes(b"\xff\xd8\xff\xe0JFIF\x00"),
        lambda root: (root / "setup.cfg").write_bytes(b"\x00\x01\x02\xff"),
        lambda root: (root / "setup.cfg").write_text("[dbtools]\nexcluded_tables = 50% off\n["),
    ],
    ids=["binary env file", "binary setup.cfg", "malformed setup.cfg"],
)
def test_unreadable_settings_files_are_one_line_exit_2(project: Project, setup) -> None:
    setup(project.root)
    env = {"PROD_DATABASE_URL": None}
    result = CliRunner().invoke(main, ["verify"], env={**project.env, **env})  # type: ignore[dict-item]
    assert result.exit_code == 2, result.output
    assert_one_line_error(result.stderr, "cannot read")
    assert "internal error" not in result.stderr


@pytest.mark.parametrize("value", ["nan", "inf", "1e309", "-1"])
def test_bad_lock_timeout_is_one_line_exit_2(project: Project, value: str) -> None:
    code, _, err = run(project, "migrate", "apply", "--target", "dev", DBTOOLS_LOCK_TIMEOUT=value)
    assert code == 2
    assert_one_line_error(err, "DBTOOLS_LOCK_TIMEOUT must be a number")


def test_odd_table_names_are_excluded(project: Project) -> None:
    from support.db import execute

    names = ["50% off", "a,b", "x.y", 'q"t', "ü space", "line\nbreak", "kept"]
    for name in names:
        execute(project.dev_url, f"CREATE TABLE {quote_ident(name)} (id int)")
    cfg = project.root / "setup.cfg"
    cfg.write_text(
        cfg.read_text()
        + 'excluded_tables = 50% off, "a,b", "x.y", "q""t", ü space, U&"line\\000Abreak"\n'
    )
    _, out, err = run(project, "verify", "--json")
    tables = json.loads(out)["sides"]["dev"]["tables"]
    assert list(tables) == ["public.kept"], (tables, err)
