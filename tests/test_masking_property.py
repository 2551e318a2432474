"""Masking holds for every URL shape libpq accepts, whatever characters the password holds.

The property: what mask_url and redact show does not depend on the password at all. Two
URLs differing only in their password mask to the same text, so no character of it (raw or
percent-encoded, 1 character or 40) can be read back. For passwords of 3 characters and
more the plain-text check is made too: neither form appears in the output.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from urllib.parse import quote

import psycopg2.extensions
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dbtools import config
from dbtools.config import mask_url, parse_url, redact, redaction

# No server: masking is string work (`pytest -m pure` runs it without PostgreSQL).
pytestmark = pytest.mark.pure

# Any printable character, the URL-special ones made likely; no NUL (libpq cannot carry it).
SPECIAL = "@:/?#%& '\"=\\,;ü€😀"
passwords = st.text(
    alphabet=st.one_of(
        st.sampled_from(SPECIAL),
        st.characters(blacklist_categories=("Cs", "Cc")),
    ),
    min_size=1,
    max_size=24,
)
PLACEHOLDER = "Placeholder-Pw-1"


@pytest.fixture(autouse=True)
def _own_secret_registry() -> Iterator[None]:
    """Secrets registered by generated examples must not leak into other tests' redaction."""
    saved = set(redaction.known_secrets)
    yield
    redaction.known_secrets.clear()
    redaction.known_secrets.update(saved)


def encoded(pw: str) -> str:
    return quote(pw, safe="")


SHAPES: dict[str, Callable[[str], str]] = {
    "encoded userinfo": lambda pw: f"postgresql://app:{encoded(pw)}@db.example.com/appdb",
    "raw userinfo": lambda pw: f"postgresql://app:{pw}@db.example.com:5433/appdb?sslmode=require",
    "postgres scheme": lambda pw: f"postgres://app:{encoded(pw)}@db.example.com/appdb",
    "multi-host": lambda pw: (
        f"postgresql://app:{encoded(pw)}@h1.example.com:5432,h2.example.com:5433/appdb"
        "?target_session_attrs=read-write"
    ),
    "query password": lambda pw: (
        f"postgresql://app@db.example.com/appdb?password={encoded(pw)}&sslmode=require"
    ),
    "keyword conninfo": lambda pw: str(
        psycopg2.extensions.make_dsn(host="db.example.com", dbname="appdb", password=pw)
    ),
}


def forms(pw: str) -> set[str]:
    return {pw, encoded(pw)}


def assert_hidden(pw: str, shown: str) -> None:
    if len(pw) >= 3 and set(pw) != {"*"}:  # "***" is what masking writes
        for form in forms(pw):
            assert form not in shown, (pw, shown)


@pytest.mark.parametrize("shape", list(SHAPES))
@settings(max_examples=150, deadline=None)
@given(pw=passwords)
def test_mask_url_does_not_depend_on_the_password(shape: str, pw: str) -> None:
    build = SHAPES[shape]
    mask_url(build(PLACEHOLDER))
    shown = mask_url(build(pw))
    assert shown == mask_url(build(PLACEHOLDER))
    assert "***" in shown
    assert_hidden(pw, shown)


@pytest.mark.parametrize("shape", list(SHAPES))
@settings(max_examples=150, deadline=None)
@given(pw=passwords)
def test_redact_hides_the_password_of_a_url_dbtools_loaded(shape: str, pw: str) -> None:
    url = SHAPES[shape](pw)
    mask_url(url)  # dbtools registers every password when it loads a URL
    text = f"error: cannot connect to {url}: connection refused"
    shown = redact(text)
    assert_hidden(pw, shown)
    if len(pw) < 3:
        # Short passwords are removed where they stand: the URL/conninfo slot shows ***.
        assert "***" in shown


@settings(max_examples=200, deadline=None)
@given(pw=passwords.filter(lambda p: not any(c in p for c in "/?")))
def test_parse_url_reads_back_a_raw_or_encoded_password(pw: str) -> None:
    assert parse_url(SHAPES["encoded userinfo"](pw)).password == pw
    assert parse_url(SHAPES["query password"](pw)).password == pw
    assert parse_url(SHAPES["keyword conninfo"](pw)).password == pw
    if "%" not in pw and "@" not in pw[-1:]:
        assert parse_url(f"postgresql://app:{pw}@db.example.com/appdb").password == pw


@settings(max_examples=100, deadline=None)
@given(pw=passwords)
def test_parsed_parts_never_show_the_password(pw: str) -> None:
    def shown(password: str) -> str:
        parts = parse_url(SHAPES["encoded userinfo"](password))
        return repr(parts) + parts.url() + parts.conninfo()

    assert shown(pw) == shown(PLACEHOLDER)
    assert "***" in shown(pw)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u:pa@ss@host/db",
        "postgresql://u:a@b:c/d?e#f@host/db",
        "postgresql://u:x@host/db",
        "postgresql://u:xy@host/db?sslmode=require",
        "postgres://u:x%40y@h/db",
        "postgresql://u:p w@h/db",
        "host=h dbname=d password='x y'",
        "host=h dbname=d password=x",
        "postgresql://u@h/db?password=xy&sslmode=require",
    ],
)
def test_known_shapes_hide_the_password(url: str) -> None:
    shown = mask_url(url)
    assert "***" in shown
    for leaked in ("pa@ss", "ss@host", "a@b:c/d?e#f", ":x@", ":xy@", "x%40y", "p w", "'x y'"):
        assert leaked not in shown, shown
    assert "password=x " not in shown and "password=xy" not in shown


# --- round trips: parts -> URL -> parts, names -> setup.cfg text -> names --------------------

names_text = st.text(
    alphabet=st.one_of(st.sampled_from(SPECIAL), st.characters(blacklist_categories=("Cs",))),
    min_size=1,
    max_size=20,
).filter(lambda s: "\x00" not in s)


@settings(max_examples=200, deadline=None)
@given(dbname=names_text, user=names_text, pw=passwords, port=st.integers(1, 65535))
def test_url_built_from_parts_parses_back_to_the_same_parts(
    dbname: str, user: str, pw: str, port: int
) -> None:
    from dbtools.config import UrlParts

    parts = UrlParts(
        host="db.example.com",
        port=port,
        dbname=dbname,
        user=user,
        params={"sslmode": "require", "options": "-c x=y&z"},
        hosts=("db.example.com",),
        ports=(port,),
        password=pw,
    )
    assert parse_url(parts.url(password=True)) == parts
    assert parse_url(parts.conninfo(password=True)).libpq() == parts.libpq()
    assert parse_url(parts.url(password=True)).password == pw


def quote_name(name: str) -> str:
    """How a person writes any table name in setup.cfg (docs/SETTINGS.md)."""
    if "\n" in name or "\r" in name or "\\" in name:
        body = "".join(c if c.isalnum() or c == " " else f"\\+{ord(c):06X}" for c in name)
        return f'U&"{body}"'
    return '"' + name.replace('"', '""') + '"'


@settings(max_examples=300, deadline=None)
@given(names=st.lists(names_text, min_size=1, max_size=5))
def test_quoted_table_names_read_back_exactly(names: list[str]) -> None:
    raw = ", ".join(quote_name(n) for n in names)
    assert config.split_names(raw, "test") == tuple((n,) for n in names)
    multiline = "\n  ".join(quote_name(n) for n in names)
    assert config.split_names(multiline, "test") == tuple((n,) for n in names)


@settings(max_examples=150, deadline=None)
@given(names=st.lists(names_text.filter(lambda n: "." not in n), min_size=1, max_size=4))
def test_quoted_table_names_survive_setup_cfg(names: list[str]) -> None:
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        listed = ",\n  ".join(quote_name(n) for n in names)
        (root / "setup.cfg").write_text(
            f"[dbtools]\nexcluded_tables = {listed}\npreserved_tables = {listed}\n",
            encoding="utf-8",
        )
        s = config.load_settings(root, environ={})
    assert s.excluded_tables == tuple(names) == s.preserved_tables


@settings(max_examples=100, deadline=None)
@given(key=st.binary(min_size=32, max_size=32), old=st.binary(min_size=32, max_size=32))
def test_archive_keys_from_the_environment_are_never_shown(key: bytes, old: bytes) -> None:
    """DBTOOLS_ARCHIVE_KEY and every DBTOOLS_ARCHIVE_OLD_KEYS entry, registered by
    load_settings, are masked wherever they stand in a text, raw or percent-encoded."""
    import base64
    import tempfile
    from pathlib import Path

    current, previous = (base64.b64encode(k).decode() for k in (key, old))
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "setup.cfg").write_text("[dbtools]\n", encoding="utf-8")
        environ = {"DBTOOLS_ARCHIVE_KEY": current, "DBTOOLS_ARCHIVE_OLD_KEYS": f" {previous} ,"}
        config.load_settings(Path(tmp), environ=environ)
    for secret in (current, previous):
        shown = redact(f"error: key={secret} ({encoded(secret)}) in {secret}x")
        for form in forms(secret):
            assert form not in shown, shown
