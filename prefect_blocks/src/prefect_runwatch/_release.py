"""Suspend mode: hand a wait over to the watcher and let the flow run's process exit.

The flow looks at the remote run once (`runwatch.first_look`). If it is still going, the flow writes a watch
record as a flow run input (`<pause key>-watch`: a `runwatch.WaitSpec` whose `api` is the `RunStatusApi`
block's id; never a credential), tags the flow run `runwatch`, and suspends with the pause key
`runwatch-<hash of the status URL>`. The watcher finds suspended flow runs with that tag and key, watches the
run, and resumes the flow with a `RunOutcome` run input (a `runwatch.WaitResult`). Prefect reruns the flow
from the top; the same call finds its pause key fired and returns the outcome without reading the remote run
again. Records and inputs of the previous version (before the hand-off format) are still read.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Iterable
from typing import Any, NamedTuple
from uuid import UUID

from prefect.client.orchestration import PrefectClient, get_client
from prefect.context import FlowRunContext, TaskRunContext
from prefect.flow_runs import asuspend_flow_run
from prefect.input import RunInput
from prefect.input.run_input import keyset_from_paused_state
from prefect.states import Suspended
from pydantic import ValidationError

import runwatch
from prefect_runwatch._observe import Observer
from prefect_runwatch._trace import flow_run_carrier
from prefect_runwatch.blocks import RunStatusApi
from runwatch import Outcome, Policy, RunStatus, StartedRun, WaitResult, WaitSpec

__all__ = [
    "KEY_PREFIX",
    "TAG",
    "RunOutcome",
    "Suspension",
    "check_release",
    "read_record",
    "record_key",
    "resume_input",
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
    """The run input a suspended flow is resumed with: a `runwatch.WaitResult` (`outcome`, `status`,
    `message`). `error` (a core exception's class name, with `status` and `message`) is the shape the
    previous version's watcher wrote: read, never written, except to a flow run that version suspended."""

    outcome: Outcome | None = None
    status: dict[str, Any] | None = None
    message: str | None = None
    error: str | None = None

    def result(self, policy: Policy) -> WaitResult | None:
        """How the wait ended; None for an empty input (a resume by hand or by an automation).

        Raises `ValueError` (pydantic's `ValidationError` among them) for an input that says neither how
        the wait failed nor which final status it reached.
        """
        status = RunStatus.from_dict(self.status) if self.status is not None else None
        if self.outcome is None and self.error is None:
            if status is None:
                return None
            if not status.is_terminal:
                raise ValueError(f"the status is {status.status.value}, not a final one")
            return WaitResult.of_status(status, policy)  # the previous version's success, judged here
        if self.outcome is not None:
            result = WaitResult(outcome=self.outcome, status=status, message=self.message or "")
        else:
            result = WaitResult.of_error_name(str(self.error), self.message or "", status)
        if result.ok and (result.status is None or not result.status.is_terminal):
            raise ValueError("a success without its final status")
        return result


class Suspension(NamedTuple):
    """A suspended wait as its watch record says: what to watch, and whether the previous version wrote it
    (its flow run then takes a resume input of the previous shape only)."""

    spec: WaitSpec
    previous_version: bool = False


def wait_key(status_url: str) -> str:
    """A wait's first pause key, `runwatch-<hash of its status URL>`: the same in every rerun of the wait."""
    return KEY_PREFIX + hashlib.sha256(status_url.encode()).hexdigest()[:20]


def record_key(pause_key: str) -> str:
    return f"{pause_key}-watch"


def resume_input(result: WaitResult, previous_version: bool = False) -> dict[str, Any]:
    """The run input that resumes a suspended flow run with `result`.

    A flow run suspended by the previous version validates its input against that version's schema (Prefect
    refuses other keys), so it gets that shape: `status`, `error` (the class name) and `message`.
    """
    if not previous_version:
        return result.to_dict()
    status = result.status.to_dict() if result.status is not None else None
    return {"status": status, "error": result.error_name, "message": result.message}


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
    earlier = await _earlier(flow_run_id, wait_key(url))
    if earlier.fired:
        result = await _resumed_with(earlier.fired[-1], flow_run_id, policy, observer)
        if result is not None:
            observer.logger.info("resumed by the runwatch watcher: remote run %s has ended", url)
            return result.raise_for_outcome()
        observer.logger.info(
            "resumed without a final status (an automation or by hand): reading %s once", url
        )
    status = await runwatch.first_look(
        api, run, request_timeout=policy.request_timeout, trace=flow_run_carrier()
    )
    if status is not None:
        await observer(status)
        if status.is_terminal:
            await observer.finish(status)
            return runwatch.outcome(status, policy)
    spec = WaitSpec(
        run=url,
        api=str(block_id),
        policy=policy.to_dict(),
        deadline=earlier.deadline(policy),
        started=run.to_dict() if isinstance(run, StartedRun) else None,
    )
    await _record(flow_run_id, earlier.next_key, spec, earlier.tags)
    _say_suspending(observer, status, url)
    await _suspend(flow_run_id, earlier.next_key, spec.deadline, observer)
    return None  # Prefect raises Pause in the flow as soon as this task run ends


class _Earlier(NamedTuple):
    """What earlier attempts of this wait left on the flow run."""

    base: str  # the wait's first pause key (wait_key)
    fired: list[str]  # its pause keys already used, oldest first
    previous: Suspension | None  # the watch record of the last of them
    tags: list[str]

    @property
    def next_key(self) -> str:
        return f"{self.base}-{len(self.fired) + 1}" if self.fired else self.base

    def deadline(self, policy: Policy) -> float | None:
        """The wait's absolute deadline (UNIX seconds): the first suspension's, kept across resumes."""
        if self.previous is not None:
            return self.previous.spec.deadline
        return time.time() + policy.timeout if policy.timeout else None


async def _earlier(flow_run_id: UUID, base: str) -> _Earlier:
    async with get_client() as client:
        current = await client.read_flow_run(flow_run_id)
        fired = _fired(base, current.empirical_policy.pause_keys or set())
        previous = await read_record(client, flow_run_id, fired[-1]) if fired else None
    return _Earlier(base, fired, previous, current.tags)


def _say_suspending(observer: Observer, status: RunStatus | None, url: str) -> None:
    if status is None:  # passing trouble (network, 5xx, 429): the watcher rides it out
        observer.logger.info("remote run %s could not be read just now: suspending the flow run", url)
    else:
        observer.logger.info("remote run %s is %s: suspending the flow run", status.id, status.status.value)
    observer.logger.info("the runwatch watcher resumes it when the run ends")


def pause_timeout(deadline: float | None, now: float) -> int | None:
    """Whole seconds from `now` (epoch seconds) that Prefect keeps a suspension resumable: to our `deadline`
    (epoch seconds; at least 1 s, so a deadline just past still suspends) and PAUSE_GRACE after it. None: no
    deadline, no limit."""
    return None if deadline is None else max(1, math.ceil(deadline - now)) + PAUSE_GRACE


async def _suspend(flow_run_id: UUID, key: str, deadline: float | None, observer: Observer) -> None:
    """Suspend the flow run: at the task run's end when called from one, else at once (Prefect's `Pause`)."""
    timeout = pause_timeout(deadline, time.time())
    if TaskRunContext.get() is not None:
        await asuspend_flow_run(wait_for_input=RunOutcome, flow_run_id=flow_run_id, timeout=timeout, key=key)
        observer.logger.info(SUSPENDED_NOTE)
        return
    observer.logger.info(SUSPENDED_NOTE)
    await asuspend_flow_run(wait_for_input=RunOutcome, timeout=timeout, key=key)  # raises Pause
    raise AssertionError("unreachable: suspending the current flow run raises Pause")


async def _resumed_with(
    pause_key: str, flow_run_id: UUID, policy: Policy, observer: Observer
) -> WaitResult | None:
    """How the wait ended, as the flow run was resumed with it, if the input is a well-formed one.

    Well-formed: a result that failed (with the last status, if any, as a status object), or one that
    succeeded with its final status (`RunOutcome.result`). No input (a resume by hand or by an automation)
    and anything else (a malformed input given by hand) give None, the latter with a warning: the run is then
    read again, never guessed from the input.
    """
    try:
        answer = await RunOutcome.aload(_keyset(pause_key), flow_run_id=flow_run_id)
        return answer.result(policy)
    except (ValueError, TypeError) as exc:  # pydantic's ValidationError is a ValueError
        problem = _one_line(exc)
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


async def _record(flow_run_id: UUID, key: str, spec: WaitSpec, tags: list[str]) -> None:
    name = record_key(key)
    async with get_client() as client:
        if await read_record(client, flow_run_id, key) is not None:  # left by an earlier attempt
            await client.delete_flow_run_input(flow_run_id, name)
        await client.create_flow_run_input(flow_run_id, name, spec.model_dump_json())
        if TAG not in tags:
            await client.update_flow_run(flow_run_id, tags=[*tags, TAG])


async def read_record(client: PrefectClient, flow_run_id: UUID, pause_key: str) -> Suspension | None:
    """The watch record of a suspension, if there is one (a `runwatch.WaitSpec`; `api` the block's id).

    Raises `ValueError` (pydantic's `ValidationError`) for a record that is neither this version's nor the
    previous one's.
    """
    name = record_key(pause_key)
    found = await client.filter_flow_run_input(flow_run_id, key_prefix=name, limit=1, exclude_keys=set())
    if not found or found[0].key != name:
        return None
    data = json.loads(found[0].value)
    if isinstance(data, dict) and "api_block_id" in data:  # the previous version's record
        old = {key: data.get(key) for key in ("run", "policy", "deadline", "started") if key in data}
        return Suspension(
            WaitSpec.from_dict({**old, "api": str(data["api_block_id"])}), previous_version=True
        )
    return Suspension(WaitSpec.from_dict(data))


def _keyset(pause_key: str) -> Any:
    return keyset_from_paused_state(Suspended(pause_key=pause_key))


def _fired(base: str, pause_keys: Iterable[str]) -> list[str]:
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
