"""Where URLs and settings come from, and how they are shown."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dbtools.config import find_root, load_settings, mask_url, parse_url, redact
from dbtools.errors import ConfigError

# No server: settings come from files and the environment (`pytest -m pure`).
pytestmark = pytest.mark.pure

NEON = (
    "postgresql://app:pa=ss&w0rd@ep-cool-dawn-123.eu-central-1.aws.neon.tech/"
    "Buildappswith-prod?sslmode=require&channel_binding=require"
)


def write(path: Path, text: str) -> None:
    path.write_text(text)


def test_query_string_with_equals_and_ampersand_survives_env_file(tmp_path: Path) -> None:
    write(tmp_path / ".env.production.local", f'DATABASE_URL="{NEON}"\n')
    settings = load_settings(tmp_path, environ={})
    assert settings.url("prod") == NEON
    assert settings.url_sources["prod"] == "DATABASE_URL in .env.production.local"
    parts = parse_url(settings.url("prod"))
    assert parts.params == {"sslmode": "require", "channel_binding": "require"}
    assert parts.dbname == "Buildappswith-prod"


def test_unquoted_url_with_equals_survives_env_file(tmp_path: Path) -> None:
    write(tmp_path / ".env", "# dev\nDATABASE_URL=postgresql://u:p@h/db?sslmode=require&a=b=c\n")
    assert load_settings(tmp_path, environ={}).url("dev") == (
        "postgresql://u:p@h/db?sslmode=require&a=b=c"
    )


def test_environment_wins_over_files(tmp_path: Path) -> None:
    write(tmp_path / ".env", "DATABASE_URL=postgresql://file@h/dev\n")
    settings = load_settings(tmp_path, environ={"DEV_DATABASE_URL": "postgresql://env@h/dev"})
    assert settings.url("dev") == "postgresql://env@h/dev"
    assert settings.url_sources["dev"] == "DEV_DATABASE_URL"


def test_each_side_reads_only_its_own_file(tmp_path: Path) -> None:
    # The seed once loaded the wrong env file and wiped dev: prod must never fall back to .env.
    write(tmp_path / ".env", "DATABASE_URL=postgresql://u@h/Buildappswith-dev\n")
    settings = load_settings(tmp_path, environ={"DATABASE_URL": "postgresql://u@h/whatever"})
    assert settings.url("dev").endswith("/Buildappswith-dev")
    with pytest.raises(ConfigError, match=r"no prod database URL.*PROD_DATABASE_URL"):
        settings.url("prod")


def test_setup_cfg_settings_and_env_overrides(tmp_path: Path) -> None:
    write(
        tmp_path / "setup.cfg",
        "[dbtools]\ndev_database = d1\nprod_database = p1\nretention_days = 7\n"
        "excluded_tables = public.audit, tmp\npreserved_tables = Account,\n  Session\n",
    )
    s = load_settings(tmp_path, environ={"DBTOOLS_PROD_DATABASE": "p2"})
    assert s.expected_names == {"dev": "d1", "prod": "p2"}
    assert s.retention_days == 7
    assert s.excluded_tables == ("public.audit", "tmp")
    assert s.preserved_tables == ("Account", "Session")
    assert s.snapshot_dir == tmp_path / "snapshots"


def test_bad_number_in_setup_cfg_is_a_config_error(tmp_path: Path) -> None:
    write(tmp_path / "setup.cfg", "[dbtools]\nretention_days = a month\n")
    with pytest.raises(ConfigError, match="retention_days must be a whole number"):
        load_settings(tmp_path, environ={})


def test_mask_url_hides_password_and_keeps_the_rest() -> None:
    masked = mask_url(NEON)
    assert "pa=ss&w0rd" not in masked
    assert masked == (
        "postgresql://app:***@ep-cool-dawn-123.eu-central-1.aws.neon.tech/"
        "Buildappswith-prod?sslmode=require&channel_binding=require"
    )


def test_redact_removes_registered_and_url_shaped_passwords() -> None:
    parse_url("postgresql://u:Zq9-secret-77@h/db")
    text = "failed: password Zq9-secret-77 for postgres://x:other@h/db; password=abc def"
    out = redact(text)
    assert "Zq9-secret-77" not in out and "other@" not in out and "abc" not in out


@pytest.mark.parametrize(
    "url, message",
    [
        ("mysql://u:p@h/db", "malformed database URL"),
        ("postgresql://u:p@h:notaport/db", "malformed database URL"),
        ("postgresql://u:p@h/", "names no database"),
    ],
)
def test_malformed_urls(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        parse_url(url)
    assert ":p@" not in str(info.value)


# --- unreadable files and numbers: one line, exit 2, naming the file or variable ------------


@pytest.mark.parametrize(
    "name, value",
    [
        (var, raw)
        for var in ("DBTOOLS_LOCK_TIMEOUT", "DBTOOLS_CONNECT_TIMEOUT")
        for raw in ("nan", "inf", "-inf", "1e309", "-1", "0", "ten", "1e400")
    ],
)
def test_bad_numbers_in_the_environment_name_the_variable(
    tmp_path: Path, name: str, value: str
) -> None:
    with pytest.raises(ConfigError, match=f"^{name} must be a .*number from") as info:
        load_settings(tmp_path, environ={name: value})
    assert info.value.exit_code == 2


@pytest.mark.parametrize(
    "key, value",
    [
        ("retention_days", "nan"),
        ("retention_days", "-1"),
        ("retention_days", "1e3"),
        ("keep_min", "-3"),
        ("keep_min", "inf"),
        ("lock_timeout_seconds", "nan"),
        ("lock_timeout_seconds", "inf"),
        ("lock_timeout_seconds", "1e309"),
        ("lock_timeout_seconds", "0"),
        ("connect_timeout_seconds", "0"),
        ("connect_timeout_seconds", "2.5"),
    ],
)
def test_bad_numbers_in_setup_cfg_name_the_key(tmp_path: Path, key: str, value: str) -> None:
    write(tmp_path / "setup.cfg", f"[dbtools]\n{key} = {value}\n")
    with pytest.raises(ConfigError, match=rf"^setup.cfg \[dbtools\] {key} must be"):
        load_settings(tmp_path, environ={})


def test_numbers_in_range_are_read(tmp_path: Path) -> None:
    write(tmp_path / "setup.cfg", "[dbtools]\nlock_timeout_seconds = 0.5\nkeep_min = 0\n")
    s = load_settings(tmp_path, environ={"DBTOOLS_CONNECT_TIMEOUT": " 7 "})
    assert (s.lock_timeout_seconds, s.keep_min, s.connect_timeout_seconds) == (0.5, 0, 7)


@pytest.mark.parametrize("env_file", [".env", ".env.production.local"])
@pytest.mark.parametrize(
    "data", [b"\xff\xfe\x00\x01binary", b"DATABASE_URL=postgresql://u@h/d\x00\n"]
)
def test_a_binary_env_file_is_a_config_error_naming_it(
    tmp_path: Path, env_file: str, data: bytes
) -> None:
    (tmp_path / env_file).write_bytes(data)
    with pytest.raises(ConfigError, match=rf"cannot read env file .*{env_file}"):
        load_settings(tmp_path, environ={})


@pytest.mark.parametrize(
    "data, why",
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not UTF-8|NUL"),
        (b"dev_database = x\n[dbtools]\n", "no section header"),
        (b"[dbtools]\nkeep_min = 1\nkeep_min = 2\n", "already exists"),
        (b"[dbtools]\n  indented continuation without key\n", "cannot read"),
    ],
)
def test_a_binary_or_malformed_setup_cfg_is_a_config_error_naming_it(
    tmp_path: Path, data: bytes, why: str
) -> None:
    (tmp_path / "setup.cfg").write_bytes(data)
    with pytest.raises(ConfigError, match=r"setup\.cfg") as info:
        load_settings(tmp_path, environ={})
    assert re.search(why, info.value.message), info.value.message
    with pytest.raises(ConfigError):
        find_root(tmp_path)


# --- table names --------------------------------------------------------------------------


def test_percent_and_odd_table_names_in_settings(tmp_path: Path) -> None:
    write(
        tmp_path / "setup.cfg",
        '[dbtools]\nschemas = public, "my schema"\n'
        'excluded_tables = 50% off, "a,b", "x.y", "q""t", ü space, public.audit,\n'
        '  "my schema"."t.1", U&"line\\000Abreak", \'single\'\n'
        "preserved_tables = %(x)s, Account\n",
    )
    s = load_settings(tmp_path, environ={})
    assert s.schemas == ("public", "my schema")
    assert s.excluded_tables == (
        "50% off",
        "a,b",
        "public.x.y",
        'q"t',
        "ü space",
        "public.audit",
        "my schema.t.1",
        "line\nbreak",
        "'single'",
    )
    assert s.preserved_tables == ("%(x)s", "Account")


@pytest.mark.parametrize(
    "value, why",
    [
        ('"unterminated', "unterminated"),
        ('say"hi', "quote inside a bare name"),
        ('"a" b', "unexpected"),
        ("a..b", "empty name"),
        ("a.b.c", "more than schema.table"),
        ('U&"\\zz"', "backslash"),
    ],
)
def test_malformed_table_lists_name_the_setting(tmp_path: Path, value: str, why: str) -> None:
    write(tmp_path / "setup.cfg", f"[dbtools]\nexcluded_tables = {value}\n")
    with pytest.raises(ConfigError, match=r"setup.cfg \[dbtools\] excluded_tables") as info:
        load_settings(tmp_path, environ={})
    assert why in info.value.message
