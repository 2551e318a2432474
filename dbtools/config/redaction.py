"""Passwords kept out of output: the secret registry, `redact` and `mask_url`.

Every password seen while resolving URLs is registered here so that `redact()` can remove
it from any text before it is printed, logged or raised. Short passwords (1-2 characters)
cannot be replaced everywhere in a text without destroying it; they are removed wherever
they stand in a password position (URL userinfo, `password=`), like every other.

The two pieces of URL grammar that masking and parsing (`urls`) share live here too:
`SCHEME` and `authority_end`, so that a URL is cut into userinfo and the rest one way.
"""

from __future__ import annotations

import re
import threading
from urllib.parse import quote, unquote

import psycopg2.extensions

known_secrets: set[str] = set()
_secrets_lock = threading.Lock()
# Below this length a secret is only removed where it stands as a password (see redact).
_MIN_FREE_TEXT_SECRET = 3


def register_secret(value: str | None) -> None:
    """Remember a secret (and its percent-encoded forms) so that redact() removes it."""
    if not value:
        return
    forms = {value, unquote(value), quote(value, safe=""), quote(unquote(value), safe="")}
    with _secrets_lock:
        known_secrets.update(f for f in forms if f)


SCHEME = re.compile(r"^(postgres(?:ql)?)://", re.IGNORECASE)
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
        secrets = sorted(known_secrets, key=len, reverse=True)
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
    scheme = SCHEME.match(url)
    if scheme is None:
        # keyword/value conninfo, or garbage: password= entries masked
        register_secret(_kw_password(url))
        return redact(url)
    rest = url[scheme.end() :]
    end = authority_end(rest)
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


def authority_end(rest: str) -> int:
    """Where the authority of a URL (after the scheme) ends: the first '/' or '?'.

    '#' is not special: libpq reads it as part of the database name, and so do we.
    """
    ends = [i for i in (rest.find("/"), rest.find("?")) if i >= 0]
    return min(ends) if ends else len(rest)


def _kw_password(conninfo: str) -> str | None:
    try:
        return dict(psycopg2.extensions.parse_dsn(conninfo)).get("password")
    except psycopg2.Error:
        return None
