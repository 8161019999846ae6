"""The watcher in this process against flow runs of a real deployment, run in this process too.

The end-to-end suite covers the same path with a served deployment and separate processes; here the odd
endings are cheap to reach: a failed run, our deadline, a missing block, a resume that carries no status.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

import pytest
from prefect import Flow, flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.client.schemas.objects import FlowRun, Log, StateDetails, StateType
from prefect.deployments import run_deployment
from prefect.exceptions import Pause
from prefect.flow_engine import run_flow_async
from prefect.input import RunInput
from prefect.input.run_input import keyset_from_paused_state
from prefect.settings import PREFECT_API_URL, PREFECT_CLIENT_MAX_RETRIES, temporary_settings
from prefect.states import State, Suspended
from prefect.telemetry.run_telemetry import LABELS_TRACEPARENT_KEY
from prefect_harness import FAST, eventually
from pydantic import BaseModel, TypeAdapter

import runwatch
from prefect_runwatch import RemoteRunJob, RunStatusApi, Watcher, start_run_and_wait, wait_for_run
from prefect_runwatch._release import (
    PAUSE_GRACE,
    SUSPENDED_NOTE,
    RunOutcome,
    Suspension,
    _Earlier,
    _fired,
    _one_line,
    pause_timeout,
    read_record,
    record_key,
    resume_input,
    wait_key,
)
from prefect_runwatch.cli import main
from prefect_runwatch.tasks import PartialSuccess
from runwatch.server import ReferenceServer


@flow(persist_result=True)
async def released(
    run: str,
    api_block: str,
    timeout: float | None = None,
    partial_success: PartialSuccess | None = None,
    policy: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return await wait_for_run(
        run,
        api_block,
        {**FAST, **(policy or {})},
        timeout=timeout,
        partial_success=partial_success,
        release_infrastructure=True,
    )


@flow(persist_result=True)
async def released_job(api_block: str, body: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
    job = RemoteRunJob(api=await RunStatusApi.aload(api_block), body=body, timeout=timeout, **FAST)
    run = await job.trigger()
    await run.wait_for_completion(release_infrastructure=True)  # in the flow body: suspends at once
    return await run.fetch_result()


@flow(persist_result=True)
async def released_twice(first: str, second: str, api_block: str) -> list[str]:
    return [
        (await wait_for_run(run, api_block, FAST, release_infrastructure=True))["status"]
        for run in (first, second)
    ]


async def new_flow_run(flow: Flow[..., Any] = released, **parameters: Any) -> FlowRun:
    deployment_id = await (await flow.ato_deployment(name="in-process")).aapply()
    async with get_client() as client:
        return await client.create_flow_run_from_deployment(deployment_id, parameters=parameters)


async def execute(flow_run_id: UUID, flow: Flow[..., Any] = released) -> State:
    """Run (or rerun, after a resume) the flow run in this process, as a runner's subprocess would."""
    async with get_client() as client:
        flow_run = await client.read_flow_run(flow_run_id)
        try:
            state = await run_flow_async(flow, flow_run, flow_run.parameters, return_type="state")
        except Pause:  # the flow run suspended: its process would exit here (prefect.engine does)
            state = (await client.read_flow_run(flow_run_id)).state
    assert isinstance(state, State)
    return state


async def resumed_by(watcher: Watcher, flow_run_id: UUID) -> None:
    """Let the watcher scan until it has resumed the flow run."""

    async def probe() -> bool:
        await watcher.scan()
        async with get_client() as client:
            state = (await client.read_flow_run(flow_run_id)).state
        return bool(state and state.name == "Resuming")

    await eventually(probe, 30, f"the watcher to resume {flow_run_id}", every=0.2)


@pytest.fixture(autouse=True)
async def no_suspended_flow_run_of_another_test() -> None:
    """A watcher watches every suspended runwatch flow run on the server: each test's sees its own only (its
    counts of resumes are then exact), so any an earlier test left suspended is deleted first."""
    suspended = FlowRunFilter(
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED])),
        tags=FlowRunFilterTags(all_=["runwatch"]),
    )
    async with get_client() as client:
        for flow_run in await client.read_flow_runs(flow_run_filter=suspended):
            await client.delete_flow_run(flow_run.id)


@pytest.fixture
async def saved(api: RunStatusApi) -> str:
    await api.asave("watched-api", overwrite=True)
    return "watched-api"


async def test_suspend_watch_resume_rerun(
    server: ReferenceServer, saved: str, caplog: pytest.LogCaptureFixture
) -> None:
    run = server.create_run(script=[{"status": "RUNNING", "for": 5.0}, {"status": "SUCCEEDED"}])
    flow_run = await new_flow_run(run=run["id"], api_block=saved)
    state = await execute(flow_run.id)
    assert state.is_paused() and state.name == "Suspended"
    async with get_client() as client:  # the wait's task run ended, as Prefect needs for the flow run to stop
        (task_run,) = await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run.id]))
        )
    assert task_run.state is not None and task_run.state.is_completed() and task_run.state.name == "Released"
    assert (
        task_run.state.message
        == "the flow run is suspended while the remote run goes on; the watcher resumes it"
    )
    why = [
        f"remote run {run['id']} is RUNNING: suspending the flow run",
        "the runwatch watcher resumes it when the run ends",
    ]
    await eventually(lambda: _said(flow_run.id, *why), 30, "the flow run's log of why it suspends", every=0.2)
    watcher = Watcher(scan_interval=0.2)
    with caplog.at_level(logging.INFO):
        await resumed_by(watcher, flow_run.id)
    assert watcher.resumed == 1
    assert "resumed by the runwatch watcher (succeeded)" in caplog.messages  # in the flow run's log
    assert any(message.startswith(f"remote run {run['id']} is SUCCEEDED") for message in caplog.messages)
    # the watcher's summary belongs to the flow run it watched for
    assert await artifacts_of(flow_run.id) == [f"Remote run `{run['id']}` ended SUCCEEDED"]
    gets = server.stats()["runs"][run["id"]]["GET"]
    state = await execute(flow_run.id)
    assert state.is_completed() and (await state.aresult())["status"] == "SUCCEEDED"
    assert server.stats()["runs"][run["id"]]["GET"] == gets  # the rerun did not poll
    said = f"resumed by the runwatch watcher: remote run {server.run_url(run['id'])} has ended"
    await eventually(lambda: _said(flow_run.id, said), 30, "the rerun's log of how it knows", every=0.2)
    await watcher.close()


@pytest.mark.parametrize(
    ("faults", "policy"),
    [
        ({"errors_5xx": {"first": 1, "status": 503}}, {}),
        ({"slow": {"first": 1, "seconds": 5}}, {"request_timeout": 1}),  # the policy's request timeout holds
    ],
    ids=["503", "slower-than-the-request-timeout"],
)
async def test_passing_trouble_on_the_first_look_is_left_to_the_watcher(
    server: ReferenceServer, saved: str, faults: dict[str, Any], policy: dict[str, Any]
) -> None:
    """The first look is `runwatch.first_look`, as the Airflow sensor's: a 503 suspends, it does not fail."""
    run = server.create_run(
        script=[{"status": "RUNNING", "for": 1.0}, {"status": "SUCCEEDED"}], faults=faults
    )
    flow_run = await new_flow_run(run=run["id"], api_block=saved, policy=policy)
    assert (await execute(flow_run.id)).name == "Suspended"
    said = f"remote run {server.url}/runs/{run['id']} could not be read just now: suspending the flow run"
    await eventually(lambda: _said(flow_run.id, said), 30, "the flow run's log of why it suspends", every=0.2)
    await resumed_by(Watcher(), flow_run.id)
    state = await execute(flow_run.id)
    assert state.is_completed() and (await state.aresult())["status"] == "SUCCEEDED"


async def suspension_record(flow_run_id: UUID) -> Suspension:
    """The watch record of the flow run's suspension, which Prefect keeps resumable for our grace after the
    record's deadline: not for ever, nor for its own default."""
    async with get_client() as client:
        suspended = (await client.read_flow_run(flow_run_id)).state
        assert suspended is not None and suspended.state_details.pause_key is not None
        record = await read_record(client, flow_run_id, suspended.state_details.pause_key)
    assert record is not None and record.spec.deadline is not None
    resumable_until = suspended.state_details.pause_timeout
    assert resumable_until is not None
    assert 0 <= resumable_until.timestamp() - (record.spec.deadline + PAUSE_GRACE) < 60
    return record


async def flow_run_logs(flow_run_id: UUID) -> list[Log]:
    """The flow run's log as Prefect stores it, oldest first."""
    async with get_client() as client:
        found = await client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
    return sorted(found, key=lambda log: log.timestamp)


async def _said(flow_run_id: UUID, *lines: str) -> bool:
    """Whether the flow run's log holds `lines`, once each, in this order."""
    return [log.message for log in await flow_run_logs(flow_run_id) if log.message in lines] == list(lines)


async def test_the_resumed_flow_raises_the_typed_outcome(server: ReferenceServer, saved: str) -> None:
    run = server.create_run(script=[{"status": "RUNNING"}])
    flow_run = await new_flow_run(run=run["id"], api_block=saved)
    assert (await execute(flow_run.id)).name == "Suspended"
    server.cancel_run(run["id"])
    await resumed_by(Watcher(), flow_run.id)
    state = await execute(flow_run.id)
    assert state.is_failed() and "was cancelled" in (state.message or "")
    assert type(await state.aresult(raise_on_failure=False)) is runwatch.RunCancelled


async def artifacts_of(flow_run_id: UUID) -> list[str | None]:
    async with get_client() as client:
        found = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return [artifact.description for artifact in found]


async def test_our_deadline_spans_the_suspension(server: ReferenceServer, saved: str) -> None:
    run = server.create_run(script=[{"status": "RUNNING"}])
    flow_run = await new_flow_run(run=run["id"], api_block=saved, timeout=1.5)
    assert (await execute(flow_run.id)).name == "Suspended"
    record = await suspension_record(flow_run.id)
    assert record.spec.wait_policy() == runwatch.Policy(
        **FAST, timeout=1.5
    )  # the watcher's rules are the wait's
    await resumed_by(Watcher(), flow_run.id)
    assert await artifacts_of(flow_run.id) == []  # no summary: the run has not ended
    state = await execute(flow_run.id)
    assert type(await state.aresult(raise_on_failure=False)) is runwatch.WaitTimeout
    assert server.get_run(run["id"])["status"] == "RUNNING"  # our deadline; the remote run goes on


async def test_a_missing_block_fails_the_flow_instead_of_leaving_it_suspended(
    server: ReferenceServer, api: RunStatusApi
) -> None:
    block_id = await api.asave("short-lived", overwrite=True)
    run = server.create_run(script=[{"status": "RUNNING"}])
    flow_run = await new_flow_run(run=run["id"], api_block="short-lived")
    suspended = await execute(flow_run.id)
    assert suspended.name == "Suspended"
    await RunStatusApi.adelete("short-lived")
    await resumed_by(Watcher(), flow_run.id)
    async with get_client() as client:  # what the watcher resumed it with
        given = json.loads(
            await client.read_flow_run_input(flow_run.id, keyset_from_paused_state(suspended)["response"])
        )
    assert given["outcome"] == "error"
    assert given["message"] == f"the runwatch watcher cannot load the RunStatusApi block {block_id}"
    state = await execute(flow_run.id)  # the rerun cannot load the block either: it says so
    assert state.is_failed() and "short-lived" in (state.message or "")


async def test_resumed_without_a_status_reads_once_and_suspends_again(
    server: ReferenceServer, saved: str
) -> None:
    run = server.create_run(script=[{"status": "RUNNING"}])
    flow_run = await new_flow_run(run=run["id"], api_block=saved, timeout=600)
    first = await execute(flow_run.id)
    assert first.name == "Suspended"
    async with get_client() as client:  # as the UI or an automation would: no run input
        await client.resume_flow_run(flow_run.id)
    state = await execute(flow_run.id)
    assert state.name == "Suspended" and state.state_details.pause_key.endswith("-2")
    said = (
        f"resumed without a final status (an automation or by hand): reading {server.run_url(run['id'])} once"
    )
    await eventually(lambda: _said(flow_run.id, said), 30, "the rerun's log of why it reads", every=0.2)
    async with get_client() as client:  # our deadline is the first suspension's, kept across resumes
        records = [await read_record(client, flow_run.id, s.state_details.pause_key) for s in (first, state)]
    deadlines = [record.spec.deadline if record else None for record in records]
    assert deadlines[0] is not None and deadlines[1] == deadlines[0]
    server.cancel_run(run["id"])
    await resumed_by(Watcher(), flow_run.id)
    state = await execute(flow_run.id)
    assert type(await state.aresult(raise_on_failure=False)) is runwatch.RunCancelled


@flow
async def parent_of_a_released_wait(deployment_id: UUID, parameters: dict[str, Any]) -> UUID:
    child = await run_deployment(deployment_id, parameters=parameters, timeout=0)  # a subflow: not waited for
    return child.id


async def test_a_subflow_is_not_suspended(server: ReferenceServer, saved: str) -> None:
    """A deployment run as a subflow (`run_deployment`): Prefect suspends only top flow runs."""
    run = server.create_run(script=[{"status": "RUNNING"}])
    deployment_id = await (await released.ato_deployment(name="in-process")).aapply()
    parent = await parent_of_a_released_wait(deployment_id, {"run": run["id"], "api_block": saved})
    state = await execute(parent)
    raised = await state.aresult(raise_on_failure=False)
    assert isinstance(raised, RuntimeError)
    assert (
        str(raised) == "release_infrastructure=True cannot suspend a subflow: Prefect suspends only top flows"
    )
    assert server.stats()["runs"][run["id"]]["GET"] == 0


# A resume by hand with an input that is not a well-formed outcome (issue 16, item 9).


@pytest.mark.parametrize(
    ("run_input", "reason"),
    [
        ({"status": {"status": "SUCCEEDED"}}, "id: Field required"),  # no id: not a status object
        ({"status": {"id": "r-x", "status": "RUNNING"}}, "the status is RUNNING, not a final one"),
        (
            {"status": {"id": "r-x", "status": "NOT-A-STATE"}},
            "input: Value error, 'NOT-A-STATE' is not a valid State",
        ),
        ({"outcome": "succeeded"}, "a success without its final status"),
    ],
)
async def test_a_malformed_resume_input_is_ignored_and_the_run_read_again(
    server: ReferenceServer,
    saved: str,
    run_input: dict[str, Any],
    reason: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    run = server.create_run(script=[{"status": "RUNNING"}])
    flow_run = await new_flow_run(run=run["id"], api_block=saved)
    assert (await execute(flow_run.id)).name == "Suspended"
    reads = server.stats()["runs"][run["id"]]["GET"]
    async with get_client() as client:
        await client.resume_flow_run(flow_run.id, run_input=run_input)
    state = await execute(flow_run.id)  # reads the run again: still going, so it suspends again
    assert state.name == "Suspended" and state.state_details.pause_key.endswith("-2")
    assert server.stats()["runs"][run["id"]]["GET"] == reads + 1
    warning = f"the flow run was resumed with an input that is not a runwatch outcome ({reason}): ignoring it"
    assert warning in caplog.messages

    server.cancel_run(run["id"])  # and the watcher still ends the wait with the real outcome
    await resumed_by(Watcher(), flow_run.id)
    state = await execute(flow_run.id)
    assert type(await state.aresult(raise_on_failure=False)) is runwatch.RunCancelled


@pytest.mark.parametrize("shape", ["result", "previous"])
async def test_a_well_formed_outcome_given_by_hand_is_taken(
    server: ReferenceServer, saved: str, shape: str
) -> None:
    """The previous version's shape is a bare final status: the rerun judges it by the wait's own policy."""
    run = server.create_run(script=[{"status": "RUNNING"}])
    flow_run = await new_flow_run(run=run["id"], api_block=saved, partial_success="succeed")
    assert (await execute(flow_run.id)).name == "Suspended"
    final = runwatch.RunStatus(id=run["id"], status=runwatch.State.PARTIAL_SUCCESS).to_dict()
    given = {"outcome": "succeeded", "status": final} if shape == "result" else {"status": final}
    async with get_client() as client:
        await client.resume_flow_run(flow_run.id, run_input=given)
    state = await execute(flow_run.id)
    assert state.is_completed() and (await state.aresult())["status"] == "PARTIAL_SUCCESS"


async def test_a_run_ended_at_the_first_look_is_judged_by_the_waits_policy(
    server: ReferenceServer, saved: str
) -> None:
    run = server.create_run(script=[{"status": "PARTIAL_SUCCESS"}])
    flow_run = await new_flow_run(run=run["id"], api_block=saved, partial_success="succeed")
    state = await execute(flow_run.id)
    assert state.is_completed() and (await state.aresult())["status"] == "PARTIAL_SUCCESS"


class PreviousRunOutcome(RunInput):
    """The resume input as the previous version's flow runs declared it when they suspended."""

    status: dict[str, Any] | None = None
    error: str | None = None
    message: str | None = None


async def test_a_resume_input_of_the_previous_version_is_read(server: ReferenceServer, saved: str) -> None:
    run = server.create_run(script=[{"status": "RUNNING"}])
    flow_run = await new_flow_run(run=run["id"], api_block=saved)
    assert (await execute(flow_run.id)).name == "Suspended"
    server.cancel_run(run["id"])
    cancelled = runwatch.RunStatus(id=run["id"], status=runwatch.State.CANCELLED).to_dict()
    old = {"status": cancelled, "error": "RunCancelled", "message": f"run {run['id']} was cancelled"}
    async with get_client() as client:  # as the previous version's watcher resumed it
        await client.resume_flow_run(flow_run.id, run_input=old)
    state = await execute(flow_run.id)
    assert type(await state.aresult(raise_on_failure=False)) is runwatch.RunCancelled
    assert "was cancelled" in (state.message or "")


async def test_a_suspension_of_the_previous_version_is_resumed_in_its_own_shape(
    server: ReferenceServer, saved: str
) -> None:
    """A flow run suspended before an upgrade: its record is the previous shape, and Prefect checks the resume
    input against the schema that version declared (no other keys). The new watcher still resumes it."""
    run = server.create_run(script=[{"status": "RUNNING"}])
    flow_run = await new_flow_run(run=run["id"], api_block=saved)
    state = await execute(flow_run.id)
    assert state.name == "Suspended"
    key = state.state_details.pause_key
    async with get_client() as client:  # rewrite what the flow left as the previous version wrote it
        spec = json.loads(await client.read_flow_run_input(flow_run.id, f"{key}-watch"))
        old = {
            "run": spec["run"],
            "api_block_id": spec["api"],
            "api_block_name": saved,
            "policy": spec["policy"],
        }
        keyset = keyset_from_paused_state(state)
        await client.delete_flow_run_input(flow_run.id, f"{key}-watch")
        await client.create_flow_run_input(flow_run.id, f"{key}-watch", json.dumps(old))
        await client.delete_flow_run_input(flow_run.id, keyset["schema"])
    await PreviousRunOutcome.asave(keyset, flow_run_id=flow_run.id)
    server.cancel_run(run["id"])
    await resumed_by(Watcher(), flow_run.id)
    async with get_client() as client:
        given = json.loads(await client.read_flow_run_input(flow_run.id, keyset["response"]))
    assert (given["error"], given["status"]["status"]) == ("RunCancelled", "CANCELLED")
    state = await execute(flow_run.id)
    assert type(await state.aresult(raise_on_failure=False)) is runwatch.RunCancelled


async def test_remote_run_job_releases_from_the_flow_body(server: ReferenceServer, saved: str) -> None:
    flow_run = await new_flow_run(
        released_job, api_block=saved, body={"script": [{"status": "RUNNING"}]}, timeout=600
    )
    assert (await execute(flow_run.id, released_job)).name == "Suspended"
    (run_id,) = server.stats()["runs"]
    started = (
        await suspension_record(flow_run.id)
    ).spec.target()  # the watcher tolerates its 404s for the grace
    assert isinstance(started, runwatch.StartedRun) and started.status_url == server.run_url(run_id)
    await eventually(
        lambda: _said(flow_run.id, SUSPENDED_NOTE), 30, "the note on Prefect's wording", every=0.2
    )
    watcher = Watcher()
    await watcher.scan()  # watches it (and any other wait the session's server holds suspended)
    (watch,) = [task for task in asyncio.all_tasks() if task.get_name() == f"runwatch-{flow_run.id}"]
    await watcher.close()  # returns once every watch has stopped, and leaves the flow run suspended
    assert watch.cancelled() and watcher.watching == 0
    async with get_client() as client:
        assert (await client.read_flow_run(flow_run.id)).state.name == "Suspended"
    server.cancel_run(run_id)
    await resumed_by(Watcher(), flow_run.id)
    state = await execute(flow_run.id, released_job)
    assert type(await state.aresult(raise_on_failure=False)) is runwatch.RunCancelled
    assert server.stats()["runs_created"] == 1  # the rerun's trigger found the same run


async def test_a_watch_whose_flow_run_is_deleted_says_so_and_leaves_it_to_the_next_scan(
    server: ReferenceServer, saved: str, caplog: pytest.LogCaptureFixture
) -> None:
    run = server.create_run(script=[{"status": "RUNNING"}])
    flow_run = await new_flow_run(run=run["id"], api_block=saved)
    assert (await execute(flow_run.id)).name == "Suspended"
    watcher = Watcher()
    with caplog.at_level(logging.WARNING, logger="prefect_runwatch.watcher"):
        await watcher.scan()
        async with get_client() as client:  # deleted while watched: its resume cannot be written
            await client.delete_flow_run(flow_run.id)
        server.cancel_run(run["id"])
        head = f"watch of flow run {flow_run.id} failed ("

        async def warned() -> bool:
            return any(message.startswith(head) for message in caplog.messages)

        await eventually(warned, 30, "the watch's warning", every=0.1)
    await watcher.close()
    warning = next(message for message in caplog.messages if message.startswith(head))
    assert warning.endswith("); the next scan starts it again") and str(flow_run.id) in warning[len(head) :]
    assert watcher.resumed == 0


def test_cli_creates_the_automation_once(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["automation", "--name", "runwatch cli test"]) == 0
    first = capsys.readouterr().out.strip()
    assert main(["automation", "--name", "runwatch cli test"]) == 0
    assert capsys.readouterr().out.strip() == first


async def test_watcher_run_stops_when_told(saved: str) -> None:
    stop = asyncio.Event()
    watcher = Watcher(scan_interval=0.1)
    task = asyncio.create_task(watcher.run(stop))
    await asyncio.sleep(0.5)
    stop.set()
    await asyncio.wait_for(task, 10)
    assert watcher.watching == 0


@flow(persist_result=True)
async def released_start(api_block: str, body: dict[str, Any]) -> dict[str, Any]:
    return await start_run_and_wait(api_block, body, FAST, release_infrastructure=True)


async def test_the_suspension_is_explained_before_prefects_error_line(
    server: ReferenceServer, saved: str
) -> None:
    flow_run = await new_flow_run(released_start, api_block=saved, body={"script": [{"status": "RUNNING"}]})
    assert (await execute(flow_run.id, released_start)).name == "Suspended"

    async def logs() -> list[Log]:
        return await flow_run_logs(flow_run.id)

    def suspended_error(log: Log) -> bool:
        return log.level == logging.ERROR and "Finished in state Suspended" in log.message

    await eventually(lambda: _any(logs, suspended_error), 30, "Prefect's log of the suspension", every=0.2)
    messages = [(log.level, log.message) for log in await logs()]
    note = next(i for i, (_, message) in enumerate(messages) if message == SUSPENDED_NOTE)
    error = next(i for i, (level, message) in enumerate(messages) if level == logging.ERROR)
    assert note < error and "Finished in state Suspended" in messages[error][1]


async def _any(read: Callable[[], Awaitable[list[Log]]], test: Callable[[Log], bool]) -> bool:
    return any(test(log) for log in await read())


async def test_the_watcher_renews_client_credentials_once_per_lifetime(
    runwatch_server_factory: Callable[..., ReferenceServer],
) -> None:
    secret = "pf-secret-4c1d"
    server: ReferenceServer = runwatch_server_factory(
        retry_after=0, client_credentials=("pf-client", secret), token_lifetime=1.0
    )
    block = RunStatusApi(
        base_url=server.url,
        auth_style="client_credentials",
        username="pf-client",
        token=secret,
        token_url=f"{server.url}/oauth/token",
    )
    await block.asave("oauth-api", overwrite=True)
    flow_runs = []
    for _ in range(3):  # each run made just before its flow's first look: no delay adds up on a busy machine
        run = server.create_run(script=[{"status": "RUNNING", "for": 4.0}, {"status": "SUCCEEDED"}])
        flow_runs.append(await new_flow_run(run=run["id"], api_block="oauth-api"))
        assert (await execute(flow_runs[-1].id)).name == "Suspended"
    watcher = Watcher(scan_interval=0.2)
    for flow_run in flow_runs:
        await resumed_by(watcher, flow_run.id)
    await watcher.close()
    assert watcher.resumed == 3  # counted per resume
    tokens = server.stats()["tokens"]
    # Three flows' first looks and the watcher's waits over about four lifetimes of 1 s: renewed in time, a
    # handful of tokens in all, never one per poll.
    assert 2 <= tokens["issued"] <= 9 and tokens["expired_seen"] == 0
    for flow_run in flow_runs:
        state = await execute(flow_run.id)
        assert state.is_completed() and (await state.aresult())["status"] == "SUCCEEDED"


@pytest.mark.usefixtures("tracing")
async def test_the_flow_and_the_watcher_carry_the_flow_runs_trace(
    server: ReferenceServer, saved: str
) -> None:
    run = server.create_run(script=[{"status": "RUNNING", "for": 4.0}, {"status": "SUCCEEDED"}])
    flow_run = await new_flow_run(run=run["id"], api_block=saved)
    assert (await execute(flow_run.id)).name == "Suspended"
    async with get_client() as client:
        parent = (await client.read_flow_run(flow_run.id)).labels[LABELS_TRACEPARENT_KEY]
    watcher = Watcher(scan_interval=0.2)
    await resumed_by(watcher, flow_run.id)
    await watcher.close()
    seen = server.stats()["traceparents"][run["id"]]
    # The flow's first look carries the flow run's own; the watcher's reads hang from it (a span per wait).
    assert seen[parent] == 1 and "" not in seen
    assert {value.split("-")[1] for value in seen} == {parent.split("-")[1]}
    assert sum(seen.values()) == server.stats()["runs"][run["id"]]["GET"] >= 2


async def test_the_watcher_loop_scans_until_it_resumes_and_says_how_often(
    server: ReferenceServer, saved: str, caplog: pytest.LogCaptureFixture
) -> None:
    run = server.create_run(script=[{"status": "RUNNING"}])
    flow_run = await new_flow_run(run=run["id"], api_block=saved)
    assert (await execute(flow_run.id)).name == "Suspended"
    stop = asyncio.Event()
    watcher = Watcher(scan_interval=0.1)
    with caplog.at_level(logging.INFO, logger="prefect_runwatch.watcher"):
        looping = asyncio.create_task(watcher.run(stop))
        await asyncio.sleep(0.5)  # a few scans: the flow run is watched from the first one
        server.cancel_run(run["id"])

        async def resumed() -> bool:
            return watcher.resumed == 1

        await eventually(resumed, 30, "the watcher's loop to resume the flow run", every=0.1)
        stop.set()
        await asyncio.wait_for(looping, 10)
    assert "watching suspended flow runs; a scan every 0.1s" in caplog.messages
    state = await execute(flow_run.id)
    assert type(await state.aresult(raise_on_failure=False)) is runwatch.RunCancelled


async def test_a_scan_that_fails_is_logged_and_tried_again(caplog: pytest.LogCaptureFixture) -> None:
    stop = asyncio.Event()
    watcher = Watcher(scan_interval=0.1)
    away = {PREFECT_API_URL: "http://127.0.0.1:9/api", PREFECT_CLIENT_MAX_RETRIES: 0}
    with temporary_settings(away), caplog.at_level(logging.WARNING, logger="prefect_runwatch.watcher"):
        looping = asyncio.create_task(watcher.run(stop))

        async def failed_twice() -> bool:
            return sum("scan failed" in message for message in caplog.messages) >= 2

        await eventually(failed_twice, 30, "two failed scans", every=0.1)
        stop.set()
        await asyncio.wait_for(looping, 10)
    first = next(message for message in caplog.messages if "scan failed" in message)
    assert first.startswith("scan failed (") and first.endswith("); trying again in 0.1s")
    assert "connection attempts failed" in first  # the reason quoted: the client's error (httpx's words)


# What the watcher writes as the resume input, and how the rerun reads it back (no flow run needed).


class Nested(BaseModel):
    counts: list[int]


def _raised(call: Callable[[], object]) -> Exception:
    try:
        call()
    except Exception as exc:
        return exc
    raise AssertionError("no exception")


def test_a_refused_resume_input_is_named_in_one_line() -> None:
    nested = _raised(lambda: Nested.model_validate({"counts": [1, "x"]}))
    assert (
        _one_line(nested) == "counts.1: Input should be a valid integer, unable to parse string as an integer"
    )
    whole = _raised(lambda: TypeAdapter(int).validate_python("x"))  # an error of the input itself: no path
    assert _one_line(whole) == "input: Input should be a valid integer, unable to parse string as an integer"
    assert _one_line(ValueError("first line\nsecond line")) == "first line"
    assert _one_line(TypeError()) == "TypeError"


PARTIAL = {"id": "r-1", "status": "PARTIAL_SUCCESS"}


@pytest.mark.parametrize(
    ("given", "policy", "outcome", "message"),
    [
        ({"status": PARTIAL}, {}, "partial", "run r-1 partly succeeded"),  # the previous version's success
        ({"status": PARTIAL}, {"partial_success": "succeed"}, "succeeded", "run r-1 ended PARTIAL_SUCCESS"),
        (
            {"outcome": "failed", "status": {"id": "r-1", "status": "FAILED"}, "message": "oom"},
            {},
            "failed",
            "oom",
        ),
        ({"outcome": "succeeded", "status": {"id": "r-1", "status": "SUCCEEDED"}}, {}, "succeeded", ""),
        ({"outcome": "deadline"}, {}, "deadline", ""),
        (
            {"error": "RunCancelled", "status": {"id": "r-1", "status": "CANCELLED"}},
            {},
            "cancelled",
            "RunCancelled",
        ),
        ({"error": "WaitTimeout", "message": "gave up"}, {}, "deadline", "gave up"),
    ],
)
def test_a_resume_input_reads_back_as_its_wait_result(
    given: dict[str, Any], policy: dict[str, Any], outcome: str, message: str
) -> None:
    result = RunOutcome(**given).result(runwatch.Policy(**policy))
    assert result is not None and (result.outcome, result.message) == (outcome, message)
    status = given.get("status")
    assert result.status == (runwatch.RunStatus.from_dict(status) if status is not None else None)


def test_an_empty_resume_input_is_no_result_and_an_odd_one_is_refused() -> None:
    policy = runwatch.Policy()
    assert RunOutcome().result(policy) is None
    with pytest.raises(ValueError, match=r"^the status is RUNNING, not a final one$"):
        RunOutcome(status={"id": "r-1", "status": "RUNNING"}).result(policy)
    for given in (
        {"outcome": "succeeded"},
        {"outcome": "succeeded", "status": {"id": "r-1", "status": "RUNNING"}},
    ):
        with pytest.raises(ValueError, match=r"^a success without its final status$"):
            RunOutcome(**given).result(policy)


def test_the_resume_input_is_the_wait_result_or_the_previous_versions_shape() -> None:
    status = runwatch.RunStatus(id="r-1", status=runwatch.State.FAILED)
    result = runwatch.WaitResult(outcome="failed", status=status, message="oom")
    assert resume_input(result) == result.to_dict()
    assert RunOutcome(**resume_input(result)).result(runwatch.Policy()) == result
    previous = {"status": status.to_dict(), "error": "RunFailed", "message": "oom"}
    assert resume_input(result, previous_version=True) == previous
    deadline = runwatch.WaitResult(outcome="deadline", message="gave up")
    assert resume_input(deadline, True) == {"status": None, "error": "WaitTimeout", "message": "gave up"}


@flow(persist_result=True)
async def released_job_status(api_block: str, body: dict[str, Any], busy_for: float = 0.0) -> str:
    job = RemoteRunJob(api=await RunStatusApi.aload(api_block), body=body, **FAST)
    run = await job.trigger()
    await asyncio.sleep(busy_for)  # the flow's other work between the start and the wait
    await run.wait_for_completion(release_infrastructure=True)  # raises only if the run cannot be watched
    return f"{run.started.status.status.value} -> {run.status.status.value}"


def statuses(server: ReferenceServer) -> dict[str, str]:
    return {run_id: str(server.get_run(run_id)["status"]) for run_id in server.stats()["runs"]}


async def test_a_released_job_wait_keeps_a_failed_end_and_raises_what_could_not_be_watched(
    server: ReferenceServer, saved: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Started RUNNING, ended FAILED by the time the wait begins: the status kept is the first look's.
    body = {"script": [{"status": "RUNNING", "for": 0.05}, {"status": "FAILED"}]}
    failed = await new_flow_run(released_job_status, api_block=saved, body=body, busy_for=0.3)
    state = await execute(failed.id, released_job_status)  # the first look finds it ended: no suspension
    assert state.is_completed() and await state.aresult() == "RUNNING -> FAILED"

    going = await new_flow_run(released_job_status, api_block=saved, body={"script": [{"status": "RUNNING"}]})
    assert (await execute(going.id, released_job_status)).name == "Suspended"
    watcher = Watcher()
    await watcher.scan()
    async with get_client() as client:  # our deadline, as the watcher reports it: no final status
        await client.resume_flow_run(going.id, run_input={"outcome": "deadline", "message": "gave up"})
    # The run then ends, but the flow run was resumed meanwhile: the watcher says so and leaves it.
    (run_id,) = [run_id for run_id, status in statuses(server).items() if status == "RUNNING"]
    head = f"flow run {going.id} not resumed: "
    with caplog.at_level(logging.INFO, logger="prefect_runwatch.watcher"):
        server.cancel_run(run_id)

        async def told() -> bool:
            return any(message.startswith(head) for message in caplog.messages)

        await eventually(told, 30, "the watcher to find the flow run resumed already", every=0.1)
    await watcher.close()
    said = next(message for message in caplog.messages if message.startswith(head))
    assert said == head + "Cannot resume a flow run that is not paused."  # Prefect's reason, quoted
    assert watcher.resumed == 0
    state = await execute(going.id, released_job_status)
    assert type(await state.aresult(raise_on_failure=False)) is runwatch.WaitTimeout


@flow
def bystander() -> None:
    """Never run: flow runs of it are made in the state a test needs."""


async def test_a_watch_whose_flow_run_is_resumed_by_hand_stops_and_its_next_suspension_is_watched(
    server: ReferenceServer, saved: str
) -> None:
    """A person resumes a watched flow run with a status; its rerun suspends on its next wait. The scan in
    between stops the first watch (its run never ends), and a later scan watches the second wait."""
    first, second = (server.create_run(script=[{"status": "RUNNING"}]) for _ in range(2))
    flow_run = await new_flow_run(released_twice, first=first["id"], second=second["id"], api_block=saved)
    assert (await execute(flow_run.id, released_twice)).name == "Suspended"

    async def polls_of_first() -> int:
        return int(server.stats()["runs"][first["id"]]["GET"])

    watcher = Watcher()
    try:
        await watcher.scan()
        await eventually(polls_of_first, 30, "the first watch's first poll", every=0.1)
        final = runwatch.RunStatus(id=first["id"], status=runwatch.State.SUCCEEDED).to_dict()
        async with get_client() as client:
            await client.resume_flow_run(flow_run.id, run_input={"outcome": "succeeded", "status": final})
        await watcher.scan()  # the flow run is Resuming, not suspended
        await asyncio.sleep(0.5)  # a poll already sent is answered
        polled = await polls_of_first()
        assert (await execute(flow_run.id, released_twice)).name == "Suspended"  # on the second wait
        server.cancel_run(second["id"])
        await resumed_by(watcher, flow_run.id)
        assert await polls_of_first() == polled
    finally:
        await watcher.close()
    state = await execute(flow_run.id, released_twice)
    assert type(await state.aresult(raise_on_failure=False)) is runwatch.RunCancelled


async def test_a_scan_reads_every_page_of_suspended_runwatch_flow_runs_and_names_each_it_cannot_watch(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Flow runs made directly in the state each case needs: no flow runs, so this takes about a second."""
    async with get_client() as client:

        async def made(state: State[Any], tags: list[str]) -> FlowRun:
            return await client.create_flow_run(bystander, state=state, tags=tags)

        no_record = [await made(Suspended(pause_key=f"runwatch-scan-{n}"), ["runwatch"]) for n in (1, 2)]
        unreadable = await made(Suspended(pause_key="runwatch-scan-3"), ["runwatch"])
        await client.create_flow_run_input(unreadable.id, "runwatch-scan-3-watch", json.dumps({"run": 5}))
        ignored = [
            await made(Suspended(pause_key="runwatch-scan-4"), []),  # not tagged by runwatch
            await made(Suspended(pause_key="elsewhere-5"), ["runwatch"]),  # not a runwatch pause key
            await made(State(type="RUNNING"), ["runwatch"]),
            # suspended by runwatch once, running now: only a PAUSED flow run is watched
            await made(
                State(type="RUNNING", state_details=StateDetails(pause_key="runwatch-scan-6")), ["runwatch"]
            ),
        ]
        try:
            with caplog.at_level(logging.WARNING, logger="prefect_runwatch.watcher"):
                await Watcher(page_size=1).scan()  # one flow run a page: every page must be read
            said = {record.getMessage() for record in caplog.records}
            for flow_run in no_record:
                assert f"flow run {flow_run.id} is suspended by runwatch but has no watch record" in said
            unreadable_line = (
                f"flow run {unreadable.id} is suspended by runwatch but has an unreadable watch record "
                "(ValidationError)"
            )
            assert unreadable_line in said
            assert not [line for line in said for flow_run in ignored if str(flow_run.id) in line]
        finally:
            for flow_run in [*no_record, unreadable, *ignored]:
                await client.delete_flow_run(flow_run.id)


async def test_a_watch_record_of_the_previous_version_keeps_its_policy_deadline_and_start() -> None:
    started = runwatch.StartedRun(
        runwatch.RunStatus(id="r-1", status=runwatch.State.QUEUED), "https://example.test/runs/r-1"
    )
    old = {
        "api_block_id": "5f0c2a52-0000-4000-8000-000000000001",
        "run": "https://example.test/runs/r-1",
        "policy": {"interval": 2.0, "timeout": 60.0},
        "deadline": 1_800_000_000.0,
        "started": started.to_dict(),
    }
    async with get_client() as client:
        flow_run = await client.create_flow_run(bystander, state=Suspended(pause_key="runwatch-old-1"))
        try:
            await client.create_flow_run_input(flow_run.id, record_key("runwatch-old-1"), json.dumps(old))
            record = await read_record(client, flow_run.id, "runwatch-old-1")
        finally:
            await client.delete_flow_run(flow_run.id)
    spec = runwatch.WaitSpec(
        run=old["run"],
        api=old["api_block_id"],
        policy=old["policy"],
        deadline=old["deadline"],
        started=old["started"],
    )
    assert record == Suspension(spec, previous_version=True)


def test_a_flow_run_without_a_state_or_with_another_pause_key_is_not_runwatchs() -> None:
    from prefect_runwatch.watcher import _pause_key

    def flow_run(state: State[Any] | None) -> FlowRun:
        return FlowRun(flow_id=UUID(int=1), state=state)

    assert _pause_key(flow_run(None)) is None
    assert _pause_key(flow_run(Suspended(pause_key="elsewhere-1"))) is None
    assert _pause_key(flow_run(Suspended(pause_key="runwatch-abc"))) == "runwatch-abc"


@pytest.mark.parametrize("page_size", [0, -1])
def test_a_page_of_no_flow_runs_is_refused(page_size: int) -> None:
    with pytest.raises(ValueError, match=rf"^page_size: {page_size} flow runs a page; at least 1, or None"):
        Watcher(page_size=page_size)
    assert Watcher(page_size=1).page_size == 1


def test_the_watcher_scans_every_ten_seconds_by_default() -> None:
    assert Watcher().scan_interval == 10.0  # the interval docs/prefect.md gives


def test_a_suspension_is_resumable_to_our_deadline_and_the_grace_after_it() -> None:
    now = 1_000_000.0
    assert pause_timeout(None, now) is None
    assert pause_timeout(now + 59.2, now) == 60 + PAUSE_GRACE  # whole seconds, not short of the deadline
    assert pause_timeout(now + 0.5, now) == 1 + PAUSE_GRACE
    assert pause_timeout(now - 30, now) == 1 + PAUSE_GRACE  # past: still a suspension Prefect takes


def test_a_waits_pause_key_is_the_one_earlier_versions_gave_it() -> None:
    """A flow run suspended before an upgrade is rerun after it: the wait must find its pause key fired."""
    assert wait_key("https://example.test/runs/1") == "runwatch-0784f1d593ba50fdbcb7"


def test_a_waits_fired_pause_keys_are_its_own_oldest_first() -> None:
    base, other = wait_key("https://example.test/runs/1"), wait_key("https://example.test/runs/2")
    assert len(base) == len(other)  # another wait's keys differ only in the hash
    keys = [f"{base}-10", f"{base}-3", f"{base}-2", base, other, f"{other}-2", f"{base}-x", f"{base}2"]
    assert _fired(base, keys) == [base, f"{base}-2", f"{base}-3", f"{base}-10"]
    assert _fired(base, [f"{base}-2", base]) == [base, f"{base}-2"]


async def test_a_watch_record_left_by_an_earlier_attempt_is_replaced(
    server: ReferenceServer, saved: str
) -> None:
    """An attempt that recorded its wait and then failed before suspending (Prefect's API away, say) left its
    record under the key the next attempt suspends with: that one records its own wait instead."""
    run = server.create_run(script=[{"status": "RUNNING"}])
    flow_run = await new_flow_run(run=run["id"], api_block=saved)
    key = wait_key(server.run_url(run["id"]))
    stale = runwatch.WaitSpec(
        run=server.run_url("r-of-the-earlier-attempt"), api="00000000-0000-0000-0000-000000000000"
    )
    async with get_client() as client:
        await client.create_flow_run_input(flow_run.id, record_key(key), stale.model_dump_json())
    assert (await execute(flow_run.id)).name == "Suspended"
    async with get_client() as client:
        record = await read_record(client, flow_run.id, key)
    assert record is not None and record.spec.run == server.run_url(run["id"])


def test_a_first_suspensions_deadline_is_the_policys_timeout_from_now() -> None:
    earlier = _Earlier(base="runwatch-x", fired=[], previous=None, tags=[])
    before = time.time()
    deadline = earlier.deadline(runwatch.Policy(timeout=60))
    assert deadline is not None and before + 60 <= deadline <= time.time() + 60
    assert earlier.deadline(runwatch.Policy()) is None
