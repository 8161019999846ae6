"""Suspend mode end to end: a served deployment suspends while its remote run goes on, its process exits,
and the watcher (or an automation) resumes it once with the final status."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import pytest
from conftest import API_BLOCK, pids_with_env
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import arun_deployment
from prefect_harness import eventually
from prefect_server import PrefectServer

import runwatch
from prefect_runwatch import create_resume_automation, push_run_status
from prefect_runwatch._release import TAG
from runwatch.server import ReferenceServer

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def script(seconds: float, output_ref: str = "s3://lake/out/1") -> list[dict[str, Any]]:
    return [{"status": "RUNNING", "for": seconds}, {"status": "SUCCEEDED", "output_ref": output_ref}]


async def start_flow(parameters: dict[str, Any], deployment: str = "released-wait/e2e") -> UUID:
    flow_run = await arun_deployment(deployment, parameters=parameters, timeout=0)
    return flow_run.id


async def read(flow_run_id: UUID) -> FlowRun:
    async with get_client() as client:
        return await client.read_flow_run(flow_run_id)


async def until(flow_run_id: UUID, test: Callable[[FlowRun], bool], timeout: float, what: str) -> FlowRun:
    async def probe() -> FlowRun | None:
        flow_run = await read(flow_run_id)
        return flow_run if test(flow_run) else None

    return await eventually(probe, timeout, f"flow run {flow_run_id} {what}")


def suspended(flow_run: FlowRun) -> bool:
    return flow_run.state is not None and flow_run.state.is_paused() and flow_run.state.name == "Suspended"


def completed(flow_run: FlowRun) -> bool:
    assert flow_run.state is not None
    assert not (flow_run.state.is_failed() or flow_run.state.is_crashed()), flow_run.state
    return flow_run.state.is_completed()


async def state_names(flow_run_id: UUID) -> list[str]:
    async with get_client() as client:
        return [s.name or "" for s in await client.read_flow_run_states(flow_run_id)]


async def result(flow_run_id: UUID) -> dict[str, Any]:
    flow_run = await read(flow_run_id)
    assert flow_run.state is not None
    value: dict[str, Any] = await flow_run.state.aresult()
    return value


def flow_processes(flow_run_id: UUID) -> list[int]:
    """Every live process on this machine that runs this flow run (the runner marks it in the environment)."""
    return pids_with_env(f"PREFECT__FLOW_RUN_ID={flow_run_id}")


def remote_run_id(reference: ReferenceServer, before: set[str]) -> str:
    (new,) = set(reference.stats()["runs"]) - before
    return new


async def test_suspend_releases_the_process_and_the_watcher_resumes_it(
    served: subprocess.Popen[bytes],
    reference: ReferenceServer,
    watchers: Callable[[], subprocess.Popen[bytes]],
) -> None:
    watchers()
    known = set(reference.stats()["runs"])
    flow_run_id = await start_flow({"script": script(12.0), "api_block": API_BLOCK, "hold": 4.0})

    # Positive control: while the flow holds, its process is there and our check sees it.
    await until(flow_run_id, lambda fr: bool(fr.state and fr.state.is_running()), 60, "to run")
    await eventually(lambda: _async(flow_processes(flow_run_id)), 10, "the flow run's process")

    await until(flow_run_id, suspended, 60, "to suspend")
    run_id = remote_run_id(reference, known)
    await eventually(lambda: _async(not flow_processes(flow_run_id)), 15, "the flow run's process to exit")
    assert reference.get_run(run_id)["status"] == "RUNNING"  # released while the remote run goes on
    assert served.poll() is None  # the runner itself still serves
    flow_run = await read(flow_run_id)
    assert TAG in flow_run.tags and flow_run.state is not None
    assert flow_run.state.state_details.pause_key.startswith("runwatch-")

    resumed = await until(flow_run_id, lambda fr: not suspended(fr), 60, "to be resumed")
    gets_at_resume = reference.stats()["runs"][run_id]["GET"]
    await until(flow_run_id, completed, 90, "to complete")

    status = await result(flow_run_id)
    assert (status["id"], status["status"], status["output_ref"]) == (run_id, "SUCCEEDED", "s3://lake/out/1")
    assert reference.stats()["runs"][run_id]["GET"] == gets_at_resume  # the resumed flow did not poll again
    assert reference.stats()["runs"][run_id]["POST"] == 2  # the rerun's start was the same remote run
    names = await state_names(flow_run_id)
    assert names.count("Suspended") == 1 and names.count("Resuming") == 1

    ended = datetime.fromisoformat(status["ended_at"])
    assert resumed.state is not None and (await read(flow_run_id)).end_time is not None
    to_resume = (resumed.state.timestamp - ended).total_seconds()
    to_complete = ((await read(flow_run_id)).end_time - ended).total_seconds()  # type: ignore[operator]
    print(f"\nremote run ended -> flow resumed {to_resume:.1f} s -> flow completed {to_complete:.1f} s")


@pytest.mark.timeout(420)
async def test_a_killed_watcher_and_a_restarted_server_resume_every_flow_once(
    served: subprocess.Popen[bytes],
    reference: ReferenceServer,
    watchers: Callable[[], subprocess.Popen[bytes]],
    prefect_server: PrefectServer,
) -> None:
    """Mid-wait, the watcher is SIGKILLed (two new ones take over), then the Prefect server is SIGKILLed and
    started again. Runs that succeed and runs that fail, the short ones ending while the server is away:
    each flow resumes once, with its run's outcome, and no run is cancelled."""
    ends = [("SUCCEEDED", 25.0), ("FAILED", 25.0), ("SUCCEEDED", 50.0), ("FAILED", 50.0)]
    known = set(reference.stats()["runs"])
    flows = [
        await start_flow({"script": _ending(end, seconds, i), "api_block": API_BLOCK})
        for i, (end, seconds) in enumerate(ends)
    ]
    first = watchers()
    await asyncio.gather(*(until(fr, suspended, 90, "to suspend") for fr in flows))
    runs = _runs_by_flow(reference, known, flows)
    await _polled(reference, runs.values(), "the first watcher")
    os.killpg(first.pid, signal.SIGKILL)  # a crash, mid-wait
    first.wait(10)
    watchers(), watchers()  # two at once: neither may resume a flow the other resumed
    await _polled(reference, runs.values(), "the new watchers")

    away_from = datetime.now(timezone.utc)
    away = await asyncio.to_thread(prefect_server.restart)
    back_at = datetime.now(timezone.utc)
    assert served.poll() is None  # the runner rode the restart out

    await asyncio.gather(*(until(fr, _final, 180, "to finish") for fr in flows))
    ended_while_away = 0
    for i, flow_run_id in enumerate(flows):
        end, _ = ends[i]
        run_id = runs[flow_run_id]
        flow_run = await read(flow_run_id)
        assert flow_run.state is not None
        if end == "SUCCEEDED":
            assert flow_run.state.is_completed(), flow_run.state
            status = await result(flow_run_id)
            assert (status["id"], status["output_ref"]) == (run_id, f"s3://out/{i}")
        else:
            assert flow_run.state.is_failed(), flow_run.state
            assert f"flow {i}: out of memory" in (flow_run.state.message or ""), flow_run.state.message
        names = await state_names(flow_run_id)
        assert names.count("Suspended") == 1 and names.count("Resuming") == 1, names
        counters = reference.stats()["runs"][run_id]
        assert (counters["POST"], counters["cancel"]) == (2, 0)  # the rerun's start replays; no cancel
        ended = datetime.fromisoformat(reference.get_run(run_id)["ended_at"])
        ended_while_away += away_from <= ended <= back_at
    print(
        f"\nwatcher SIGKILLed, Prefect server SIGKILLed and away {away:.1f}s; {ended_while_away} of "
        f"{len(flows)} runs ended while it was away; every flow resumed once"
    )


def _ending(end: str, seconds: float, i: int) -> list[dict[str, Any]]:
    final: dict[str, Any] = {"status": end}
    if end == "SUCCEEDED":
        final["output_ref"] = f"s3://out/{i}"
    else:
        final["errors"] = [{"message": f"flow {i}: out of memory"}]
    return [{"status": "RUNNING", "for": seconds, "progress": {"message": f"flow {i}"}}, final]


def _final(flow_run: FlowRun) -> bool:
    return flow_run.state is not None and flow_run.state.is_final()


def _runs_by_flow(reference: ReferenceServer, known: set[str], flows: list[UUID]) -> dict[UUID, str]:
    """Each flow's remote run (its progress message names the flow by index)."""
    by_index = {
        reference.get_run(run_id)["progress"]["message"]: run_id
        for run_id in set(reference.stats()["runs"]) - known
    }
    return {flow_run_id: by_index[f"flow {i}"] for i, flow_run_id in enumerate(flows)}


async def _polled(reference: ReferenceServer, run_ids: Any, who: str) -> None:
    """Until every run in `run_ids` was read again (by a watcher) since now."""
    ids = list(run_ids)
    before = {r: reference.stats()["runs"][r]["GET"] for r in ids}

    async def probe() -> bool:
        now = reference.stats()["runs"]
        return all(now[r]["GET"] > before[r] for r in ids)

    await eventually(probe, 60, f"{who} to poll every run")


async def test_an_event_resumes_the_flow_through_the_automation(
    served: subprocess.Popen[bytes], reference: ReferenceServer
) -> None:
    await create_resume_automation()
    known = set(reference.stats()["runs"])
    flow_run_id = await start_flow({"script": script(3.0), "api_block": API_BLOCK})
    await until(flow_run_id, suspended, 60, "to suspend")
    run_id = remote_run_id(reference, known)
    api = runwatch.RunApi(reference.url, auth=runwatch.BearerAuth(_token()))

    async def ended() -> runwatch.RunStatus | None:
        status = await api.get_status(run_id)
        return status if status.is_terminal else None

    final = await eventually(ended, 30, "the remote run to end")
    assert suspended(await read(flow_run_id))  # no watcher runs: only the push can resume it
    pushed = time.monotonic()
    push_run_status(flow_run_id, final)
    await until(flow_run_id, lambda fr: not suspended(fr), 30, "to be resumed by the automation")
    print(f"\npush -> flow resumed by the automation in {time.monotonic() - pushed:.1f} s")
    await until(flow_run_id, completed, 90, "to complete")
    assert (await result(flow_run_id))["status"] == "SUCCEEDED"
    assert (await state_names(flow_run_id)).count("Resuming") == 1


def _token() -> str:
    from prefect_harness import CANARY

    return CANARY


async def _async(value: Any) -> Any:
    return value


async def test_the_example_flow_and_no_secret_anywhere(
    served: subprocess.Popen[bytes],
    reference: ReferenceServer,
    watchers: Callable[[], subprocess.Popen[bytes]],
    all_output: Callable[[], str],
) -> None:
    """Runs the example flow users copy (suspended, then resumed), then looks for the canary token, which
    every request to the reference server carried, in every event, artifact, run input and log."""
    watchers()
    job = {"script": [{"status": "RUNNING", "for": 3}, {"status": "SUCCEEDED", "output_ref": "s3://lake/x"}]}
    flow_run_id = await start_flow({"api_block": API_BLOCK, "job": job}, "nightly-export/example")
    await until(flow_run_id, completed, 120, "to complete")
    assert (await result(flow_run_id))["output_ref"] == "s3://lake/x"
    assert (await state_names(flow_run_id)).count("Suspended") == 1
    async with get_client() as client:
        task_runs = await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    announced = sorted(t.state.name for t in task_runs if t.name.startswith("announce") and t.state)
    assert announced == ["Cached", "Completed"]  # persisted: the rerun after the resume did not redo it

    token = _token()
    async with get_client() as client:
        seen = await _everything(client)
    assert all(seen[kind] for kind in seen), {kind: len(items) for kind, items in seen.items()}
    for kind, items in seen.items():
        leaks = [item for item in items if token in item]
        assert not leaks, f"the token leaked into {kind}: {leaks[0][:300]}"
    assert token not in all_output()  # the served flows' and the watchers' own output


async def _everything(client: Any) -> dict[str, list[str]]:
    """Every event, artifact, flow run input, log and flow run the Prefect server holds, as JSON."""
    from prefect.events.filters import EventFilter, EventOccurredFilter

    events: list[str] = []
    page = await client.read_events(EventFilter(occurred=EventOccurredFilter(since=_SINCE)), limit=50)
    while page is not None:
        events += [event.model_dump_json() for event in page.events]
        page = await client.read_events_page(page.next_page) if page.next_page else None
    artifacts = [a.model_dump_json() for a in await _all(client.read_artifacts)]
    flow_runs = await _all(client.read_flow_runs)
    inputs = [
        i.model_dump_json()
        for flow_run in flow_runs
        for i in await client.filter_flow_run_input(flow_run.id, key_prefix="", limit=200, exclude_keys=set())
    ]
    logs = [log.model_dump_json() for log in await _all(client.read_logs)]
    return {
        "events": [e for e in events if "runwatch" in e],
        "artifacts": artifacts,
        "run inputs": inputs,
        "logs": logs,
        "flow runs": [fr.model_dump_json() for fr in flow_runs],
    }


async def _all(read: Callable[..., Any]) -> list[Any]:
    """Every item of a paged read (the server gives at most 200 at a time)."""
    items: list[Any] = []
    while batch := await read(limit=200, offset=len(items)):
        items += batch
    return items


_SINCE = datetime.now(timezone.utc) - timedelta(hours=1)
