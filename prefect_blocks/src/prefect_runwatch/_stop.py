"""Prefect's word that a running task must stop, so that a wait never outlives its flow run.

A submitted task runs in a worker thread of the flow run's `ThreadPoolTaskRunner`, with an event loop of
its own, so a flow timeout or cancellation cannot cancel it. When the flow run stops for any reason (its
timeout, a cancellation, its body raising) the runner sets a cancel event per task run and then waits
for its threads; Prefect itself reads that event only before a task starts. A wait reads it about every
quarter second while it polls, and stops the way Prefect stops a task it cancels: `CancelledError`. The
remote run is left running. A task timeout, and a flow timeout around an awaited task, cancel the wait's
coroutine directly and need none of this.

One more case: where Prefect cannot use SIGALRM for a sync flow's timeout (the flow runs outside the main
thread, or something else owns the alarm), its timeout is only delivered to the flow's thread once the
`.result()` it blocks in returns, which is when the wait ends. So a wait also stops a second after its
flow run's timeout has passed; the flow run then ends `TimedOut` as it should.

The remote run is left running, unless the task was told `cancel_on_stop=True` (`cancel_remote`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Mapping
from typing import Protocol, TypeVar

import anyio
from prefect.context import FlowRunContext, TaskRunContext

import runwatch
from prefect_runwatch._observe import Logger
from prefect_runwatch._trace import flow_run_carrier

__all__ = ["StopSignal", "cancel_remote", "runner_stop_signal", "until_stopped"]

T = TypeVar("T")
CHECK_EVERY = 0.25  # seconds between two looks at the signal
CANCEL_FOR = 30.0  # seconds a cancel may take, retries included, while the task run is being stopped
TIMEOUT_GRACE = 1.0  # seconds past the flow run's timeout: Prefect's own timeout goes first


class StopSignal(Protocol):
    def is_set(self) -> bool: ...


class _FlowRunStopped:
    """Set when the task runner cancels the task run, or a little after the flow run's timeout."""

    def __init__(self, event: StopSignal | None, deadline: float | None) -> None:
        self.event = event
        self.deadline = deadline

    def is_set(self) -> bool:
        if self.event is not None and self.event.is_set():
            return True
        return self.deadline is not None and time.time() >= self.deadline


def runner_stop_signal() -> StopSignal | None:
    """What tells the current task run (submitted to a flow run's task runner) to stop; None elsewhere.

    The cancel event is in the runner's `_cancel_events` (Prefect 3.9 has no public accessor); a runner
    without it (another task runner, a later Prefect) leaves the flow run's timeout as the only signal.
    """
    flow_context = FlowRunContext.get()
    task_context = TaskRunContext.get()
    if flow_context is None or task_context is None:
        return None
    events = getattr(flow_context.task_runner, "_cancel_events", None)
    event = events.get(task_context.task_run.id) if isinstance(events, Mapping) else None
    event = event if callable(getattr(event, "is_set", None)) else None
    deadline = None
    seconds = flow_context.flow.timeout_seconds if flow_context.flow else None
    if seconds is not None:
        flow_run = flow_context.flow_run
        begun = flow_run.start_time.timestamp() if flow_run and flow_run.start_time else time.time()
        deadline = begun + seconds + TIMEOUT_GRACE
    return _FlowRunStopped(event, deadline) if event is not None or deadline is not None else None


async def until_stopped(work: Awaitable[T], signal: StopSignal | None, logger: Logger, run: str) -> T:
    """`work`'s result, unless `signal` is set first: then `work` is cancelled and `CancelledError` raised.

    `run` names the remote run in the log line and the error (it goes on).
    """
    if signal is None:
        return await work
    running = asyncio.ensure_future(work)
    while not running.done():
        await asyncio.wait({running}, timeout=CHECK_EVERY)
        if signal.is_set() and not running.done():
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
            logger.info("the flow run stopped: no longer watching remote run %s, which goes on", run)
            raise asyncio.CancelledError(f"the flow run stopped; remote run {run} goes on")
    return running.result()


async def cancel_remote(api: runwatch.RunApi, run_id: str, logger: Logger) -> None:
    """Ask the remote to cancel a run while the task run is being stopped (shielded from that stop).

    A cancel that fails or takes longer than `CANCEL_FOR` seconds is logged, never raised: the reason the
    wait stopped is what the task run reports.
    """
    with anyio.CancelScope(shield=True), anyio.move_on_after(CANCEL_FOR):
        try:
            await api.cancel_run(run_id, retry_for=CANCEL_FOR / 2, trace=flow_run_carrier())
        except runwatch.RunwatchError as exc:
            logger.warning("could not cancel remote run %s: %s", run_id, exc)
        else:
            logger.info("asked the remote to cancel run %s (cancel_on_stop)", run_id)
