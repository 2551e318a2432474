"""Where URLs and settings come from, and how they are shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from dbtools.config import load_settings, mask_url, parse_url, redact
from dbtools.errors import ConfigError

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
    with pytest.raises(ConfigError, match="retention_days must be a number"):
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
