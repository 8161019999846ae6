"""Tasks: start a remote run, wait for one, or both. Never cached: a cached poll never sees change.

They are async: await them in an async flow (`asyncio.gather` many: they share one event loop and one
connection pool per API), or use `.submit(...).result()` in a sync flow.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Literal, cast

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import task_run
from prefect.states import Completed

import runwatch
from prefect_runwatch._observe import Observer
from prefect_runwatch._release import check_release, wait_released
from prefect_runwatch._runs import RunRef, api_block, start, target, watch
from prefect_runwatch._stop import cancel_remote, runner_stop_signal, until_stopped
from prefect_runwatch.blocks import RunStatusApi
from runwatch import Policy, StartedRun

__all__ = ["start_run", "start_run_and_wait", "wait_for_run"]

PartialSuccess = Literal["succeed", "fail", "partial"]


def _wait_name() -> str:
    run = task_run.parameters.get("run")
    if isinstance(run, Mapping):
        run = run.get("id")
    elif isinstance(run, StartedRun):
        run = run.id
    return f"wait_for_run {run}"


@task(name="start_run", cache_policy=NO_CACHE)
async def start_run(
    api: RunStatusApi | str,
    body: Mapping[str, Any] | None = None,
    *,
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    """Start a remote run; returns `{"id", "status", "status_url", "retry_after"}` for `wait_for_run`.

    The idempotency key defaults to one derived from the flow run, its attempt and the body, so reruns after
    a resume, and task retries while that run is live or succeeded, get the same remote run; a task retry
    after it ended unsuccessfully starts a new one.
    """
    started = await start(await api_block(api), body, idempotency_key, get_run_logger())
    return {"id": started.id, **started.to_dict()}


@task(name="wait_for_run", task_run_name=_wait_name, cache_policy=NO_CACHE)
async def wait_for_run(
    run: RunRef,
    api: RunStatusApi | str,
    policy: Policy | Mapping[str, Any] | None = None,
    *,
    timeout: float | None = None,
    partial_success: PartialSuccess | None = None,
    release_infrastructure: bool = False,
    cancel_on_stop: bool = False,
) -> dict[str, Any]:
    """Wait until a remote run ends: its final status (a dict) if it succeeded, else the typed outcome raised.

    `run` is a run id, a status URL or what `start_run` returned. `timeout` (our deadline, seconds) and
    `partial_success` ("succeed", "fail" or "partial") override the policy. With `release_infrastructure`
    the flow run is suspended while the run goes on, and the `prefect-runwatch watcher` resumes it (needs a
    deployment and a saved `RunStatusApi` block; see docs/prefect.md). With `cancel_on_stop` the remote run
    is cancelled when an in-process wait stops before the run ends (our deadline, a task or flow timeout,
    the flow run stopping); otherwise it goes on.
    """
    block = await api_block(api)
    chosen = block.policy(policy, timeout=timeout, partial_success=partial_success)
    return await _wait(block, target(run), chosen, release_infrastructure, cancel_on_stop)


@task(name="start_run_and_wait", cache_policy=NO_CACHE)
async def start_run_and_wait(
    api: RunStatusApi | str,
    body: Mapping[str, Any] | None = None,
    policy: Policy | Mapping[str, Any] | None = None,
    *,
    idempotency_key: str | None = None,
    timeout: float | None = None,
    partial_success: PartialSuccess | None = None,
    release_infrastructure: bool = False,
    cancel_on_stop: bool = False,
) -> dict[str, Any]:
    """`start_run` then `wait_for_run` in one task run: the final status, or the typed outcome raised."""
    block = await api_block(api)
    chosen = block.policy(policy, timeout=timeout, partial_success=partial_success)
    if release_infrastructure:
        check_release(block)  # before the start: a refusal must not leave a remote run behind
    started = await start(block, body, idempotency_key, get_run_logger(), chosen)
    return await _wait(block, started, chosen, release_infrastructure, cancel_on_stop)


async def _wait(
    block: RunStatusApi, run: str | StartedRun, policy: Policy, release: bool, cancel_on_stop: bool
) -> dict[str, Any]:
    observer = Observer(get_run_logger())
    if release:
        final = await wait_released(block, run, policy, observer)
        if final is None:  # Prefect takes a returned State as the task run's final state
            return cast(
                "dict[str, Any]",
                Completed(
                    name="Released",
                    message="the flow run is suspended while the remote run goes on; the watcher resumes it",
                ),
            )
        return final.to_dict()
    name = run.id if isinstance(run, StartedRun) else run
    try:
        status = await until_stopped(
            watch(block, run, policy, observer), runner_stop_signal(), observer.logger, name
        )
    except (asyncio.CancelledError, runwatch.WaitTimeout):
        # Stopped before the run ended. The cancel endpoint takes an id: a bare URL never seen has none.
        seen = observer.last.id if observer.last else None
        run_id = seen or (None if name.startswith(("http://", "https://")) else name)
        if cancel_on_stop and run_id is not None:
            await cancel_remote(block.get_api(), run_id, observer.logger)
        raise
    return runwatch.outcome(status, policy).to_dict()
