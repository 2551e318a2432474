"""The exceptions dbtools raises, each carrying the exit code of the CLI contract.

0 success, 1 a check or verification failed, 2 usage or configuration error (this includes
a database that cannot be reached), 3 a safety rule refused the operation, 4 the operator did
not confirm (answered no, or no terminal and no --yes). (130 / 143: interrupted, interrupt.py.)
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_CONFIG = 2
EXIT_SAFETY = 3
EXIT_DECLINED = 4


class DbtoolsError(Exception):
    """Base of every error meant for the operator: one clear line, a documented exit code."""

    exit_code = EXIT_CONFIG

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class ConfigError(DbtoolsError):
    """Missing or malformed settings, URLs, paths or arguments."""

    exit_code = EXIT_CONFIG


class ConnectionFailed(DbtoolsError):
    """A database could not be reached or refused the login."""

    exit_code = EXIT_CONFIG


class SafetyError(DbtoolsError):
    """A safety rule refused the operation; nothing was changed."""

    exit_code = EXIT_SAFETY


class Declined(DbtoolsError):
    """The operator did not confirm: answered no, or there was no terminal and no --yes.
    Not a refusal by a safety rule (exit 3): the operation was allowed, nobody said yes."""

    exit_code = EXIT_DECLINED


class LockBusy(SafetyError):
    """Another dbtools run holds the lock this operation needs."""


class VerificationFailed(DbtoolsError):
    """A snapshot, a check or a post-load verification did not pass."""

    exit_code = EXIT_CHECK_FAILED


class SnapshotError(DbtoolsError):
    """A snapshot is missing, incomplete, corrupt or unusable for the request."""

    exit_code = EXIT_CHECK_FAILED


class MigrationError(DbtoolsError):
    """A migration failed or the migration history is inconsistent (drift)."""

    exit_code = EXIT_CHECK_FAILED
