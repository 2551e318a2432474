"""How progress shows numbers: rows with thousands separators, sizes, durations."""

from __future__ import annotations


def count(n: int) -> str:
    """310000 -> '310,000'."""
    return f"{n:,}"


def size(n: int) -> str:
    """Bytes in SI units: '48.2 MB'."""
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def seconds(s: float) -> str:
    """'14 s', '2 min 05 s', '1 h 03 min'."""
    if s < 60:
        return f"{s:.0f} s"
    minutes, rest = divmod(int(s), 60)
    if minutes < 60:
        return f"{minutes} min {rest:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def short(n: float) -> str:
    """A count in at most about five characters, for the terminal's narrow columns: '284.6k'."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.1f}{unit}"
    return f"{n:.0f}"


# Characters a terminal acts on instead of showing: C0 and C1 controls (ESC starts a colour,
# a cursor move, an OSC hyperlink or title; CR and BS overwrite; a newline splits one line in
# two) and the bidirectional overrides that reorder what is shown (U+202A-U+202E,
# U+2066-U+2069, U+200E/U+200F, U+061C), plus the Unicode line and paragraph separators.
_SHOWN_AS_ESCAPE = {
    *range(0x00, 0x20),
    *range(0x7F, 0xA0),
    0x061C,
    0x200E,
    0x200F,
    0x2028,
    0x2029,
    *range(0x202A, 0x202F),
    *range(0x2066, 0x206A),
}
_NAMED = {0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"}


def _escape(code: int) -> str:
    if code in _NAMED:
        return _NAMED[code]
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


_ESCAPES = {code: _escape(code) for code in _SHOWN_AS_ESCAPE}
_ESCAPES_BUT_LINES = {k: v for k, v in _ESCAPES.items() if k not in (0x09, 0x0A)}


def printable(text: str, *, keep_newlines: bool = False) -> str:
    """`text` with every character a terminal would act on shown as its escape instead
    ('\\x1b[31m', '\\n'): a table's name is an identifier anyone with CREATE can choose, and
    it must not colour, move, retitle or link the display, nor split a line. `keep_newlines`
    keeps newlines and tabs, for text that is several lines on purpose."""
    return text.translate(_ESCAPES_BUT_LINES if keep_newlines else _ESCAPES)
