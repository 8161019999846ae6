"""Short labels for how a wait ended, shared by the displays and the demo."""

from __future__ import annotations

from runwatch._errors import (
    AccessDenied,
    BadStatusPayload,
    IllegalTransition,
    ProfileError,
    RunCancelled,
    RunFailed,
    RunLost,
    RunNotFound,
    RunPartiallySucceeded,
    RunTimedOut,
    StatusUnavailable,
    WaitTimeout,
)

__all__ = ["outcome_of"]

# Outcome labels, by the exception that ended the wait (None: it succeeded).
_LABELS: tuple[tuple[type[BaseException], str], ...] = (
    (RunCancelled, "cancelled"),
    (RunTimedOut, "timed out"),
    (RunPartiallySucceeded, "partial"),
    (WaitTimeout, "deadline"),
    (RunLost, "lost"),
    (StatusUnavailable, "unavailable"),
    (IllegalTransition, "illegal"),
    (RunNotFound, "not found"),
    (AccessDenied, "denied"),
    (ProfileError, "bad profile"),
    (BadStatusPayload, "bad payload"),
    (RunFailed, "failed"),
)


def outcome_of(exc: BaseException | None) -> str:
    """A short label for how a wait ended: `succeeded`, `failed`, `lost`, ..."""
    if exc is None:
        return "succeeded"
    for kind, label in _LABELS:
        if isinstance(exc, kind):
            return label
    return "error"
