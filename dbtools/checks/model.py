"""The nouns of checks: Check (a check, a summary entry or a list), Expectation, results."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

from dbtools.errors import ConfigError

BUILTINS = ("schema_matches_dev",)
KINDS = ("check", "summary", "list")
_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<>": lambda a, b: a != b,
    ">=": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    "<": lambda a, b: a < b,
}


class UnsafeCheck(ConfigError):
    """A check tried to write, or changed its transaction or session (run-time defence)."""

    def __init__(self, message: str, *, transaction_ended: bool = False) -> None:
        super().__init__(message)
        # True when the check ended its savepoint or its transaction: what that transaction
        # had done may be committed, so a caller must not report it as rolled back.
        self.transaction_ended = transaction_ended


@dataclass(frozen=True)
class Expectation:
    text: str
    rows: bool
    op: str
    rhs: Any  # int | float | bool | str, or the marker "dev" (see against_dev)
    against_dev: bool

    def holds(self, actual: Any, expected: Any) -> bool:
        try:
            return _OPS[self.op](_comparable(actual), _comparable(expected))
        except TypeError:
            return False


@dataclass(frozen=True)
class Check:
    name: str
    source: str  # "file:line" where it is declared
    description: str = ""
    query: str = ""
    expectations: tuple[Expectation, ...] = ()
    builtin: str | None = None
    kind: str = "check"  # one of KINDS: a check, a line of verify's summary, a listing

    @property
    def needs_dev(self) -> bool:
        return self.builtin is not None or any(e.against_dev for e in self.expectations)


@dataclass
class CheckResult:
    name: str
    description: str
    ok: bool
    value: Any = None
    expected: list[str] = field(default_factory=list)
    dev_value: Any = None
    message: str = ""

    @property
    def status(self) -> str:
        return "ok" if self.ok else "FAIL"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "status": self.status}


@dataclass
class CheckReport:
    env: str
    database: str
    results: list[CheckResult]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def failed(self) -> list[CheckResult]:
        return [r for r in self.results if not r.ok]

    def summary(self) -> str:
        """One line naming the failed checks, for error messages and rollback reasons."""
        if self.ok:
            return f"all {len(self.results)} checks passed on {self.env}"
        names = ", ".join(f"{r.name} ({r.message})" for r in self.failed)
        return f"{len(self.failed)} of {len(self.results)} checks failed on {self.env}: {names}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "database": self.database,
            "ok": self.ok,
            "checks": [r.as_dict() for r in self.results],
        }


def _comparable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, list):
        return [_comparable(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_comparable(v) for v in value)
    return value
