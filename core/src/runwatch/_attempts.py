"""Starting a run from a task that an orchestrator may retry: reconnect to a live run, redo a failed one.

Every try of one task shares an idempotency key, so a try that lost track of a live run (a lost worker)
finds it again instead of starting a second one. But a retry after the remote run *failed* must redo the
work, not re-attach to the failure. So the key carries a generation: try N walks generations 1..N and moves
on to the next one only when the run under the current one is known to have ended unsuccessfully. A run
that is live, succeeded, or cannot be read is the one this try carries on with. Nothing is stored on our
side: the remote's idempotency keys are the memory.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from runwatch._api import RunApi, StartedRun
from runwatch._errors import RunwatchError, WaitOutcome
from runwatch._policy import Policy
from runwatch._status import RunStatus
from runwatch._waiter import outcome

__all__ = ["generation_key", "start_attempt"]

log = logging.getLogger("runwatch")


def generation_key(idempotency_key: str, generation: int) -> str:
    """The key of a generation: the key itself for the first, `<key>.g<n>` after."""
    return idempotency_key if generation == 1 else f"{idempotency_key}.g{generation}"


async def start_attempt(
    api: RunApi,
    body: Mapping[str, Any] | None = None,
    *,
    idempotency_key: str,
    attempt: int,
    policy: Policy | None = None,
    retry_for: float = 60.0,
    request_timeout: float = 30.0,
    trace: Mapping[str, str] | None = None,
) -> StartedRun:
    """Start (or find again) the run for try number `attempt` (1 for the first) of a task.

    An earlier try's run is reused unless it ended unsuccessfully under `policy` (failed, cancelled, timed
    out, or a partial success the policy does not count as success); then the next generation's key starts
    a new run. At most `attempt` generations are walked, so each try starts at most one new run. Raises what
    `RunApi.start_run` raises; `ValueError` for an `attempt` below 1. `trace` is the W3C Trace Context carrier
    its requests carry (see `watch_run`).
    """
    if attempt < 1:
        raise ValueError(f"attempt must be 1 or more, got {attempt}")
    for generation in range(1, attempt + 1):
        key = generation_key(idempotency_key, generation)
        started = await api.start_run(
            body, idempotency_key=key, retry_for=retry_for, request_timeout=request_timeout, trace=trace
        )
        if generation == attempt:
            return started
        current = await _current(api, started, request_timeout, trace)
        if current is None or not _ended_unsuccessfully(current, policy):
            return started
        log.info(
            "run %s (key %s) ended %s: this retry starts a new run", current.id, key, current.status.value
        )
    raise AssertionError("unreachable: the last generation returns")


async def _current(
    api: RunApi, started: StartedRun, request_timeout: float, trace: Mapping[str, str] | None
) -> RunStatus | None:
    if started.status.is_terminal:  # terminal is absorbing: no need to ask again
        return started.status
    try:
        return await api.get_status(
            started.status_url, retry_for=10.0, request_timeout=request_timeout, trace=trace
        )
    except RunwatchError as exc:  # cannot tell: carry on with this run, the wait will find out
        log.info("could not read run %s before reusing it: %s", started.id, exc)
        return None


def _ended_unsuccessfully(status: RunStatus, policy: Policy | None) -> bool:
    if not status.is_terminal:
        return False
    try:
        outcome(status, policy)
    except WaitOutcome:
        return True
    return False
