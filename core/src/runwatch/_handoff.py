"""The hand-off between the core and whoever waits: what to watch (`WaitSpec`), how it ended (`WaitResult`).

Both are plain data that round-trip through JSON, so one wait can be handed to an Airflow triggerer, stored
as a Prefect flow run input, resumed by a watcher, or printed by the CLI, and its outcome handed back and
raised as the same typed exception on the other side (`WaitResult.raise_for_outcome()`, in the spirit of
httpx's `raise_for_status()`).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict

from runwatch import _errors
from runwatch._api import RunApi, StartedRun
from runwatch._errors import (
    AccessDenied,
    BadStatusPayload,
    ConfigurationError,
    IllegalTransition,
    ProfileError,
    RunCancelled,
    RunFailed,
    RunLost,
    RunNotFound,
    RunPartiallySucceeded,
    RunTimedOut,
    RunwatchError,
    StatusUnavailable,
    WaitOutcome,
    WaitTimeout,
)
from runwatch._hooks import NO_HOOKS, Hooks
from runwatch._policy import Policy
from runwatch._status import RunStatus
from runwatch._transport import TransientError
from runwatch._urls import redact_text
from runwatch._waiter import outcome, wait_for_run
from runwatch.text import inert

__all__ = ["FINAL_AT_ONCE", "Outcome", "WaitResult", "WaitSpec", "first_look", "outcome_kind", "wait_result"]

Outcome = Literal[
    "succeeded",
    "failed",
    "cancelled",
    "timed_out",
    "partial",
    "deadline",
    "lost",
    "unavailable",
    "bad_payload",
    "not_found",
    "denied",
    "illegal",
    "bad_profile",
    "configuration",
    "error",
]

# Most specific first: the first class an exception is an instance of names its outcome.
_KINDS: tuple[tuple[Outcome, type[BaseException]], ...] = (
    ("failed", RunFailed),
    ("cancelled", RunCancelled),
    ("timed_out", RunTimedOut),
    ("partial", RunPartiallySucceeded),
    ("deadline", WaitTimeout),
    ("lost", RunLost),
    ("unavailable", StatusUnavailable),
    ("bad_payload", BadStatusPayload),
    ("not_found", RunNotFound),
    ("denied", AccessDenied),
    ("illegal", IllegalTransition),
    ("bad_profile", ProfileError),
    ("configuration", ConfigurationError),
    ("unavailable", TransientError),  # a single read that kept failing
)
_ERRORS: dict[Outcome, type[RunwatchError]] = {
    "failed": RunFailed,
    "cancelled": RunCancelled,
    "timed_out": RunTimedOut,
    "partial": RunPartiallySucceeded,
    "deadline": WaitTimeout,
    "lost": RunLost,
    "unavailable": StatusUnavailable,
    "bad_payload": BadStatusPayload,
    "not_found": RunNotFound,
    "denied": AccessDenied,
    "illegal": IllegalTransition,
    "bad_profile": ProfileError,
    "configuration": ConfigurationError,
    "error": RunwatchError,
}


FINAL_AT_ONCE: frozenset[Outcome] = frozenset({"not_found", "denied", "bad_profile", "configuration"})
"""Outcomes that no waiting can change: a first look that meets one ends the wait at once."""


def outcome_kind(exc: BaseException) -> Outcome:
    """The outcome a wait that raised `exc` ended with (`error` for anything runwatch did not expect)."""
    return _kind_of(type(exc))


def _kind_of(error: type[BaseException]) -> Outcome:
    return next((kind for kind, cls in _KINDS if issubclass(error, cls)), "error")


# Every error class of the core by name, for results persisted in the format before this one.
_BY_NAME: dict[str, Outcome] = {
    name: _kind_of(cls)
    for name, cls in [*vars(_errors).items(), (TransientError.__name__, TransientError)]
    if isinstance(cls, type) and issubclass(cls, Exception)
}


_D = TypeVar("_D", bound="_Data")


class _Data(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls: type[_D], data: Mapping[str, Any]) -> _D:
        return cls.model_validate(data)


class WaitSpec(_Data):
    """What to watch and by which rules. Holds no credential.

    `run` is a run id or status URL; `api` a reference that the side which waits resolves to a `RunApi`
    (an Airflow connection id, a Prefect block id), never a secret; `profile` overrides the API's profile;
    `started` is `StartedRun.to_dict()` when the run was just started by us (a 404 is then tolerated for the
    policy's grace, and the start's `Retry-After` is honoured); `policy` is `Policy.to_dict()`; `deadline`
    is absolute, in UNIX seconds, so it survives a hand-over or a restart unchanged; `trace` is the W3C Trace
    Context carrier of the task or flow run that waits (`traceparent`, `tracestate`).
    """

    run: str
    api: str | None = None
    profile: str | Mapping[str, Any] | None = None
    started: dict[str, Any] | None = None
    policy: dict[str, Any] = {}
    deadline: float | None = None
    trace: dict[str, str] | None = None

    def target(self) -> str | StartedRun:
        return StartedRun.from_dict(self.started) if self.started else self.run

    def wait_policy(self) -> Policy:
        return Policy.from_dict(self.policy)


class WaitResult(_Data):
    """How a wait ended: the outcome's kind, the final (or last seen) status, and one line that says why.

    The message is one line with no password in it; what the remote wrote there is shown as data (control
    characters escaped, `runwatch.text.inert`), so it can be logged as it is. The status keeps the exact text.
    """

    outcome: Outcome
    status: RunStatus | None = None
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome == "succeeded"

    @classmethod
    def of_status(cls, status: RunStatus, policy: Policy | None = None) -> WaitResult:
        """The result of a terminal status under a policy (partial success counts as the policy says)."""
        try:
            final = outcome(status, policy)
        except WaitOutcome as exc:
            return cls.of_error(exc, status)
        return cls(outcome="succeeded", status=final, message=f"run {final.id} ended {final.status.value}")

    @classmethod
    def of_error(cls, exc: BaseException, last: RunStatus | None = None) -> WaitResult:
        """The result of a wait that raised `exc`; `last` is the last status seen, if the error has none."""
        kind = outcome_kind(exc)
        status = exc.status if isinstance(exc, WaitOutcome) and exc.status is not None else last
        text = redact_text(inert(str(exc).strip())) or type(exc).__name__  # it may quote the remote
        return cls(outcome=kind, status=status, message=text)

    @classmethod
    def of_error_name(cls, name: str, message: str = "", status: RunStatus | None = None) -> WaitResult:
        """A result written as a core exception's class name (`"RunFailed"`), as Airflow trigger events
        and Prefect resume inputs were before this format: kept so that what they persisted still reads
        after an upgrade. An unknown name is the outcome `error`."""
        kind = _BY_NAME.get(name, "error")
        return cls(outcome=kind, status=status, message=message or name)

    @property
    def error_name(self) -> str | None:
        """The core exception class's name for this outcome (None on success): the format before this one."""
        return None if self.ok else _ERRORS[self.outcome].__name__

    def raise_for_outcome(self) -> RunStatus:
        """The final status if the wait succeeded; else the outcome's exception, raised, with the status."""
        if self.ok:
            if self.status is None:
                raise RunwatchError("a successful wait result without its status")
            return self.status
        error = _ERRORS[self.outcome]
        if issubclass(error, WaitOutcome):
            raise error(self.message, self.status)
        raise error(self.message)


async def wait_result(api: RunApi, spec: WaitSpec, *, hooks: Hooks = NO_HOOKS) -> WaitResult:
    """Wait as `spec` says and return how it ended; never raises for an outcome (a bug still raises)."""
    policy = spec.wait_policy()
    last: list[RunStatus] = []

    async def seen(status: RunStatus) -> None:
        last[:] = [status]
        if hooks.on_change is not None:
            result = hooks.on_change(status)
            if inspect.isawaitable(result):
                await result

    try:
        status = await wait_for_run(
            api,
            spec.target(),
            policy=policy,
            deadline=spec.deadline,
            hooks=replace(hooks, on_change=seen),
            trace=spec.trace,
        )
    except RunwatchError as exc:
        return WaitResult.of_error(exc, last[0] if last else None)
    return WaitResult.of_status(status, policy)


async def first_look(
    api: RunApi,
    run: str | StartedRun,
    *,
    request_timeout: float = 30.0,
    trace: Mapping[str, str] | None = None,
) -> RunStatus | None:
    """One read of a run before its wait is handed off, without retries: a run that already ended needs none.

    Returns the status, or None when the read met passing trouble (network, 5xx, 429, a body that does not
    parse), which the wait itself rides out. A run we just started that the remote does not show yet is its
    start's status. Raises what no waiting can change (`FINAL_AT_ONCE`: `RunNotFound`, `AccessDenied`,
    `ProfileError`, `ConfigurationError`). `request_timeout` is in seconds; `trace` a W3C Trace Context
    carrier sent along.
    """
    url = run.status_url if isinstance(run, StartedRun) else run
    try:
        return await api.get_status(url, retry_for=0, request_timeout=request_timeout, trace=trace)
    except RunNotFound:
        if isinstance(run, StartedRun):  # read-after-write lag: the remote may not show it yet
            return run.status.observed()
        raise
    except RunwatchError as exc:
        if outcome_kind(exc) in FINAL_AT_ONCE:
            raise
        return None
