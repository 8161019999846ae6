"""The operations the tasks and the job block share: start a run, watch one to its end."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prefect.context import TaskRunContext

import runwatch
from prefect_runwatch._ids import idempotency_key
from prefect_runwatch._observe import Logger, Observer
from prefect_runwatch._trace import flow_run_carrier
from prefect_runwatch.blocks import RunStatusApi
from runwatch import Policy, RunStatus, StartedRun
from runwatch.text import inert

__all__ = ["RunRef", "api_block", "start", "target", "watch"]

RunRef = str | Mapping[str, Any] | StartedRun
"""A run id, a status URL, what `start_run` returned, or a `runwatch.StartedRun`."""


async def api_block(api: RunStatusApi | str) -> RunStatusApi:
    """The block itself, or the saved block of that name."""
    return api if isinstance(api, RunStatusApi) else await RunStatusApi.aload(api)


def target(run: RunRef) -> str | StartedRun:
    """What the core waiter takes: a started run keeps its status URL and first delay."""
    if isinstance(run, (str, StartedRun)):
        return run
    if "status_url" in run:
        return StartedRun.from_dict(run)
    return str(run["id"])  # a status dict


async def start(
    block: RunStatusApi,
    body: Mapping[str, Any] | None,
    key: str | None,
    logger: Logger,
    policy: Policy | None = None,
) -> StartedRun:
    """Start a run with an idempotency key (by default one that survives retries and resumes).

    A task run's retry finds the run an earlier attempt started while it is live or succeeded, and starts
    a new one when it ended unsuccessfully under `policy` (`runwatch.start_attempt`).
    """
    task_context = TaskRunContext.get()
    started = await runwatch.start_attempt(
        block.get_api(),
        body,
        idempotency_key=key or idempotency_key(body),
        attempt=max(1, task_context.task_run.run_count) if task_context else 1,
        policy=policy,
        request_timeout=block.request_timeout,
        trace=flow_run_carrier(),
    )
    verb = "found again" if started.replayed else "started"  # an idempotency key the remote had seen
    logger.info("%s remote run %s (%s)", verb, inert(started.id), inert(started.status_url))
    return started


async def watch(block: RunStatusApi, run: str | StartedRun, policy: Policy, observer: Observer) -> RunStatus:
    """Watch a run in this process until it ends: its terminal status, whatever it is.

    Raises only when the run cannot be watched to its end (WaitTimeout, RunLost, StatusUnavailable, ...).
    """
    last: RunStatus | None = None
    async for status in runwatch.watch_run(block.get_api(), run, policy=policy, trace=flow_run_carrier()):
        await observer(status)
        last = status
    assert last is not None  # watch_run ends only on a terminal status
    await observer.finish(last)
    return last
