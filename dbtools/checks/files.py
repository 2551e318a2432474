"""checks/*.sql as data: the header format (`-- check:`, `-- summary:`, `-- list:`,
`-- expect:` ...), parsed, validated and loaded from the project's checks directory."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from dbtools.checks.model import BUILTINS, KINDS, Check, Expectation
from dbtools.checks.read_only import read_only_problem
from dbtools.config import Settings
from dbtools.errors import ConfigError

_EXPECT = re.compile(
    r"^(?P<rows>rows\s+)?(?P<op>!=|<>|>=|<=|=|>|<)\s*"
    r"(?P<rhs>dev|true|false|'(?:[^']|'')*'|-?\d+(?:\.\d+)?)$",
    re.IGNORECASE,
)
_HEADER = re.compile(r"^--\s*(?P<key>[a-z_]+)\s*:\s*(?P<value>.*?)\s*$", re.IGNORECASE)


def _parse_rhs(raw: str) -> Any:
    low = raw.lower()
    if low in ("true", "false"):
        return low == "true"
    if raw.startswith("'"):
        return raw[1:-1].replace("''", "'")
    return float(raw) if "." in raw else int(raw)


def parse_expectation(text: str, where: str) -> Expectation:
    m = _EXPECT.match(text.strip())
    if not m:
        raise ConfigError(
            f"{where}: cannot read expectation {text!r}",
            hint="write e.g. '-- expect: = 18', '-- expect: = dev' or '-- expect: rows > 0'",
        )
    rhs_raw = m.group("rhs")
    against_dev = rhs_raw.lower() == "dev"
    return Expectation(
        text=text.strip(),
        rows=bool(m.group("rows")),
        op=m.group("op"),
        rhs="dev" if against_dev else _parse_rhs(rhs_raw),
        against_dev=against_dev,
    )


def _validated(check: Check) -> Check:
    """check itself, or ConfigError naming its file:line and name when it is not read-only."""
    if check.builtin is None:
        problem = read_only_problem(check.query, check.kind)
        if problem:
            raise ConfigError(f"{check.source}: {check.kind} {check.name!r} {problem}")
    return check


def parse_entries(text: str, source: str = "<checks>") -> list[Check]:
    """Every entry (check, summary, list) of one file's text, in order; ConfigError names
    file:line on any mistake."""
    entries: list[Check] = []
    current: dict[str, Any] | None = None
    in_header = False

    def finish() -> None:
        if current is None:
            return
        query = "\n".join(current["sql"]).strip()
        query = re.sub(r";\s*$", "", query).strip()
        where, kind, name = current["source"], current["kind"], current["name"]
        if current["builtin"]:
            if current["builtin"] not in BUILTINS:
                known = ", ".join(BUILTINS)
                raise ConfigError(
                    f"{where}: unknown builtin {current['builtin']!r} (known: {known})"
                )
            if query:
                # A query under a builtin would never run: say so rather than ignore it.
                raise ConfigError(
                    f"{where}: check {name!r} is builtin "
                    f"{current['builtin']!r} and cannot also have a query"
                )
        else:
            if not query:
                raise ConfigError(f"{where}: {kind} {name!r} has no query")
            if kind == "check" and not current["expect"]:
                raise ConfigError(f"{where}: check {name!r} has no '-- expect:' line")
        entries.append(
            _validated(
                Check(
                    name=name,
                    source=where,
                    description=current["description"],
                    query=query,
                    expectations=tuple(current["expect"]),
                    builtin=current["builtin"],
                    kind=kind,
                )
            )
        )

    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        header = _HEADER.match(stripped)
        where = f"{source}:{number}"
        if header and header.group("key").lower() in KINDS:
            finish()
            kind, name = header.group("key").lower(), header.group("value")
            if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
                raise ConfigError(f"{where}: {kind} name {name!r} must be a single word")
            if any(e.kind == kind and e.name == name for e in entries):
                raise ConfigError(f"{where}: {kind} {name!r} is declared twice")
            current = {
                "kind": kind,
                "name": name,
                "source": where,
                "description": "",
                "expect": [],
                "builtin": None,
                "sql": [],
            }
            in_header = True
            continue
        if current is None:
            continue  # comments and blank lines before the first entry
        if in_header and header:
            key, value = header.group("key").lower(), header.group("value")
            if key == "description":
                current["description"] = value
            elif current["kind"] != "check":
                raise ConfigError(
                    f"{where}: unknown header {key!r} for {current['kind']} "
                    f"{current['name']!r} (a {current['kind']} takes only description)"
                )
            elif key == "expect":
                current["expect"].append(parse_expectation(value, where))
            elif key == "builtin":
                current["builtin"] = value
            else:
                raise ConfigError(
                    f"{where}: unknown header {key!r} (use description, expect or builtin)"
                )
            continue
        if in_header and not stripped:
            continue
        in_header = False
        current["sql"].append(line)
    finish()
    return entries


def parse_checks(text: str, source: str = "<checks>") -> list[Check]:
    """The checks declared in one file's text (its other entries are validated, not kept)."""
    return [e for e in parse_entries(text, source) if e.kind == "check"]


def load_entries(settings: Settings) -> list[Check]:
    """Every entry of settings.checks_dir/*.sql, files in name order; names unique per kind."""
    directory = settings.checks_dir
    if not directory.is_dir():
        raise ConfigError(f"checks directory {directory} does not exist")
    out: list[Check] = []
    for path in sorted(directory.glob("*.sql")):
        shown = _display(path, settings)
        found = parse_entries(_read_checks_file(path, shown), shown)
        if not found:
            raise ConfigError(
                f"{shown}: declares no check, summary or list (each starts with a "
                "'-- check: <name>', '-- summary: <name>' or '-- list: <name>' line)"
            )
        for entry in found:
            if any(e.kind == entry.kind and e.name == entry.name for e in out):
                raise ConfigError(f"{entry.source}: {entry.kind} {entry.name!r} is declared twice")
            out.append(entry)
    return out


def load_checks(settings: Settings) -> list[Check]:
    """Every check of settings.checks_dir/*.sql, files in name order; names must be unique."""
    out = [e for e in load_entries(settings) if e.kind == "check"]
    if not out:
        raise ConfigError(f"no checks found in {settings.checks_dir}/*.sql")
    return out


def load_summary(settings: Settings) -> list[Check]:
    """The summary entries of settings.checks_dir/*.sql (none without that directory); the
    whole directory is validated, so a bad check file is a ConfigError here too."""
    if not settings.checks_dir.is_dir():
        return []
    return [e for e in load_entries(settings) if e.kind == "summary"]


def load_list(settings: Settings, name: str) -> Check:
    """The `-- list: <name>` entry of settings.checks_dir/*.sql, or a ConfigError naming the
    lists there are."""
    lists = [e for e in load_entries(settings) if e.kind == "list"]
    found = next((e for e in lists if e.name == name), None)
    if found is None:
        known = ", ".join(e.name for e in lists) or "none"
        raise ConfigError(
            f"no list {name!r} in {settings.checks_dir}/*.sql (lists declared: {known})",
            hint="declare one with a '-- list: <name>' line followed by its query",
        )
    return found


def _read_checks_file(path: Path, shown: str) -> str:
    """The text of one checks file; ConfigError naming it when it is not readable UTF-8 text."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{shown}: cannot read it: {exc.strerror or exc}") from None
    if b"\x00" in data:
        raise ConfigError(f"{shown}: is a binary file (it holds NUL bytes), not SQL checks")
    try:
        text = data.decode("utf-8-sig")  # an editor's byte-order mark is not part of the text
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{shown}: is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "save it as UTF-8"
        ) from None
    if not text.strip():
        raise ConfigError(f"{shown}: is empty (each check starts with a '-- check: <name>' line)")
    return text


def _display(path: Path, settings: Settings) -> str:
    try:
        return str(path.relative_to(settings.root))
    except ValueError:
        return str(path)
