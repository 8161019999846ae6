"""The typed outcomes of a wait, and the errors of bad input.

    RunwatchError                      exit 70: something runwatch could not tell (an unexpected answer)
    ├── ProfileError                   exit 64: a profile is invalid or does not map a remote value
    ├── ConfigurationError             exit 64: settings that cannot work (TLS, origins, URLs)
    │   └── InvalidURL                 a base or status URL that cannot be an API's address
    ├── TransientError (_http)         a failure that may pass; retried, never an outcome by itself
    └── WaitOutcome                    a wait ended without success; carries the last status seen
        ├── RunFailed                  exit 1: the remote run failed, and nothing else exits 1
        ├── RunCancelled               exit 2
        ├── RunTimedOut                exit 3: the remote timed the run out
        ├── RunPartiallySucceeded      exit 4
        ├── WaitTimeout                exit 5: our deadline passed; the run goes on
        ├── RunLost                    exit 6: RUNNING, but its heartbeat went stale
        ├── StatusUnavailable          exit 7: unreadable for longer than the policy tolerates
        ├── BadStatusPayload           exit 7: answers that are not a status the profile can read
        ├── RunNotFound                exit 8
        ├── AccessDenied               exit 9
        └── IllegalTransition          exit 10: a move the state machine forbids (policy "raise")

The exit codes are those of `runwatch watch` (docs/cli.md).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from runwatch._status import RunStatus

__all__ = [
    "AccessDenied",
    "BadStatusPayload",
    "ConfigurationError",
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

    exit_code: ClassVar[int] = 70  # EX_SOFTWARE: never 1, which says the run failed


class ProfileError(RunwatchError):
    """A profile is invalid, or the remote sent a value the profile does not map."""

    exit_code = 64


class ConfigurationError(RunwatchError):
    """Settings that cannot work: a certificate that does not verify, a URL on an origin the credentials are
    not for, a malformed URL. Raised at once, never retried."""

    exit_code = 64


class InvalidURL(ConfigurationError, ValueError):
    """A base URL or status URL that cannot be a run API's address (no scheme, no host, a bad port)."""


class WaitOutcome(RunwatchError):
    """A wait ended without success. Carries the last status seen (None if none was)."""

    def __init__(self, message: str, status: RunStatus | None = None) -> None:
        super().__init__(message)
        self.status = status


class RunFailed(WaitOutcome):
    """The remote run failed."""

    exit_code = 1


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


class BadStatusPayload(WaitOutcome):
    """The remote answered, but not with a status the profile can read (a missing id or state, not JSON).

    Raised by a single read at once, and by a wait once such answers outlast the unavailable tolerance.
    """

    exit_code = 7


class IllegalTransition(WaitOutcome):
    """The remote reported a move the state machine forbids, and the policy says to raise."""

    exit_code = 10


class RunNotFound(WaitOutcome):
    """The remote says there is no such run (outside the grace window after a start)."""

    exit_code = 8


class AccessDenied(WaitOutcome):
    """The remote refused our credentials (401/403 that is not a rate limit)."""

    exit_code = 9
