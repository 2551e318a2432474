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
