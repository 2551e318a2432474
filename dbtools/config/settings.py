"""The Settings object, the range of every numeric setting, and `load_settings` that builds it.

`load_settings` reads setup.cfg [dbtools], the env files and the environment (`sources`),
parses the table and schema lists (`names`) and registers every URL's password for
redaction (`redaction`) before anything else can print it.
"""

from __future__ import annotations

import configparser
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from dbtools.config.names import schema_names, split_names, table_keys
from dbtools.config.redaction import mask_url
from dbtools.config.sources import ENV_FILES, ENV_VARS, ENVS, find_root, read_cfg, resolve_url
from dbtools.errors import ConfigError


@dataclass(frozen=True)
class Settings:
    """Everything dbtools needs to know about a project; built once per CLI run."""

    root: Path
    urls: dict[str, str | None] = field(default_factory=dict)
    url_sources: dict[str, str] = field(default_factory=dict)
    expected_names: dict[str, str] = field(default_factory=dict)
    snapshot_dir: Path = Path("snapshots")
    retention_days: int = 30
    keep_min: int = 3
    schemas: tuple[str, ...] = ("public",)
    excluded_tables: tuple[str, ...] = ()
    preserved_tables: tuple[str, ...] = ()
    checks_dir: Path = Path("checks")
    migrations_dir: Path = Path("migrations")
    lock_timeout_seconds: float = 10.0
    connect_timeout_seconds: int = 10
    allow_insecure: bool = False

    def url(self, env: str) -> str:
        """The URL for dev or prod, or a ConfigError saying where it was looked for."""
        url = self.urls.get(env)
        if not url:
            raise ConfigError(
                f"no {env} database URL: set {ENV_VARS[env]} or DATABASE_URL in "
                f"{ENV_FILES[env]} ({self.root / ENV_FILES[env]})",
                hint=f"export {ENV_VARS[env]}=postgresql://user:password@host/dbname",
            )
        return url


# name -> (whole number?, smallest, largest): one rule per numeric setting, env or setup.cfg.
# lock_timeout is sent to the server in milliseconds as a 32-bit integer: at most ~24 days.
NUMBERS: dict[str, tuple[bool, float, float]] = {
    "retention_days": (True, 0, 36500),
    "keep_min": (True, 0, 1_000_000),
    "lock_timeout_seconds": (False, 0.001, 86400),
    "connect_timeout_seconds": (True, 1, 86400),
}
ENV_NUMBERS = {
    "DBTOOLS_LOCK_TIMEOUT": "lock_timeout_seconds",
    "DBTOOLS_CONNECT_TIMEOUT": "connect_timeout_seconds",
}


def _number(key: str, raw: str, source: str) -> float:
    """A numeric setting, or a ConfigError naming where it came from and what is allowed."""
    whole, low, high = NUMBERS[key]
    kind = "a whole number" if whole else "a number"
    text = raw.strip()
    try:
        value: float = int(text) if whole else float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not low <= value <= high:
        raise ConfigError(f"{source} must be {kind} from {low:g} to {high:g}, not {raw!r}")
    return value


def load_settings(
    root: Path | None = None,
    environ: dict[str, str] | None = None,
    *,
    allow_insecure: bool = False,
) -> Settings:
    """Read setup.cfg [dbtools], env files and environment into one Settings object."""
    environ = dict(os.environ if environ is None else environ)
    root = root or find_root()
    cfg_path = root / "setup.cfg"
    parser = read_cfg(cfg_path) if cfg_path.is_file() else configparser.RawConfigParser()
    section = dict(parser["dbtools"]) if parser.has_section("dbtools") else {}

    def get(key: str, default: str) -> str:
        return str(section.get(key, default))

    def number(key: str, default: str) -> float:
        env_name = next((e for e, k in ENV_NUMBERS.items() if k == key), None)
        if env_name and environ.get(env_name):
            return _number(key, environ[env_name], env_name)
        return _number(key, get(key, default), f"setup.cfg [dbtools] {key}")

    def names(key: str, default: str = "") -> tuple[tuple[str, ...], ...]:
        return split_names(get(key, default), f"setup.cfg [dbtools] {key}")

    def tables(key: str) -> tuple[str, ...]:
        return table_keys(names(key), schemas[0], f"setup.cfg [dbtools] {key}")

    urls: dict[str, str | None] = {}
    sources: dict[str, str] = {}
    for env in ENVS:
        url, source = resolve_url(root, env, environ)
        if url:
            mask_url(url)  # registers the password, however the URL is spelled
        urls[env], sources[env] = url, source

    snapshot_dir = Path(environ.get("DBTOOLS_SNAPSHOT_DIR") or get("snapshot_dir", "snapshots"))
    # No default: the names are the project's (setup.cfg [dbtools]). Unset, "" makes every
    # write a ConfigError (safety.assert_name) and `dbtools verify` a configuration problem.
    expected = {
        "dev": environ.get("DBTOOLS_DEV_DATABASE") or get("dev_database", ""),
        "prod": environ.get("DBTOOLS_PROD_DATABASE") or get("prod_database", ""),
    }
    schemas = schema_names(names("schemas", "public"), "setup.cfg [dbtools] schemas")
    schemas = schemas or ("public",)
    return Settings(
        root=root,
        urls=urls,
        url_sources=sources,
        expected_names=expected,
        snapshot_dir=snapshot_dir if snapshot_dir.is_absolute() else root / snapshot_dir,
        retention_days=int(number("retention_days", "30")),
        keep_min=int(number("keep_min", "3")),
        schemas=schemas,
        excluded_tables=tables("excluded_tables"),
        preserved_tables=tables("preserved_tables"),
        checks_dir=root / get("checks_dir", "checks"),
        migrations_dir=root / get("migrations_dir", "migrations"),
        lock_timeout_seconds=number("lock_timeout_seconds", "10"),
        connect_timeout_seconds=int(number("connect_timeout_seconds", "10")),
        allow_insecure=allow_insecure,
    )
