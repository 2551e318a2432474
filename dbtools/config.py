r"""Settings: env files, environment variables, the [dbtools] section of setup.cfg; URLs.

Connection URLs come from the environment first (DEV_DATABASE_URL / PROD_DATABASE_URL), else
from DATABASE_URL in `.env` (dev) or `.env.production.local` (prod). Each side reads only its
own file, so loading the wrong file can never point prod at dev. Files are parsed by
python-dotenv: a hand-made parser once cut URLs at the first '=' and lost `?sslmode=require`.

A URL is parsed once, here (`parse_url`), into its parts, decoded; every other form
(libpq keywords for psycopg2 and yoyo, a password-free conninfo plus PGPASSWORD for pg_dump,
a display form) is built from those parts. Re-spelling a URL string (un-escaping it for one
consumer) once sent migrations for a database named `a#b` to the database `a`.

Every password seen while resolving URLs is registered here so that `redact()` can remove
it from any text before it is printed, logged or raised. Short passwords (1-2 characters)
cannot be replaced everywhere in a text without destroying it; they are removed wherever
they stand in a password position (URL userinfo, `password=`), like every other.

Table lists (`excluded_tables`, `preserved_tables`, `schemas`) are comma- or line-separated.
A name holding a comma, a dot, a quote, leading/trailing spaces or anything unusual is written
as a double-quoted SQL identifier: `"50% off"`, `"a,b"`, `"say ""hi"" here"`; a schema-qualified
name is `schema.table` or `"my schema"."my.table"`. Characters that cannot be typed inside a
setup.cfg value (a newline) are written as a SQL unicode identifier: `U&"line\000Abreak"`
(`\XXXX` or `\+XXXXXX` code points, `\\` for a backslash). Settings are read raw: `%` has
no special meaning.
"""

from __future__ import annotations

import configparser
import io
import math
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, unquote

import psycopg2.extensions
from dotenv import dotenv_values

from dbtools.errors import ConfigError

ENVS = ("dev", "prod")
ENV_FILES = {"dev": ".env", "prod": ".env.production.local"}
ENV_VARS = {"dev": "DEV_DATABASE_URL", "prod": "PROD_DATABASE_URL"}

_secrets: set[str] = set()
_secrets_lock = threading.Lock()
# Below this length a secret is only removed where it stands as a password (see redact).
_MIN_FREE_TEXT_SECRET = 3


def register_secret(value: str | None) -> None:
    """Remember a secret (and its percent-encoded forms) so that redact() removes it."""
    if not value:
        return
    forms = {value, unquote(value), quote(value, safe=""), quote(unquote(value), safe="")}
    with _secrets_lock:
        _secrets.update(f for f in forms if f)


_SCHEME = re.compile(r"^(postgres(?:ql)?)://", re.IGNORECASE)
# A password in URL userinfo: everything from after "user:" to the last '@' of the token
# (a raw '@' in a password is common; masking too much is harmless, too little is a leak).
_URL_PASSWORD = re.compile(r"(postgres(?:ql)?://[^\s:/?#@]*:)(\S*)(@)", re.IGNORECASE)
# password=... of a URL query: the value ends at the next parameter.
_QUERY_PASSWORD = re.compile(r"""([?&]password=)([^&\s"']*)""", re.IGNORECASE)
# password=... of a keyword/value conninfo (or free text): quoted, or up to whitespace.
_KW_PASSWORD = re.compile(
    r"((?:^|(?<=[\s,;(]))password\s*=\s*)('(?:[^'\\]|\\.)*'?|(?:\\.|\S)+)",
    re.IGNORECASE | re.DOTALL,
)


def redact(text: str) -> str:
    """Remove every known password and anything shaped like one from text."""
    text = _URL_PASSWORD.sub(r"\1***\3", text)
    text = _QUERY_PASSWORD.sub(r"\1***", text)
    text = _KW_PASSWORD.sub(r"\1***", text)
    with _secrets_lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if len(secret) >= _MIN_FREE_TEXT_SECRET:
            text = text.replace(secret, "***")
        else:
            # In a password position only: ":pw@" of a URL, "password=pw" of a conninfo.
            text = text.replace(f":{secret}@", ":***@")
    return text


def mask_url(url: str) -> str:
    """The URL as it may be shown: password replaced by ***, everything else as written.

    Works on any string, well-formed or not: a URL that cannot be parsed is shown with
    whatever sits between "user:" and its last '@' masked.
    """
    url = str(url)
    scheme = _SCHEME.match(url)
    if scheme is None:
        # keyword/value conninfo, or garbage: password= entries masked
        register_secret(_kw_password(url))
        return redact(url)
    rest = url[scheme.end() :]
    end = _authority_end(rest)
    at = rest.rfind("@", 0, end)
    if at < 0 and "@" in rest[end:] and ":" in rest[:end]:
        # A raw '/' or '?' in the password ends the authority early: mask to the last '@'.
        at = rest.rfind("@")
    if at >= 0:
        userinfo = rest[:at]
        user, colon, password = userinfo.partition(":")
        if colon:
            register_secret(password)
            rest = f"{user}:***{rest[at:]}"
    return redact(url[: scheme.end()] + rest)


def _authority_end(rest: str) -> int:
    """Where the authority of a URL (after the scheme) ends: the first '/' or '?'.

    '#' is not special: libpq reads it as part of the database name, and so do we.
    """
    ends = [i for i in (rest.find("/"), rest.find("?")) if i >= 0]
    return min(ends) if ends else len(rest)


# libpq keywords that are not a part of their own here; everything else goes to `params`.
_OWN_KEYS = ("host", "hostaddr", "port", "dbname", "user", "password")


@dataclass(frozen=True)
class UrlParts:
    """A connection target, decoded: the one source of every connection form dbtools builds."""

    host: str  # the first host (multi-host URLs: see hosts)
    port: int  # the first port
    dbname: str
    user: str
    params: dict[str, str]  # every other libpq keyword (sslmode, options, ...), decoded
    hosts: tuple[str, ...] = ()
    ports: tuple[int, ...] = ()
    password: str | None = field(default=None, repr=False)
    hostaddr: str | None = None

    def libpq(self, *, password: bool = True) -> dict[str, str]:
        """libpq keyword parameters (psycopg2.connect(**kw), yoyo's backend)."""
        kw: dict[str, str] = dict(self.params)
        kw["dbname"] = self.dbname
        if self.hosts:
            kw["host"] = ",".join(self.hosts)
        if self.hostaddr:
            kw["hostaddr"] = self.hostaddr
        if self.ports:
            kw["port"] = ",".join(str(p) for p in self.ports)
        if self.user:
            kw["user"] = self.user
        if password and self.password is not None:
            kw["password"] = self.password
        return kw

    def conninfo(self, *, password: bool = False) -> str:
        """A keyword/value conninfo string, quoted by libpq's rules (pg_dump --dbname)."""
        return str(psycopg2.extensions.make_dsn(**self.libpq(password=password)))

    def url(self, *, password: bool = False) -> str:
        """A postgresql:// URL, every part percent-encoded; the password as *** unless asked."""
        userinfo = ""
        if self.user or self.password is not None:
            userinfo = quote(self.user, safe="")
            if self.password is not None:
                userinfo += ":" + (quote(self.password, safe="") if password else "***")
            userinfo += "@"
        hosts = [
            (f"[{h}]" if ":" in h else quote(h, safe="")) if not h.startswith("/") else ""
            for h in (self.hosts or ("",))
        ]
        ports = list(self.ports) + [None] * (len(hosts) - len(self.ports))
        netloc = ",".join(h + (f":{p}" if p else "") for h, p in zip(hosts, ports, strict=False))
        query = dict(self.params)
        sockets = [h for h in self.hosts if h.startswith("/")]
        if sockets:
            query["host"] = ",".join(self.hosts)
        q = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in query.items())
        return f"postgresql://{userinfo}{netloc}/{quote(self.dbname, safe='')}" + (
            f"?{q}" if q else ""
        )

    def env(self) -> dict[str, str]:
        """PG* environment variables for a libpq subprocess: the password travels here,
        never on a command line that other local users can read."""
        out = {"PGDATABASE": self.dbname}
        if self.password is not None:
            out["PGPASSWORD"] = self.password
        return out


def _malformed(url: str, why: str) -> ConfigError:
    return ConfigError(f"malformed database URL {mask_url(url)}: {why}")


def _port(url: str, raw: str) -> int:
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise _malformed(url, f"port {raw!r} is not a number between 1 and 65535")
    return int(raw)


def _split_hosts(url: str, hostport: str) -> tuple[list[str], list[int]]:
    hosts: list[str] = []
    ports: list[int] = []
    for item in hostport.split(",") if hostport else []:
        if item.startswith("["):  # [IPv6]:port
            close = item.find("]")
            if close < 0:
                raise _malformed(url, "unclosed '[' in the host")
            host, port = item[1:close], item[close + 1 :]
            if port and not port.startswith(":"):
                raise _malformed(url, f"unexpected {port!r} after the IPv6 address")
            port = port[1:]
        else:
            host, _, port = item.partition(":")
        hosts.append(unquote(host))
        if port:
            ports.append(_port(url, port))
    return hosts, ports


def _parse_uri(url: str) -> dict[str, str]:
    """libpq's URI grammar, decoded; the userinfo ends at the *last* '@' of the authority."""
    scheme = _SCHEME.match(url)
    if scheme is None:
        raise _malformed(url, "expected postgresql://user:password@host/db")
    rest = url[scheme.end() :]
    end = _authority_end(rest)
    authority, tail = rest[:end], rest[end:]
    kw: dict[str, str] = {}
    at = authority.rfind("@")
    if at >= 0:
        user, colon, password = authority[:at].partition(":")
        if user:
            kw["user"] = unquote(user)
        if colon:
            register_secret(password)
            kw["password"] = unquote(password)
        authority = authority[at + 1 :]
    hosts, ports = _split_hosts(url, authority)
    if any(h for h in hosts):
        kw["host"] = ",".join(hosts)
    if ports:
        kw["port"] = ",".join(str(p) for p in ports)
    path, _, query = tail.partition("?")
    if path.startswith("/") and path[1:]:
        kw["dbname"] = unquote(path[1:])
    for item in query.split("&") if query else []:
        key, eq, value = item.partition("=")
        if not eq:
            raise _malformed(url, f"query parameter {unquote(key)!r} has no value")
        if key == "password":
            register_secret(value)
        kw[unquote(key)] = unquote(value)
    return kw


def parse_url(url: str) -> UrlParts:
    """Split a postgres:// URL (or a keyword/value conninfo string) into decoded parts.

    Raises ConfigError, without the password, when it is malformed.
    """
    if "\x00" in url:
        raise _malformed(url, "it contains a NUL character")
    if _SCHEME.match(url) or "://" in url.split("=", 1)[0]:
        kw = _parse_uri(url)
    else:
        try:
            kw = dict(psycopg2.extensions.parse_dsn(url))
        except psycopg2.Error:
            raise _malformed(url, "expected postgresql://user:password@host/db") from None
        register_secret(kw.get("password"))
    register_secret(kw.get("password"))
    dbname = kw.get("dbname", "")
    if not dbname:
        raise ConfigError(f"database URL {mask_url(url)} names no database")
    hosts = [h for h in kw.get("host", "").split(",")] if kw.get("host") else []
    port_text = kw.get("port", "")
    ports = [_port(url, p) for p in port_text.split(",")] if port_text else []
    return UrlParts(
        host=(hosts[0] if hosts else "") or "localhost",
        port=ports[0] if ports else 5432,
        dbname=dbname,
        user=kw.get("user", ""),
        params={k: v for k, v in kw.items() if k not in _OWN_KEYS},
        hosts=tuple(hosts),
        ports=tuple(ports),
        password=kw.get("password"),
        hostaddr=kw.get("hostaddr"),
    )


# --- table lists ------------------------------------------------------------------------------

_UNICODE_ESCAPE = re.compile(r"\\(\\|\+[0-9A-Fa-f]{6}|[0-9A-Fa-f]{4})")


def _unescape_unicode(body: str, where: str) -> str:
    def one(m: re.Match[str]) -> str:
        code = m.group(1)
        if code == "\\":
            return "\\"
        value = int(code.lstrip("+"), 16)
        if value > 0x10FFFF or value == 0:
            raise ConfigError(f"{where}: \\{code} is not a usable code point")
        return chr(value)

    out = _UNICODE_ESCAPE.sub(one, body)
    if "\\" in _UNICODE_ESCAPE.sub("", body):
        raise ConfigError(f'{where}: a backslash in U&"..." must be \\XXXX, \\+XXXXXX or \\\\')
    return out


def _quoted(raw: str, i: int, where: str) -> tuple[str, int]:
    """The body of a "quoted" (or U&"escaped") identifier starting at i; and where it ends."""
    unicode = raw[i] != '"'
    i += 3 if unicode else 1
    body = ""
    while True:
        close = raw.find('"', i)
        if close < 0:
            raise ConfigError(f"{where}: unterminated quoted name in {raw.strip()!r}")
        body += raw[i:close]
        i = close + 1
        if raw[i : i + 1] != '"':
            break
        body += '"'  # "" is a literal quote, as in SQL
        i += 1
    if unicode:
        body = _unescape_unicode(body, where)
    if not body:
        raise ConfigError(f"{where}: empty quoted name in {raw.strip()!r}")
    return body, i


def split_names(raw: str, where: str) -> tuple[tuple[str, ...], ...]:
    """A comma/newline separated list of names, each bare, "quoted" or U&"escaped", and
    optionally qualified (`schema.table`); every name as its tuple of identifiers."""
    items: list[tuple[str, ...]] = []
    i, n = 0, len(raw)
    while i < n:
        if raw[i] in ", \t\r\n":  # empty items (a trailing comma, a blank line) are skipped
            i += 1
            continue
        parts: list[str] = []
        while True:
            while i < n and raw[i] in " \t\r":
                i += 1
            if raw[i : i + 1] == '"' or raw[i : i + 3].upper() == 'U&"':
                name, i = _quoted(raw, i, where)
            else:
                start = i
                while i < n and raw[i] not in ',\n."':
                    i += 1
                name = raw[start:i].strip()
                if raw[i : i + 1] == '"':
                    raise ConfigError(
                        f"{where}: a quote inside a bare name in {raw.strip()!r}; write the "
                        'whole name in double quotes, doubling inner quotes: "say ""hi"""'
                    )
                if not name:
                    raise ConfigError(f"{where}: empty name in {raw.strip()!r}")
            parts.append(name)
            while i < n and raw[i] in " \t\r":
                i += 1
            if i < n and raw[i] == ".":
                i += 1
                continue
            if i < n and raw[i] not in ",\n":
                raise ConfigError(f"{where}: unexpected {raw[i]!r} after {name!r}")
            break
        items.append(tuple(parts))
    return tuple(items)


def _schema_names(names: tuple[tuple[str, ...], ...], where: str) -> tuple[str, ...]:
    for parts in names:
        if len(parts) != 1:
            raise ConfigError(f"{where}: a schema name cannot be qualified: {'.'.join(parts)!r}")
    return tuple(p[0] for p in names)


def _table_keys(
    names: tuple[tuple[str, ...], ...], default_schema: str, where: str
) -> tuple[str, ...]:
    """Configured tables as the catalog compares them: a bare name, or "schema.table".

    A bare name holding a dot of its own ("a.b" quoted) is qualified with the first schema,
    so that it is not read back as schema a, table b.
    """
    out: list[str] = []
    for parts in names:
        if len(parts) > 2:
            raise ConfigError(f"{where}: {'.'.join(parts)!r} has more than schema.table")
        if len(parts) == 1 and "." in parts[0]:
            parts = (default_schema, parts[0])
        out.append(".".join(parts))
    return tuple(out)


# --- reading files ------------------------------------------------------------------------------


def _read_text(path: Path, what: str) -> str:
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


def _read_cfg(path: Path) -> configparser.RawConfigParser:
    """setup.cfg, read raw (no %-interpolation: a table may be called `50% off`)."""
    parser = configparser.RawConfigParser()
    try:
        parser.read_string(_read_text(path, "settings file"), source=str(path))
    except configparser.Error as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"cannot read {path}: {first}") from None
    return parser


def find_root(start: Path | None = None) -> Path:
    """The project root: the nearest directory upwards holding a setup.cfg with [dbtools]."""
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        cfg = candidate / "setup.cfg"
        if cfg.is_file():
            try:
                parser = _read_cfg(cfg)
            except ConfigError:
                if candidate == here:
                    raise  # the project's own settings file is broken: say so
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
        text = _read_text(path, "env file")
        try:
            values = dotenv_values(stream=io.StringIO(text))
        except Exception as exc:  # python-dotenv's own parse errors
            raise ConfigError(f"cannot read env file {path}: {type(exc).__name__}") from None
        url = values.get("DATABASE_URL")
        if url:
            return url, f"DATABASE_URL in {ENV_FILES[env]}"
    return None, "unset"


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
    parser = _read_cfg(cfg_path) if cfg_path.is_file() else configparser.RawConfigParser()
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
        return _table_keys(names(key), schemas[0], f"setup.cfg [dbtools] {key}")

    urls: dict[str, str | None] = {}
    sources: dict[str, str] = {}
    for env in ENVS:
        url, source = _resolve_url(root, env, environ)
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
    schemas = _schema_names(names("schemas", "public"), "setup.cfg [dbtools] schemas")
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


def _kw_password(conninfo: str) -> str | None:
    try:
        return dict(psycopg2.extensions.parse_dsn(conninfo)).get("password")
    except psycopg2.Error:
        return None
