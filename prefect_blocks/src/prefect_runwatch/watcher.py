"""The watcher: one async process that watches every suspended wait and resumes each flow run once.

It asks Prefect every `scan_interval` seconds for flow runs that are PAUSED, tagged `runwatch` and suspended
with a `runwatch-` pause key, reads each one's watch record (a flow run input), and watches all the remote
runs at once with the core (one event loop, one connection pool per API). When a run ends it resumes the
flow run with a `RunOutcome` run input. Prefect accepts a resume only from PAUSED, atomically with the input,
so a restarted watcher, or two at once, still resume each flow run exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from uuid import UUID

from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.responses import SetStateStatus
from prefect.exceptions import ObjectNotFound
from prefect.logging.loggers import flow_run_logger

import runwatch
from prefect_runwatch._observe import Observer
from prefect_runwatch._release import KEY_PREFIX, TAG, Suspension, read_record, resume_input
from prefect_runwatch._trace import flow_run_carrier
from prefect_runwatch.blocks import RunStatusApi
from runwatch import WaitResult, WaitSpec

__all__ = ["Watcher"]

log = logging.getLogger("prefect_runwatch.watcher")


class Watcher:
    """Watches the remote runs of suspended flow runs and resumes each flow run with its run's outcome.

    `scan_interval`: seconds between looks at Prefect for suspended flow runs. `page_size`: flow runs read per
    request; None takes the server's default limit, which is also the most it accepts
    (`PREFECT_SERVER_API_DEFAULT_LIMIT`, 200 unless set). Raises `ValueError` for a page size below 1.
    """

    def __init__(self, *, scan_interval: float = 10.0, page_size: int | None = None) -> None:
        if page_size is not None and page_size < 1:
            raise ValueError(
                f"page_size: {page_size} flow runs a page; at least 1, or None for the server's own"
            )
        self.scan_interval = scan_interval
        self.page_size = page_size
        self.resumed = 0
        self._watches: dict[UUID, tuple[str, asyncio.Task[None]]] = {}

    @property
    def watching(self) -> int:
        return sum(not task.done() for _, task in self._watches.values())

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Scan and watch until `stop` is set (or for ever); pending watches are dropped, not lost."""
        stop = stop or asyncio.Event()
        log.info("watching suspended flow runs; a scan every %gs", self.scan_interval)
        try:
            while not stop.is_set():
                try:
                    await self.scan()
                except Exception as exc:  # the Prefect API may be away for a while: keep going
                    log.warning("scan failed (%s); trying again in %gs", exc, self.scan_interval)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.scan_interval)
        finally:
            await self.close()

    async def scan(self) -> None:
        """One look at Prefect: watch newly suspended waits, drop those no longer suspended."""
        async with get_client() as client:
            suspended = await self._suspended(client)
            for flow_run_id, (key, task) in list(self._watches.items()):
                flow_run = suspended.get(flow_run_id)
                if task.done() or flow_run is None or _pause_key(flow_run) != key:
                    task.cancel()
                    del self._watches[flow_run_id]
            for flow_run in suspended.values():
                pause_key = _pause_key(flow_run)
                if flow_run.id in self._watches or pause_key is None:
                    continue
                try:
                    record = await read_record(client, flow_run.id, pause_key)
                except ValueError as exc:  # pydantic's ValidationError is one
                    record, problem = None, f"an unreadable watch record ({type(exc).__name__})"
                else:
                    problem = "no watch record"
                if record is None:
                    log.warning("flow run %s is suspended by runwatch but has %s", flow_run.id, problem)
                    continue
                task = asyncio.create_task(self._watch(flow_run, record), name=f"runwatch-{flow_run.id}")
                self._watches[flow_run.id] = (pause_key, task)

    async def close(self) -> None:
        """Stop every watch. Their flow runs stay suspended for the next watcher."""
        tasks = [task for _, task in self._watches.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._watches.clear()

    async def _suspended(self, client: PrefectClient) -> dict[UUID, FlowRun]:
        found: dict[UUID, FlowRun] = {}
        flow_run_filter = FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED])),
            tags=FlowRunFilterTags(all_=[TAG]),
        )
        # Until an empty page: with no page size given, the server picks it. The offset counts rows, not runs:
        # a run met twice (the set moved between pages) must not hold the offset back and read a page again.
        offset = 0
        while page := await client.read_flow_runs(
            flow_run_filter=flow_run_filter, limit=self.page_size, offset=offset
        ):
            found.update((flow_run.id, flow_run) for flow_run in page)
            offset += len(page)
        return found

    async def _watch(self, flow_run: FlowRun, record: Suspension) -> None:
        logger = flow_run_logger(flow_run=flow_run)
        try:
            trace = flow_run_carrier(flow_run)
            result = await _outcome(record.spec, Observer(logger, flow_run_id=flow_run.id), trace)
            run_input = resume_input(result, record.previous_version)
            async with get_client() as client:
                resumed = await client.resume_flow_run(flow_run.id, run_input=run_input)
        except Exception as exc:  # Prefect's API away, say: the next scan watches this flow run again
            log.warning("watch of flow run %s failed (%s); the next scan starts it again", flow_run.id, exc)
            return
        if resumed.status is SetStateStatus.ACCEPT:
            self.resumed += 1
            logger.info("resumed by the runwatch watcher (%s)", result.outcome)
        else:  # resumed meanwhile by another watcher, an automation or a person
            log.info(
                "flow run %s not resumed: %s", flow_run.id, getattr(resumed.details, "reason", resumed.status)
            )


async def _outcome(spec: WaitSpec, observer: Observer, trace: dict[str, str] | None) -> WaitResult:
    """Watch the run to its end, in the suspended flow run's trace: how the wait ended."""
    try:
        if spec.api is None:
            raise ValueError("no block id")
        block: RunStatusApi = await RunStatusApi.aload_from_ref(spec.api)
    except (ObjectNotFound, ValueError):
        message = f"the runwatch watcher cannot load the RunStatusApi block {spec.api}"
        return WaitResult(outcome="error", message=message)
    if trace is not None:
        spec = spec.model_copy(update={"trace": trace})
    result = await runwatch.wait_result(block.get_api(), spec, hooks=runwatch.Hooks(on_change=observer))
    if result.status is not None and result.status.is_terminal:
        await observer.finish(result.status)
    return result


def _pause_key(flow_run: FlowRun) -> str | None:
    key = flow_run.state.state_details.pause_key if flow_run.state else None
    return key if key and key.startswith(KEY_PREFIX) else None
