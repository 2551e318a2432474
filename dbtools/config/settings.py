"""The Settings object, the range of every numeric setting, and `load_settings` that builds it.

`load_settings` reads setup.cfg [dbtools], the env files and the environment (`sources`),
parses the table and schema lists (`names`) and registers every URL's password for
redaction (`redaction`) before anything else can print it. Outside any project it refuses
with the line that says which setup.cfg it looked for, unless the environment configures the
run alone (docs/SETTINGS.md, "The project root").
"""

from __future__ import annotations

import configparser
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from dbtools.config.archive import is_remote, local_root, parse_s3
from dbtools.config.names import schema_names, split_names, table_keys
from dbtools.config.redaction import mask_url, register_secret
from dbtools.config.sources import (
    ENV_FILES,
    ENV_VARS,
    ENVS,
    find_root,
    no_project,
    read_cfg,
    resolve_url,
)
from dbtools.errors import ConfigError

_T = TypeVar("_T")


@dataclass(frozen=True)
class Settings:
    """Everything dbtools needs to know about a project; built once per CLI run.

    Inside a project every setting is known. Outside any project (only when the environment
    names the archive, DBTOOLS_SNAPSHOT_DIR) `no_project` holds the line saying which
    setup.cfg was looked for, and reading a setting only setup.cfg can give (migrations_dir,
    checks_dir, the table and schema lists) raises it as a ConfigError.
    """

    root: Path
    urls: dict[str, str | None] = field(default_factory=dict)
    url_sources: dict[str, str] = field(default_factory=dict)
    expected_names: dict[str, str] = field(default_factory=dict)
    snapshot_dir: Path = Path("snapshots")
    retention_days: int = 30
    keep_min: int = 3
    lock_timeout_seconds: float = 10.0
    connect_timeout_seconds: int = 10
    allow_insecure: bool = False
    no_project: str = ""  # outside a project: "no setup.cfg with a [dbtools] section in ..."
    # What only setup.cfg says, read through the properties below; None outside a project.
    # (dataclasses.replace(settings, _schemas=..., _excluded_tables=...) sets a snapshot's own.)
    _schemas: tuple[str, ...] | None = ("public",)
    _excluded_tables: tuple[str, ...] | None = ()
    _preserved_tables: tuple[str, ...] | None = ()
    _checks_dir: Path | None = Path("checks")
    _migrations_dir: Path | None = Path("migrations")

    @property
    def in_project(self) -> bool:
        return not self.no_project

    def _project(self, value: _T | None, key: str) -> _T:
        if value is None:
            raise ConfigError(f"{self.no_project} (setup.cfg [dbtools] {key} is needed)")
        return value

    @property
    def schemas(self) -> tuple[str, ...]:
        return self._project(self._schemas, "schemas")

    @property
    def excluded_tables(self) -> tuple[str, ...]:
        return self._project(self._excluded_tables, "excluded_tables")

    @property
    def preserved_tables(self) -> tuple[str, ...]:
        return self._project(self._preserved_tables, "preserved_tables")

    @property
    def checks_dir(self) -> Path:
        return self._project(self._checks_dir, "checks_dir")

    @property
    def migrations_dir(self) -> Path:
        return self._project(self._migrations_dir, "migrations_dir")

    def url(self, env: str) -> str:
        """The URL for dev or prod, or a ConfigError saying where it was looked for."""
        url = self.urls.get(env)
        if not url:
            if self.no_project:
                raise ConfigError(
                    f"no {env} database URL: set {ENV_VARS[env]} (outside a project no "
                    f"{ENV_FILES[env]} is read: {self.no_project})"
                )
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
    """Read setup.cfg [dbtools], env files and environment into one Settings object.

    root None: the project around the current directory (`find_root`). Outside any project
    the environment alone configures the run, and only if it names the archive
    (DBTOOLS_SNAPSHOT_DIR): otherwise a ConfigError says which setup.cfg was looked for, so
    no command writes an archive into, or reads migrations from, a directory that is no
    project (docs/SETTINGS.md, "The project root").
    """
    environ = dict(os.environ if environ is None else environ)
    missing = ""
    if root is None:
        found = find_root()
        if found is None:
            missing = no_project()
            if not environ.get("DBTOOLS_SNAPSHOT_DIR"):
                raise ConfigError(missing)
        root = found or Path.cwd().resolve()
    cfg_path = root / "setup.cfg"
    in_project = not missing
    parser = (
        read_cfg(cfg_path) if in_project and cfg_path.is_file() else configparser.RawConfigParser()
    )
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

    # The archive's keys (snapshot/encryption.py) are secrets like passwords: registered for
    # redaction before anything can print them, whatever their spelling.
    for name in ("DBTOOLS_ARCHIVE_KEY", "DBTOOLS_ARCHIVE_OLD_KEYS"):
        for raw in environ.get(name, "").split(","):
            register_secret(raw.strip())

    urls: dict[str, str | None] = {}
    sources: dict[str, str] = {}
    for env in ENVS:
        url, source = resolve_url(root if in_project else None, env, environ)
        if url:
            mask_url(url)  # registers the password, however the URL is spelled
        urls[env], sources[env] = url, source

    # Relative paths, the environment's included, are the project root's, never the current
    # directory's: dbtools works alike from every directory of the project. (Outside a
    # project, root is the current directory: DBTOOLS_SNAPSHOT_DIR is the shell's path.)
    archive = environ.get("DBTOOLS_SNAPSHOT_DIR") or get("snapshot_dir", "snapshots")
    # s3://bucket/prefix: the archive is read and written through a private local folder
    # that stands for it (config/archive.py); it is absolute, so the root is not prefixed.
    snapshot_dir = local_root(parse_s3(archive)) if is_remote(archive) else Path(archive)
    # No default: the names are the project's (setup.cfg [dbtools]). Unset, "" makes every
    # write a ConfigError (safety.assert_name) and `dbtools verify` a configuration problem.
    expected = {
        "dev": environ.get("DBTOOLS_DEV_DATABASE") or get("dev_database", ""),
        "prod": environ.get("DBTOOLS_PROD_DATABASE") or get("prod_database", ""),
    }
    project: dict[str, Any]
    if in_project:
        schemas = schema_names(names("schemas", "public"), "setup.cfg [dbtools] schemas")
        schemas = schemas or ("public",)

        def tables(key: str) -> tuple[str, ...]:
            return table_keys(names(key), schemas[0], f"setup.cfg [dbtools] {key}")

        project = {
            "_schemas": schemas,
            "_excluded_tables": tables("excluded_tables"),
            "_preserved_tables": tables("preserved_tables"),
            "_checks_dir": root / get("checks_dir", "checks"),
            "_migrations_dir": root / get("migrations_dir", "migrations"),
        }
    else:  # only what setup.cfg could say is unknown; reading it raises `missing`
        project = {
            "_schemas": None,
            "_excluded_tables": None,
            "_preserved_tables": None,
            "_checks_dir": None,
            "_migrations_dir": None,
        }
    return Settings(
        root=root,
        urls=urls,
        url_sources=sources,
        expected_names=expected,
        snapshot_dir=snapshot_dir if snapshot_dir.is_absolute() else root / snapshot_dir,
        retention_days=int(number("retention_days", "30")),
        keep_min=int(number("keep_min", "3")),
        lock_timeout_seconds=number("lock_timeout_seconds", "10"),
        connect_timeout_seconds=int(number("connect_timeout_seconds", "10")),
        allow_insecure=allow_insecure,
        no_project=missing,
        **project,
    )
