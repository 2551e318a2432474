"""Where settings are read from: env files, the environment, setup.cfg; the project root.

The project root is the nearest directory, from the current one upwards, whose setup.cfg has a
[dbtools] section; every path setting and both env files are read relative to it, so dbtools
works alike from any directory of the project. Outside any project `find_root` is None and
`no_project` is the line that says so (docs/SETTINGS.md, "The project root").

Connection URLs come from the environment first (DEV_DATABASE_URL / PROD_DATABASE_URL), else
from DATABASE_URL in `.env` (dev) or `.env.production.local` (prod). Each side reads only its
own file, so loading the wrong file can never point prod at dev. Files are parsed by
python-dotenv: a hand-made parser once cut URLs at the first '=' and lost `?sslmode=require`.

A file that cannot be read, is not UTF-8 or holds NUL bytes is a ConfigError naming it.
"""

from __future__ import annotations

import configparser
import io
from pathlib import Path

from dotenv import dotenv_values

from dbtools.errors import ConfigError

ENVS = ("dev", "prod")
ENV_FILES = {"dev": ".env", "prod": ".env.production.local"}
ENV_VARS = {"dev": "DEV_DATABASE_URL", "prod": "PROD_DATABASE_URL"}


def read_text(path: Path, what: str) -> str:
    """A settings or env file's text; a ConfigError naming it if unreadable, not UTF-8 or binary."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"cannot read {what} {path}: not UTF-8 text (byte {exc.start})") from None
    if "\x00" in text:
        raise ConfigError(f"cannot read {what} {path}: it contains NUL bytes (a binary file?)")
    return text


def read_cfg(path: Path) -> configparser.RawConfigParser:
    """setup.cfg, read raw (no %-interpolation: a table may be called `50% off`)."""
    parser = configparser.RawConfigParser()
    try:
        parser.read_string(read_text(path, "settings file"), source=str(path))
    except configparser.Error as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"cannot read {path}: {first}") from None
    return parser


def find_root(start: Path | None = None) -> Path | None:
    """The project root: the nearest directory upwards holding a setup.cfg with [dbtools];
    None outside any project (`no_project` says where it was looked for)."""
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        cfg = candidate / "setup.cfg"
        if cfg.is_file():
            try:
                parser = read_cfg(cfg)
            except ConfigError:
                if candidate == here:
                    raise  # the project's own settings file is broken: say so
                continue
            if parser.has_section("dbtools"):
                return candidate
    return None


def no_project(start: Path | None = None) -> str:
    """The one line that says which setup.cfg was looked for, and where, in vain."""
    here = (start or Path.cwd()).resolve()
    return f"no setup.cfg with a [dbtools] section in {here} or any parent directory"


def resolve_url(root: Path | None, env: str, environ: dict[str, str]) -> tuple[str | None, str]:
    """One side's URL and where it came from: its variable, its env file, or "unset".
    root None (outside a project): the variable only, no env file is read."""
    direct = environ.get(ENV_VARS[env])
    if direct:
        return direct, ENV_VARS[env]
    path = root / ENV_FILES[env] if root is not None else None
    if path is not None and path.is_file():
        text = read_text(path, "env file")
        try:
            values = dotenv_values(stream=io.StringIO(text))
        except Exception as exc:  # python-dotenv's own parse errors
            raise ConfigError(f"cannot read env file {path}: {type(exc).__name__}") from None
        url = values.get("DATABASE_URL")
        if url:
            return url, f"DATABASE_URL in {ENV_FILES[env]}"
    return None, "unset"
