"""Suspend mode end to end: a served deployment suspends while its remote run goes on, its process exits,
and the watcher (or an automation) resumes it once with the final status."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import prefect_harness
import pytest
from conftest import (
    API_BLOCK,
    BASIC_BLOCK,
    BASIC_CANARY,
    URL_CANARY,
    USER,
    USERINFO_BLOCK,
    Processes,
    pids_with_env,
)
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import arun_deployment
from prefect_harness import eventually
from prefect_server import PrefectServer

import runwatch
from prefect_runwatch import RunStatusApi, create_resume_automation, push_run_status
from prefect_runwatch._release import TAG
from prefect_runwatch.run_ended import EndedRunsCursor
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


SHORT = 25.0  # seconds: these runs end while the Prefect server is away


@pytest.mark.timeout(420)
async def test_a_killed_watcher_and_a_restarted_server_resume_every_flow_once(
    served: subprocess.Popen[bytes],
    reference: ReferenceServer,
    watchers: Callable[[], subprocess.Popen[bytes]],
    prefect_server: PrefectServer,
) -> None:
    """Mid-wait, the watcher is SIGKILLed (two new ones take over), then the Prefect server is SIGKILLed and
    started again once the short runs have ended. Runs that succeed and runs that fail: each flow resumes
    once, with its run's outcome, and no run is cancelled."""
    ends = [("SUCCEEDED", SHORT), ("FAILED", SHORT), ("SUCCEEDED", 50.0), ("FAILED", 50.0)]
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

    # The server crashes; the short runs end while it is away (their watchers cannot resume the flows
    # then); it starts again on the same database.
    away_from = datetime.now(timezone.utc)
    prefect_server.stop(signal.SIGKILL)
    short = [runs[flows[i]] for i, (_, seconds) in enumerate(ends) if seconds == SHORT]
    await eventually(lambda: _async(_all_ended(reference, short)), 90, "the short runs to end")
    await asyncio.to_thread(prefect_server.start)
    back_at = datetime.now(timezone.utc)
    away = (back_at - away_from).total_seconds()
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
    assert ended_while_away >= len(short)
    print(
        f"\nwatcher SIGKILLed, Prefect server SIGKILLed and away {away:.1f}s; {ended_while_away} of "
        f"{len(flows)} runs ended while it was away; every flow resumed once"
    )


def _all_ended(reference: ReferenceServer, run_ids: list[str]) -> bool:
    return all(reference.get_run(run_id)["ended_at"] is not None for run_id in run_ids)


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
    api = runwatch.RunApi(reference.url, auth=runwatch.BearerAuth(prefect_harness.CANARY))

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


async def _async(value: Any) -> Any:
    return value


WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"rw-e2e-webhook-canary-8d2e6f4a").decode()


def _basic(password: str) -> str:
    return base64.b64encode(f"{USER}:{password}".encode()).decode()


SECRETS = {  # every form each canary takes on the wire
    "bearer token": [prefect_harness.CANARY],
    "basic auth password": [BASIC_CANARY, _basic(BASIC_CANARY)],
    "webhook secret": [WEBHOOK_SECRET, WEBHOOK_SECRET.removeprefix("whsec_"), "rw-e2e-webhook-canary"],
}
USERINFO_SECRETS = {"URL userinfo password": [URL_CANARY, _basic(URL_CANARY)]}


EVENTS_BLOCK = "e2e-events"  # the reference server's Airflow-shaped API: the runs of DAG `upstream`


async def _loads() -> list[FlowRun]:
    """The flow runs of `load-after/e2e`, which starts from `runwatch.run.ended` events of `e2e-upstream`."""
    async with get_client() as client:
        return await client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["load-after"])))


async def _loads_for(want: int, final: bool = False) -> list[FlowRun] | None:
    runs = await _loads()
    done = all(r.state is not None and r.state.is_final() for r in runs) or not final
    return runs if len(runs) >= want and done else None


@pytest.mark.timeout(300)
async def test_a_deployment_runs_once_per_remote_run_that_ends_across_a_source_restart(
    served: subprocess.Popen[bytes], reference: ReferenceServer, logs: Any
) -> None:
    """`prefect-runwatch events` watches the runs of an Airflow-shaped API; `load-after/e2e` starts from its
    events (a DeploymentEventTrigger). One flow run per run that ends, none while it runs, none for a run
    that ended before the source first looked; the source SIGKILLed and started again loses and repeats
    nothing."""
    base = f"{reference.url}/vendors/airflow"
    await RunStatusApi(
        base_url=base, profile="airflow", params={"dag_id": "upstream"}, token=prefect_harness.CANARY
    ).asave(EVENTS_BLOCK, overwrite=True)
    history = reference.create_vendor_run("airflow", [{"state": "success"}])["id"]
    processes = Processes(logs)
    binary = str(Path(sys.executable).with_name("prefect-runwatch"))
    argv = [binary, "events", "--api-block", EVENTS_BLOCK, "--source", "e2e-upstream", "--interval", "1"]
    try:
        source = processes.start("events", *argv)

        async def looked() -> bool:
            assert source.poll() is None, processes.output()
            try:
                await EndedRunsCursor.aload("runwatch-ended-e2e-upstream")
            except ValueError:
                return False
            return True

        await eventually(looked, 60, "the source's first look")
        ok = reference.create_vendor_run("airflow", [{"state": "running", "for": 3.0}, {"state": "success"}])[
            "id"
        ]
        started_while_running = 0
        while _vendor_state(reference, ok) == "running":
            started_while_running = max(started_while_running, len(await _loads()))
            await asyncio.sleep(0.5)
        first = await eventually(lambda: _loads_for(1), 90, "the flow run of the first end")

        # A crash: the next run ends while no source runs; the source started again announces it once.
        os.killpg(source.pid, signal.SIGKILL)
        source.wait(10)
        bad = reference.create_vendor_run("airflow", [{"state": "failed"}])["id"]
        processes.start("events", *argv)
        both = await eventually(lambda: _loads_for(2, final=True), 90, "both flow runs to end")
        await asyncio.sleep(2)  # two more reads of the list: nothing more starts
        after = await _loads()
    finally:
        processes.stop_all()
    assert started_while_running == 0
    assert [(r.parameters["run_id"], r.parameters["status"]) for r in first] == [(ok, "SUCCEEDED")]
    assert sorted((r.parameters["run_id"], r.parameters["status"]) for r in after) == sorted(
        [(ok, "SUCCEEDED"), (bad, "FAILED")]
    )
    assert len(both) == 2 and all(r.state is not None and r.state.is_completed() for r in after)
    assert history not in {r.parameters["run_id"] for r in after}


def _vendor_state(reference: ReferenceServer, run_id: str) -> str:
    url = f"{reference.url}/vendors/airflow/api/v2/dags/upstream/dagRuns/{run_id}"
    answer = httpx.get(url, headers={"Authorization": f"Bearer {prefect_harness.CANARY}"})
    return str(answer.json()["state"])


@pytest.mark.timeout(300)
async def test_the_example_flow_and_no_secret_anywhere(
    served: subprocess.Popen[bytes],
    reference: ReferenceServer,
    open_reference: ReferenceServer,
    watchers: Callable[[], subprocess.Popen[bytes]],
    all_output: Callable[[], str],
    server_logs: list[str],
) -> None:
    """Runs the example flow users copy (suspended, then resumed), a wait per credential form (basic auth, a
    base URL with userinfo) and a wait whose end comes through a relay of signed webhooks; then looks for
    each canary in every event, artifact, run input, log and flow run, in the served flows' and watchers'
    output, and in what the reference servers and runwatch logged here."""
    known = set(reference.stats()["runs"])
    pushed = await start_flow({"script": script(20.0), "api_block": API_BLOCK})
    await until(pushed, suspended, 60, "to suspend")
    pushed_run = remote_run_id(reference, known)
    async with _relay(runwatch.WebhookInbox(WEBHOOK_SECRET)) as (inbox, url):
        box = inbox.subscribe(pushed_run)
        reference.subscribe(url, WEBHOOK_SECRET, runs=[pushed_run])
        watchers()
        job = {
            "script": [{"status": "RUNNING", "for": 3}, {"status": "SUCCEEDED", "output_ref": "s3://lake/x"}]
        }
        flow_run_id = await start_flow({"api_block": API_BLOCK, "job": job}, "nightly-export/example")
        by_block = {
            block: await start_flow({"script": script(3.0), "api_block": block})
            for block in (BASIC_BLOCK, USERINFO_BLOCK)
        }
        delivered = await _push_the_end(box, pushed)
    assert delivered  # verified with the secret, and pushed to Prefect
    for other in (pushed, *by_block.values()):
        await until(other, completed, 120, "to complete")
        assert (await result(other))["status"] == "SUCCEEDED"
        assert (await state_names(other)).count("Resuming") == 1
    assert len(open_reference.stats()["runs"]) == 2  # the basic and userinfo waits ran there

    await until(flow_run_id, completed, 120, "to complete")
    assert (await result(flow_run_id))["output_ref"] == "s3://lake/x"
    assert (await state_names(flow_run_id)).count("Suspended") == 1
    async with get_client() as client:
        task_runs = await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    announced = sorted(t.state.name for t in task_runs if t.name.startswith("announce") and t.state)
    assert announced == ["Cached", "Completed"]  # persisted: the rerun after the resume did not redo it

    async with get_client() as client:
        seen = await _everything(client)
    assert all(seen[kind] for kind in seen), {kind: len(items) for kind, items in seen.items()}
    seen["served flows' and watchers' output"] = [all_output()]
    seen["reference servers' and runwatch's logs here"] = server_logs
    assert server_logs  # positive control: they log at debug level
    assert not _leaks(seen, SECRETS), _leaks(seen, SECRETS)[:3]
    # URL userinfo is never shown or stored (issue 7, fault 10): the block keeps it as basic auth, in its
    # secret field, so Prefect's own block-document events do not publish it with the base URL.
    assert not _leaks(seen, USERINFO_SECRETS), _leaks(seen, USERINFO_SECRETS)[:3]


def _leaks(seen: dict[str, list[str]], secrets: dict[str, list[str]]) -> list[str]:
    return [
        f"the {form} in {kind}: ...{item[max(0, item.index(text) - 150) : item.index(text) + 40]}..."
        for kind, items in seen.items()
        for item in items
        for form, texts in secrets.items()
        for text in texts
        if text in item
    ]


@contextlib.asynccontextmanager
async def _relay(inbox: runwatch.WebhookInbox) -> AsyncIterator[tuple[runwatch.WebhookInbox, str]]:
    """A webhook receiver on 127.0.0.1, served on this event loop (the inbox's mailboxes live here)."""
    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(
        inbox.asgi, host="127.0.0.1", port=port, interface="asgi3", lifespan="off", log_level="debug"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    await eventually(lambda: _async(server.started), 30, "the webhook relay to listen")
    try:
        yield inbox, f"http://127.0.0.1:{port}/hooks"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


async def _push_the_end(box: Any, flow_run_id: UUID) -> int:
    """What a relay does: each verified delivery for the run; its terminal status goes to Prefect."""
    seen = 0
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        for status, _ in await box.wait(5.0):
            seen += 1
            if status.is_terminal:
                push_run_status(flow_run_id, status)
                return seen
    return 0


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
