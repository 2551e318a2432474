r"""Table and schema lists of setup.cfg (`excluded_tables`, `preserved_tables`, `schemas`).

Table lists (`excluded_tables`, `preserved_tables`, `schemas`) are comma- or line-separated.
A name holding a comma, a dot, a quote, leading/trailing spaces or anything unusual is written
as a double-quoted SQL identifier: `"50% off"`, `"a,b"`, `"say ""hi"" here"`; a schema-qualified
name is `schema.table` or `"my schema"."my.table"`. Characters that cannot be typed inside a
setup.cfg value (a newline) are written as a SQL unicode identifier: `U&"line\000Abreak"`
(`\XXXX` or `\+XXXXXX` code points, `\\` for a backslash). Settings are read raw: `%` has
no special meaning.
"""

from __future__ import annotations

import re

from dbtools.errors import ConfigError

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


def schema_names(names: tuple[tuple[str, ...], ...], where: str) -> tuple[str, ...]:
    """Configured schemas: each one bare identifier, never qualified."""
    for parts in names:
        if len(parts) != 1:
            raise ConfigError(f"{where}: a schema name cannot be qualified: {'.'.join(parts)!r}")
    return tuple(p[0] for p in names)


def table_keys(
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
