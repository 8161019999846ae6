"""The typed outcomes of a wait, and the errors of bad input."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from runwatch._status import RunStatus

__all__ = [
    "AccessDenied",
    "BadStatusPayload",
    "IllegalTransition",
    "InvalidURL",
    "ProfileError",
    "RunCancelled",
    "RunFailed",
    "RunLost",
    "RunNotFound",
    "RunPartiallySucceeded",
    "RunTimedOut",
    "RunwatchError",
    "StatusUnavailable",
    "WaitOutcome",
    "WaitTimeout",
]


class RunwatchError(Exception):
    """Base of every error runwatch raises. `str(exc)` is one readable line."""

    exit_code: ClassVar[int] = 1


class ProfileError(RunwatchError):
    """A profile is invalid, or the remote sent a value the profile does not map."""

    exit_code = 64


class InvalidURL(RunwatchError, ValueError):
    """A base URL or status URL that cannot be a run API's address (no scheme, no host, a bad port)."""

    exit_code = 64


class BadStatusPayload(RunwatchError):
    """The remote answered, but not with a status the profile can read."""


class WaitOutcome(RunwatchError):
    """A wait ended without success. Carries the last status seen (None if none was)."""

    def __init__(self, message: str, status: RunStatus | None = None) -> None:
        super().__init__(message)
        self.status = status


class RunFailed(WaitOutcome):
    """The remote run failed."""


class RunCancelled(WaitOutcome):
    """The remote run was cancelled."""

    exit_code = 2


class RunTimedOut(WaitOutcome):
    """The remote system timed the run out."""

    exit_code = 3


class RunPartiallySucceeded(WaitOutcome):
    """The run ended in PARTIAL_SUCCESS and the policy says to raise."""

    exit_code = 4


class WaitTimeout(WaitOutcome):
    """Our deadline passed. The remote run goes on."""

    exit_code = 5


class RunLost(WaitOutcome):
    """The run says it is active but its heartbeat went stale: its process is gone."""

    exit_code = 6


class StatusUnavailable(WaitOutcome):
    """Status could not be read for longer than the policy tolerates."""

    exit_code = 7

    def __init__(self, message: str, status: RunStatus | None = None, since: datetime | None = None) -> None:
        super().__init__(message, status)
        self.since = since


class IllegalTransition(WaitOutcome):
    """The remote reported a move the state machine forbids, and the policy says to raise."""


class RunNotFound(WaitOutcome):
    """The remote says there is no such run (outside the grace window after a start)."""


class AccessDenied(WaitOutcome):
    """The remote refused our credentials (401/403)."""
