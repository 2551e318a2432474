"""Connection URLs parsed once (`parse_url`) into `UrlParts`, the source of every other form.

A URL is parsed once, here (`parse_url`), into its parts, decoded; every other form
(libpq keywords for psycopg2 and yoyo, a password-free conninfo plus PGPASSWORD for pg_dump,
a display form) is built from those parts. Re-spelling a URL string (un-escaping it for one
consumer) once sent migrations for a database named `a#b` to the database `a`.

Every password met while parsing is registered with `redaction`, and every error shows the
URL through `mask_url`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import quote, unquote

import psycopg2.extensions

from dbtools.config.redaction import SCHEME, authority_end, mask_url, register_secret
from dbtools.errors import ConfigError

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
    scheme = SCHEME.match(url)
    if scheme is None:
        raise _malformed(url, "expected postgresql://user:password@host/db")
    rest = url[scheme.end() :]
    end = authority_end(rest)
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
    if SCHEME.match(url) or "://" in url.split("=", 1)[0]:
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
