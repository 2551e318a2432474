"""The manifest's field validators: each names the field and what is wrong with it."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from dbtools.snapshot.format.layout import _HEX64, CLOCK_SKEW, utc_now


class _Malformed(Exception):
    """One malformed manifest field: where it is and what is wrong with it."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}")
        self.where = where
        self.problem = problem


def _show(value: Any) -> str:
    """A value as one short line (json escapes newlines and control characters)."""
    text = json.dumps(value, ensure_ascii=True, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _key(where: str, key: str) -> str:
    return f"{where}[{json.dumps(key, ensure_ascii=True)}]"


def _need(data: dict[str, Any], key: str, where: str) -> Any:
    if key not in data:
        raise _Malformed(f"{where}.{key}" if where else key, "missing")
    return data[key]


def _dict(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Malformed(where, f"expected an object, got {_show(value)}")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise _Malformed(where, f"expected a list, got {_show(value)}")
    return value


def _str(value: Any, where: str, *, empty: bool = True) -> str:
    if not isinstance(value, str) or (not empty and not value):
        kind = "a string" if empty else "a non-empty string"
        raise _Malformed(where, f"expected {kind}, got {_show(value)}")
    if "\x00" in value:
        raise _Malformed(where, "contains a NUL character")
    return value


def _count(value: Any, where: str) -> int:
    # bool is an int in Python; a manifest saying "rows": true is malformed, not 1.
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _Malformed(where, f"expected a non-negative integer, got {_show(value)}")
    return value


def _strings(value: Any, where: str, *, empty: bool = True) -> list[str]:
    items = _list(value, where)
    out = [_str(v, f"{where}[{i}]", empty=empty) for i, v in enumerate(items)]
    if len(set(out)) != len(out):
        raise _Malformed(where, "lists a name twice")
    return out


def _sha256(value: Any, where: str, *, empty: bool = False) -> str:
    text = _str(value, where)
    if not (_HEX64.match(text) or (empty and text == "")):
        raise _Malformed(where, f"expected a sha256 hex digest, got {_show(value)}")
    return text


def check_relative_name(rel: str) -> str | None:
    """Why a file name a manifest lists could point outside its snapshot; None when it cannot.

    Only plain relative names of Parquet files are accepted: no absolute path, no `..`, no
    empty or `.` component, no backslash, no hidden file (the manifest and build leftovers).
    """
    if not rel:
        return "is empty"
    if "\x00" in rel or "\\" in rel:
        return "contains a NUL or backslash"
    if rel.startswith("/") or Path(rel).is_absolute():
        return "is an absolute path; a snapshot lists only files inside itself"
    parts = rel.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return "has an empty, '.' or '..' component; it could point outside the snapshot"
    if any(p.startswith(".") for p in parts):
        return "names a hidden file; a snapshot lists only its Parquet files"
    if not rel.endswith(".parquet"):
        return "is not a .parquet file"
    return None


def _column(value: Any, where: str) -> dict[str, Any]:
    col = _dict(value, where)
    _str(_need(col, "name", where), f"{where}.name", empty=False)
    _str(_need(col, "pg_type", where), f"{where}.pg_type", empty=False)
    for key in ("arrow_type", "encoding", "base_type", "element_type", "fallback"):
        if col.get(key) is not None:
            _str(col[key], f"{where}.{key}")
    for key in ("typmod", "array_dims"):
        v = col.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
            raise _Malformed(f"{where}.{key}", f"expected an integer, got {_show(v)}")
    if col.get("enum_labels") is not None:
        _strings(col["enum_labels"], f"{where}.enum_labels")
    if "domain" in col and not isinstance(col["domain"], bool):
        raise _Malformed(f"{where}.domain", f"expected true or false, got {_show(col['domain'])}")
    return dict(col)


def _columns(value: Any, where: str) -> list[dict[str, Any]]:
    cols = [_column(c, f"{where}[{i}]") for i, c in enumerate(_list(value, where))]
    names = [c["name"] for c in cols]
    if len(set(names)) != len(names):
        raise _Malformed(where, "lists a column twice")
    return cols


def _sequence(value: Any, where: str) -> dict[str, Any]:
    seq = _dict(value, where)
    name = _str(_need(seq, "name", where), f"{where}.name", empty=False)
    schema, dot, bare = name.partition(".")
    if not dot or not schema or not bare:
        raise _Malformed(f"{where}.name", f"expected schema.sequence, got {_show(name)}")
    owned_by = seq.get("owned_by")
    if owned_by is not None:
        _str(owned_by, f"{where}.owned_by", empty=False)
    last = seq.get("last_value")
    if last is not None and (isinstance(last, bool) or not isinstance(last, int)):
        raise _Malformed(f"{where}.last_value", f"expected an integer or null, got {_show(last)}")
    called = seq.get("is_called", False)
    if not isinstance(called, bool):
        raise _Malformed(f"{where}.is_called", f"expected true or false, got {_show(called)}")
    return {"name": name, "owned_by": owned_by, "last_value": last, "is_called": called}


def _sequences(value: Any, where: str) -> list[dict[str, Any]]:
    return [_sequence(s, f"{where}[{i}]") for i, s in enumerate(_list(value, where))]


def _created(value: Any, where: str) -> datetime:
    text = _str(value, where, empty=False)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise _Malformed(where, f"{_show(text)} is not an ISO 8601 time") from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise _Malformed(where, f"{_show(text)} has no time zone")
    if moment > utc_now() + CLOCK_SKEW:
        raise _Malformed(
            where,
            f"{_show(text)} lies in the future (more than {int(CLOCK_SKEW.total_seconds())} "
            "seconds of clock skew)",
        )
    return moment


def _source(value: Any, where: str) -> dict[str, Any] | None:
    if value is None:
        return None
    src = _dict(value, where)
    system = src.get("system_identifier")
    if system is not None:
        _str(system, f"{where}.system_identifier", empty=False)
    oid = _need(src, "database_oid", where)
    if isinstance(oid, bool) or not isinstance(oid, int) or oid <= 0:
        raise _Malformed(f"{where}.database_oid", f"expected a positive integer, got {_show(oid)}")
    database = _str(_need(src, "database", where), f"{where}.database", empty=False)
    return {"system_identifier": system, "database_oid": oid, "database": database}


def _hex(value: Any, where: str, digits: int) -> str:
    text = _str(value, where)
    if len(text) != digits or any(c not in "0123456789abcdef" for c in text):
        raise _Malformed(where, f"expected {digits} lowercase hex digits, got {_show(value)}")
    return text


def _encryption(value: Any, where: str) -> dict[str, str] | None:
    """How the snapshot's files are encrypted (snapshot.encryption): scheme and key id."""
    if value is None:
        return None
    data = _dict(value, where)
    return {
        "scheme": _str(_need(data, "scheme", where), f"{where}.scheme", empty=False),
        "key_id": _hex(_need(data, "key_id", where), f"{where}.key_id", 16),
    }
