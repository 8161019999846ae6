"""One Airflow exception per outcome of a wait, so a DAG can tell a failed run from a lost one."""

from __future__ import annotations

from airflow.sdk.exceptions import AirflowException, AirflowSensorTimeout

import runwatch

__all__ = [
    "RemoteAccessDenied",
    "RemoteBadStatusPayload",
    "RemoteConfigurationError",
    "RemoteIllegalTransition",
    "RemoteProfileError",
    "RemoteRunCancelled",
    "RemoteRunFailed",
    "RemoteRunLost",
    "RemoteRunNotFound",
    "RemoteRunPartiallySucceeded",
    "RemoteRunTimedOut",
    "RemoteStatusUnavailable",
    "RemoteWaitTimeout",
    "RunwatchAirflowError",
    "RunwatchArgumentError",
    "for_outcome",
]


class RunwatchAirflowError(AirflowException):
    """Base of the provider's errors; also raised for an unexpected error while waiting."""


class RunwatchArgumentError(RunwatchAirflowError, ValueError):
    """A task argument (as rendered) is not of a kind the task can use; the message names it."""


class RemoteRunFailed(RunwatchAirflowError):
    """The remote run failed (`runwatch.RunFailed`)."""


class RemoteRunCancelled(RunwatchAirflowError):
    """The remote run was cancelled (`runwatch.RunCancelled`)."""


class RemoteRunTimedOut(RunwatchAirflowError):
    """The remote system timed the run out (`runwatch.RunTimedOut`)."""


class RemoteRunPartiallySucceeded(RunwatchAirflowError):
    """The run partly succeeded and the policy says to raise (`runwatch.RunPartiallySucceeded`)."""


class RemoteWaitTimeout(RunwatchAirflowError, AirflowSensorTimeout):
    """Our deadline passed; the remote run goes on (`runwatch.WaitTimeout`). A sensor timeout: no retry."""


class RemoteRunLost(RunwatchAirflowError):
    """The run says it is active but its heartbeat went stale (`runwatch.RunLost`)."""


class RemoteStatusUnavailable(RunwatchAirflowError):
    """Status could not be read for longer than the policy tolerates (`runwatch.StatusUnavailable`)."""


class RemoteIllegalTransition(RunwatchAirflowError):
    """The remote reported a move the state machine forbids (`runwatch.IllegalTransition`)."""


class RemoteRunNotFound(RunwatchAirflowError):
    """The remote says there is no such run (`runwatch.RunNotFound`)."""


class RemoteAccessDenied(RunwatchAirflowError):
    """The remote refused the connection's credentials (`runwatch.AccessDenied`)."""


class RemoteProfileError(RunwatchAirflowError):
    """The profile is invalid or does not map a remote value (`runwatch.ProfileError`)."""


class RemoteConfigurationError(RunwatchAirflowError):
    """Settings that cannot work: a certificate that does not verify, a run URL on another origin than the
    connection's credentials (`runwatch.ConfigurationError`)."""


class RemoteBadStatusPayload(RunwatchAirflowError):
    """The remote answered with something the profile cannot read (`runwatch.BadStatusPayload`)."""


_BY_OUTCOME: dict[runwatch.Outcome, type[RunwatchAirflowError]] = {
    "failed": RemoteRunFailed,
    "cancelled": RemoteRunCancelled,
    "timed_out": RemoteRunTimedOut,
    "partial": RemoteRunPartiallySucceeded,
    "deadline": RemoteWaitTimeout,
    "lost": RemoteRunLost,
    "unavailable": RemoteStatusUnavailable,
    "illegal": RemoteIllegalTransition,
    "not_found": RemoteRunNotFound,
    "denied": RemoteAccessDenied,
    "bad_profile": RemoteProfileError,
    "configuration": RemoteConfigurationError,
    "bad_payload": RemoteBadStatusPayload,
}


def for_outcome(outcome: runwatch.Outcome) -> type[RunwatchAirflowError]:
    """The exception class for a wait's outcome (`runwatch.WaitResult.outcome`: `"failed"`, `"lost"`, ...);
    the base class for `error` (what runwatch did not expect)."""
    return _BY_OUTCOME.get(outcome, RunwatchAirflowError)
