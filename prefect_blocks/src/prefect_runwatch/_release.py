"""Suspend mode: hand a wait over to the watcher and let the flow run's process exit.

The flow looks at the remote run once. If it is still going, the flow writes a watch record as a flow run
input (`<pause key>-watch`: the status URL, the `RunStatusApi` block's id and name, the policy and the
deadline; never a credential), tags the flow run `runwatch`, and suspends with the pause key
`runwatch-<hash of the status URL>`. The watcher finds suspended flow runs with that tag and key, watches the
run, and resumes the flow with a `RunOutcome` run input. Prefect reruns the flow from the top; the same call
finds its pause key fired and returns the outcome without reading the remote run again.
"""

from __future__ import annotations

import hashlib
import math
import time
from typing import Any
from uuid import UUID

from prefect.client.orchestration import PrefectClient, get_client
from prefect.context import FlowRunContext, TaskRunContext
from prefect.flow_runs import asuspend_flow_run
from prefect.input import RunInput
from prefect.input.run_input import keyset_from_paused_state
from prefect.states import Suspended
from pydantic import BaseModel, ValidationError

import runwatch
from prefect_runwatch._observe import Observer
from prefect_runwatch._trace import flow_run_carrier
from prefect_runwatch.blocks import RunStatusApi
from runwatch import Policy, RunStatus, StartedRun

__all__ = [
    "KEY_PREFIX",
    "TAG",
    "RunOutcome",
    "WatchRecord",
    "check_release",
    "read_record",
    "record_key",
    "settle",
    "wait_released",
]

TAG = "runwatch"
KEY_PREFIX = "runwatch-"
PAUSE_GRACE = 600  # seconds Prefect keeps a suspended run resumable after our own deadline
SUSPENDED_NOTE = (
    "Prefect now logs 'Finished in state Suspended' at ERROR level: that is its wording for a suspension "
    "(PrefectHQ/prefect#16915), not a failure. The flow run resumes when the remote run ends."
)


class RunOutcome(RunInput):
    """The run input a suspended flow is resumed with: the final status, or why the wait ended without one."""

    status: dict[str, Any] | None = None
    error: str | None = None
    message: str | None = None


class WatchRecord(BaseModel):
    """What the watcher needs to carry on a wait. Holds no credential: the block is loaded by id."""

    run: str
    api_block_id: UUID
    api_block_name: str | None = None
    policy: dict[str, Any] = {}
    deadline: float | None = None
    started: dict[str, Any] | None = None

    def target(self) -> str | StartedRun:
        return StartedRun.from_dict(self.started) if self.started else self.run


def record_key(pause_key: str) -> str:
    return f"{pause_key}-watch"


def settle(answer: RunOutcome, policy: Policy) -> RunStatus:
    """The status a watcher resumed the flow with if it counts as success, else the typed outcome, raised."""
    status = RunStatus.from_dict(answer.status) if answer.status else None
    if answer.error:
        error = getattr(runwatch, answer.error, None)
        if not (isinstance(error, type) and issubclass(error, runwatch.RunwatchError)):
            error = runwatch.RunwatchError
        message = answer.message or answer.error
        if issubclass(error, runwatch.WaitOutcome):
            raise error(message, status)
        raise error(message)
    if status is None or not status.is_terminal:
        raise runwatch.RunwatchError("the flow was resumed without a final status")
    return runwatch.outcome(status, policy)


def check_release(block: RunStatusApi) -> None:
    """Raise now if suspend mode cannot work here (no saved block, no deployment, a subflow).

    Called before a run is started, so that a refusal never leaves a remote run behind.
    """
    _saved_block_id(block)
    _suspendable_flow_run()


async def wait_released(
    block: RunStatusApi, run: str | StartedRun, policy: Policy, observer: Observer
) -> RunStatus | None:
    """The final status (or its typed outcome) if known; else suspend the flow run.

    In a task run this returns None and the flow stops at the task's end; in a flow body it raises Prefect's
    `Pause` at once.
    """
    block_id = _saved_block_id(block)
    flow_run_id = _suspendable_flow_run()
    api = block.get_api()
    url = run.status_url if isinstance(run, StartedRun) else api.status_url(run)
    base = KEY_PREFIX + hashlib.sha256(url.encode()).hexdigest()[:20]
    async with get_client() as client:
        current = await client.read_flow_run(flow_run_id)
        fired = _fired(base, current.empirical_policy.pause_keys or set())
        previous = await read_record(client, flow_run_id, fired[-1]) if fired else None
    if fired:
        answer = await _resume_input(fired[-1], flow_run_id, observer)
        if answer is not None:
            observer.logger.info("resumed by the runwatch watcher: remote run %s has ended", url)
            return settle(answer, policy)
        observer.logger.info(
            "resumed without a final status (an automation or by hand): reading %s once", url
        )
    status = await _first_look(api, run, url, policy)
    await observer(status)
    if status.is_terminal:
        await observer.finish(status)
        return runwatch.outcome(status, policy)
    deadline = previous.deadline if previous else (time.time() + policy.timeout if policy.timeout else None)
    key = f"{base}-{len(fired) + 1}" if fired else base
    record = WatchRecord(
        run=url,
        api_block_id=block_id,
        api_block_name=block._block_document_name,
        policy=policy.to_dict(),
        deadline=deadline,
        started=run.to_dict() if isinstance(run, StartedRun) else None,
    )
    await _record(flow_run_id, key, record, current.tags)
    timeout = None if deadline is None else max(1, math.ceil(deadline - time.time())) + PAUSE_GRACE
    observer.logger.info(
        "remote run %s is %s: suspending the flow run; the runwatch watcher resumes it when the run ends",
        status.id,
        status.status.value,
    )
    if TaskRunContext.get() is not None:
        await asuspend_flow_run(wait_for_input=RunOutcome, flow_run_id=flow_run_id, timeout=timeout, key=key)
        observer.logger.info(SUSPENDED_NOTE)
        return None  # Prefect raises Pause in the flow as soon as this task run ends
    observer.logger.info(SUSPENDED_NOTE)
    await asuspend_flow_run(wait_for_input=RunOutcome, timeout=timeout, key=key)  # raises Pause
    raise AssertionError("unreachable: suspending the current flow run raises Pause")


async def _resume_input(pause_key: str, flow_run_id: UUID, observer: Observer) -> RunOutcome | None:
    """The outcome the flow run was resumed with, if it is a well-formed one.

    Well-formed: an `error` (with the last status, if any, as a status object), or a terminal status
    object. No input (a resume by hand or by an automation) and anything else (a malformed input given by
    hand) give None, the latter with a warning: the run is then read again, never guessed from the input.
    """
    try:
        answer = await RunOutcome.aload(_keyset(pause_key), flow_run_id=flow_run_id)
        status = RunStatus.from_dict(answer.status) if answer.status is not None else None
    except (ValidationError, TypeError) as exc:
        problem = _one_line(exc)
    else:
        if answer.error is None and status is None:
            return None  # resumed without any input
        if answer.error is not None or (status is not None and status.is_terminal):
            return answer
        problem = f"the status is {status.status.value if status else None}, not a final one"
    observer.logger.warning(
        "the flow run was resumed with an input that is not a runwatch outcome (%s): ignoring it", problem
    )
    return None


def _one_line(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "input"
        return f"{where}: {first['msg']}"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


async def _first_look(api: runwatch.RunApi, run: str | StartedRun, url: str, policy: Policy) -> RunStatus:
    try:
        return await api.get_status(url, request_timeout=policy.request_timeout, trace=flow_run_carrier())
    except runwatch.RunNotFound:
        if isinstance(run, StartedRun):  # just started: the remote may not show it yet
            return run.status.observed()
        raise


async def _record(flow_run_id: UUID, key: str, record: WatchRecord, tags: list[str]) -> None:
    name = record_key(key)
    async with get_client() as client:
        if await read_record(client, flow_run_id, key) is not None:  # left by an earlier attempt
            await client.delete_flow_run_input(flow_run_id, name)
        await client.create_flow_run_input(flow_run_id, name, record.model_dump_json())
        if TAG not in tags:
            await client.update_flow_run(flow_run_id, tags=[*tags, TAG])


async def read_record(client: PrefectClient, flow_run_id: UUID, pause_key: str) -> WatchRecord | None:
    """The watch record of a suspension, if there is one."""
    name = record_key(pause_key)
    found = await client.filter_flow_run_input(flow_run_id, key_prefix=name, limit=1, exclude_keys=set())
    return WatchRecord.model_validate_json(found[0].value) if found and found[0].key == name else None


def _keyset(pause_key: str) -> Any:
    return keyset_from_paused_state(Suspended(pause_key=pause_key))


def _fired(base: str, pause_keys: set[str]) -> list[str]:
    """This run's fired pause keys, oldest first: `base`, then `base-2`, `base-3`..."""

    def index(key: str) -> int:
        return 1 if key == base else int(key[len(base) + 1 :])

    mine = [k for k in pause_keys if k == base or (k.startswith(f"{base}-") and k[len(base) + 1 :].isdigit())]
    return sorted(mine, key=index)


def _suspendable_flow_run() -> UUID:
    context = FlowRunContext.get()
    flow_run = context.flow_run if context else None
    if flow_run is None:
        raise RuntimeError("release_infrastructure=True works only inside a flow run")
    if flow_run.deployment_id is None:
        raise RuntimeError(
            "release_infrastructure=True needs a flow run of a deployment: Prefect suspends only deployed "
            "flow runs (it reruns them from the top on resume). Serve or deploy the flow, or wait in process "
            "with release_infrastructure=False."
        )
    if flow_run.parent_task_run_id is not None:
        raise RuntimeError(
            "release_infrastructure=True cannot suspend a subflow: Prefect suspends only top flows"
        )
    return flow_run.id


def _saved_block_id(block: RunStatusApi) -> UUID:
    if block._block_document_id is None:
        raise ValueError(
            "release_infrastructure=True needs a saved RunStatusApi block: the watcher loads it by id, so "
            "that no credential is ever copied into the flow run. Save it (block.save('name')) or pass its "
            "name."
        )
    return block._block_document_id
