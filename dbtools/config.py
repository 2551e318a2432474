"""Settings: env files, environment variables, the [dbtools] section of setup.cfg; URL masking.

Connection URLs come from the environment first (DEV_DATABASE_URL / PROD_DATABASE_URL), else
from DATABASE_URL in `.env` (dev) or `.env.production.local` (prod). Each side reads only its
own file, so loading the wrong file can never point prod at dev. Files are parsed by
python-dotenv: a hand-made parser once cut URLs at the first '=' and lost `?sslmode=require`.

Every password seen while resolving URLs is registered here so that `redact()` can remove
it from any text before it is printed, logged or raised.
"""

from __future__ import annotations

import configparser
import contextlib
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

from dotenv import dotenv_values

from dbtools.errors import ConfigError

ENVS = ("dev", "prod")
ENV_FILES = {"dev": ".env", "prod": ".env.production.local"}
ENV_VARS = {"dev": "DEV_DATABASE_URL", "prod": "PROD_DATABASE_URL"}

_secrets: set[str] = set()
_secrets_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Remember a secret so that redact() removes it from any later text."""
    if value and len(value) >= 3:
        with _secrets_lock:
            _secrets.add(value)
            _secrets.add(unquote(value))


_URL_PASSWORD = re.compile(r"(postgres(?:ql)?://[^:/@\s]*:)([^@\s]*)(@)")
_KW_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def redact(text: str) -> str:
    """Remove every known password and anything shaped like one from text."""
    text = _URL_PASSWORD.sub(r"\1***\3", text)
    text = _KW_PASSWORD.sub(r"\1***", text)
    with _secrets_lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def mask_url(url: str) -> str:
    """The URL as it may be shown: password replaced by ***, everything else kept."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return redact(url)
    if password is None:
        return redact(url)
    # Keep host and port exactly as written (a malformed port must still be shown, not raised).
    netloc = f"{parts.username or ''}:***@{parts.netloc.rpartition('@')[2]}"
    return redact(urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment)))


@dataclass(frozen=True)
class UrlParts:
    host: str
    port: int
    dbname: str
    user: str
    params: dict[str, str]


def parse_url(url: str) -> UrlParts:
    """Split a postgres:// URL; raise ConfigError (without the password) when malformed."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"malformed database URL {mask_url(url)}: {exc}") from None
    if parts.scheme not in ("postgres", "postgresql"):
        raise ConfigError(
            f"malformed database URL {mask_url(url)}: expected postgresql://user:password@host/db"
        )
    register_secret(parts.password)
    dbname = unquote(parts.path.lstrip("/"))
    if not dbname:
        raise ConfigError(f"database URL {mask_url(url)} names no database")
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    host = parts.hostname or params.get("host", "")
    register_secret(params.get("password"))
    return UrlParts(
        host=host or "localhost",
        port=port or int(params.get("port", "5432") or 5432),
        dbname=dbname,
        user=unquote(parts.username or ""),
        params=params,
    )


def _split_list(raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in re.split(r"[,\n]", raw) if item.strip())


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


def find_root(start: Path | None = None) -> Path:
    """The project root: the nearest directory upwards holding a setup.cfg with [dbtools]."""
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        cfg = candidate / "setup.cfg"
        if cfg.is_file():
            parser = configparser.ConfigParser()
            try:
                parser.read(cfg)
            except configparser.Error:
                continue
            if parser.has_section("dbtools"):
                return candidate
    return here


def _resolve_url(root: Path, env: str, environ: dict[str, str]) -> tuple[str | None, str]:
    direct = environ.get(ENV_VARS[env])
    if direct:
        return direct, ENV_VARS[env]
    path = root / ENV_FILES[env]
    if path.is_file():
        values = dotenv_values(path)
        url = values.get("DATABASE_URL")
        if url:
            return url, f"DATABASE_URL in {ENV_FILES[env]}"
    return None, "unset"


def _env_number(
    environ: dict[str, str], name: str, default: float, *, whole: bool = False
) -> float:
    raw = environ.get(name)
    if not raw:
        return default
    try:
        value = int(raw) if whole else float(raw)
    except ValueError:
        kind = "a whole number of seconds" if whole else "a number of seconds"
        raise ConfigError(f"{name} must be {kind}, not {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{name} must be positive, not {raw!r}")
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
    parser = configparser.ConfigParser()
    cfg_path = root / "setup.cfg"
    if cfg_path.is_file():
        try:
            parser.read(cfg_path)
        except configparser.Error as exc:
            raise ConfigError(f"cannot read {cfg_path}: {exc}") from None
    section = parser["dbtools"] if parser.has_section("dbtools") else {}

    def get(key: str, default: str) -> str:
        return str(section.get(key, default))

    def get_number(key: str, default: str, kind: type[int] | type[float]) -> float:
        raw = get(key, default)
        try:
            return kind(raw)
        except ValueError:
            raise ConfigError(f"setup.cfg [dbtools] {key} must be a number, not {raw!r}") from None

    urls: dict[str, str | None] = {}
    sources: dict[str, str] = {}
    for env in ENVS:
        url, source = _resolve_url(root, env, environ)
        if url:
            with contextlib.suppress(ValueError):
                register_secret(urlsplit(url).password)
        urls[env], sources[env] = url, source

    snapshot_dir = Path(environ.get("DBTOOLS_SNAPSHOT_DIR") or get("snapshot_dir", "snapshots"))
    expected = {
        "dev": environ.get("DBTOOLS_DEV_DATABASE") or get("dev_database", "Buildappswith-dev"),
        "prod": environ.get("DBTOOLS_PROD_DATABASE") or get("prod_database", "Buildappswith-prod"),
    }
    return Settings(
        root=root,
        urls=urls,
        url_sources=sources,
        expected_names=expected,
        snapshot_dir=snapshot_dir if snapshot_dir.is_absolute() else root / snapshot_dir,
        retention_days=int(get_number("retention_days", "30", int)),
        keep_min=int(get_number("keep_min", "3", int)),
        schemas=_split_list(get("schemas", "public")) or ("public",),
        excluded_tables=_split_list(get("excluded_tables", "")),
        preserved_tables=_split_list(get("preserved_tables", "")),
        checks_dir=root / get("checks_dir", "checks"),
        migrations_dir=root / get("migrations_dir", "migrations"),
        lock_timeout_seconds=_env_number(
            environ, "DBTOOLS_LOCK_TIMEOUT", get_number("lock_timeout_seconds", "10", float)
        ),
        connect_timeout_seconds=int(
            _env_number(
                environ,
                "DBTOOLS_CONNECT_TIMEOUT",
                get_number("connect_timeout_seconds", "10", int),
                whole=True,
            )
        ),
        allow_insecure=allow_insecure,
    )
