"""The tasks against a real Prefect server and a reference server: every outcome, keys, sync use."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest
from prefect import flow
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.runtime import flow_run
from prefect.states import State
from prefect.telemetry.run_telemetry import LABELS_TRACEPARENT_KEY
from prefect_harness import FAST

import runwatch
from prefect_runwatch import RunStatusApi, start_run, start_run_and_wait, wait_for_run
from runwatch.server import ReferenceServer

RUNNING = {"status": "RUNNING", "for": 0.3}


async def _wait_state(api: RunStatusApi, run: str, **options: Any) -> State:
    """Run wait_for_run in a flow; the task run's final state."""

    states: list[State] = []

    @flow
    async def waits() -> None:
        policy = {**FAST, **options.pop("policy", {})}
        states.append(await wait_for_run(run, api, policy, return_state=True, **options))

    await waits(return_state=True)  # a failed task run fails the flow run too
    return states[0]


async def test_success_returns_the_final_status(api: RunStatusApi, server: ReferenceServer) -> None:
    run = server.create_run(script=[RUNNING, {"status": "SUCCEEDED", "output_ref": "s3://out/a"}])
    state = await _wait_state(api, run["id"])
    assert state.is_completed()
    status = await state.result()
    assert (status["id"], status["status"], status["output_ref"]) == (run["id"], "SUCCEEDED", "s3://out/a")
    assert runwatch.RunStatus.from_dict(status).is_terminal


OUTCOMES = [
    pytest.param(
        {"script": [RUNNING, {"status": "FAILED", "errors": [{"message": "disk full on ref-worker-1"}]}]},
        {},
        runwatch.RunFailed,
        "disk full on ref-worker-1",
        id="failed",
    ),
    pytest.param(
        {"script": [RUNNING, {"status": "CANCELLED", "errors": [{"message": "stopped by an operator"}]}]},
        {},
        runwatch.RunCancelled,
        "stopped by an operator",
        id="cancelled",
    ),
    pytest.param(
        {"script": [RUNNING, {"status": "TIMED_OUT", "errors": [{"message": "exceeded 4h limit"}]}]},
        {},
        runwatch.RunTimedOut,
        "exceeded 4h limit",
        id="remote-timeout",
    ),
    pytest.param(
        {"script": [{"status": "RUNNING"}], "heartbeat_every": 0.1, "stop_heartbeat_after": 0.3},
        {"policy": {"heartbeat_timeout": 1.0}},
        runwatch.RunLost,
        "heartbeat",
        id="lost",
    ),
    pytest.param(
        {"script": [{"status": "RUNNING"}], "faults": {"errors_5xx": {"every": 1, "status": 503}}},
        {"policy": {"unavailable_after": 1.0}},
        runwatch.StatusUnavailable,
        "unreadable",
        id="unavailable",
    ),
    pytest.param(
        {"script": [{"status": "RUNNING"}]},
        {"timeout": 1.0},
        runwatch.WaitTimeout,
        "gave up waiting",
        id="our-deadline",
    ),
    pytest.param(
        {
            "script": [
                RUNNING,
                {"status": "PARTIAL_SUCCESS", "errors": [{"message": "3 of 40 files skipped"}]},
            ]
        },
        {},
        runwatch.RunPartiallySucceeded,
        "3 of 40 files skipped",
        id="partial-default-raises",
    ),
    pytest.param(
        {
            "script": [
                RUNNING,
                {"status": "PARTIAL_SUCCESS", "errors": [{"message": "3 of 40 files skipped"}]},
            ]
        },
        {"partial_success": "fail"},
        runwatch.RunFailed,
        "only partly succeeded: 3 of 40 files skipped",
        id="partial-fail",
    ),
]


@pytest.mark.parametrize(("body", "options", "error", "message"), OUTCOMES)
async def test_outcomes_fail_the_task_run_with_the_remote_message(
    api: RunStatusApi,
    server: ReferenceServer,
    body: dict[str, Any],
    options: dict[str, Any],
    error: type[runwatch.WaitOutcome],
    message: str,
) -> None:
    run = server.create_run(**body)
    state = await _wait_state(api, run["id"], **options)
    assert state.is_failed()
    assert message in (state.message or "")
    exc = await state.result(raise_on_failure=False)
    assert type(exc) is error
    assert exc.status is None or exc.status.id == run["id"]


async def test_partial_success_can_count_as_success(api: RunStatusApi, server: ReferenceServer) -> None:
    run = server.create_run(script=[RUNNING, {"status": "PARTIAL_SUCCESS"}])
    state = await _wait_state(api, run["id"], partial_success="succeed")
    assert state.is_completed()
    assert (await state.result())["status"] == "PARTIAL_SUCCESS"


async def test_no_such_run_fails_fast(api: RunStatusApi) -> None:
    state = await _wait_state(api, "r-does-not-exist")
    assert isinstance(await state.result(raise_on_failure=False), runwatch.RunNotFound)


async def test_a_failed_run_fails_the_flow_with_the_typed_outcome(
    api: RunStatusApi, server: ReferenceServer
) -> None:
    run = server.create_run(script=[{"status": "FAILED", "errors": [{"message": "bad input"}]}])

    @flow
    async def pipeline() -> dict[str, Any]:
        return await wait_for_run(run["id"], api, FAST)

    with pytest.raises(runwatch.RunFailed, match="bad input"):
        await pipeline()


async def test_start_then_wait_and_start_run_and_wait(api: RunStatusApi, server: ReferenceServer) -> None:
    body = {"script": [RUNNING, {"status": "SUCCEEDED"}]}

    @flow
    async def pipeline() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        started = await start_run(api, body)
        waited = await wait_for_run(started, api, FAST)
        both = await start_run_and_wait(api, {"script": [{"status": "SUCCEEDED"}]}, FAST)
        return started, waited, both

    started, waited, both = await pipeline()
    assert started["id"] == waited["id"] and started["status_url"].endswith(started["id"])
    assert waited["status"] == both["status"] == "SUCCEEDED" and both["id"] != started["id"]


async def test_same_start_in_one_flow_run_is_one_remote_run(
    api: RunStatusApi, server: ReferenceServer
) -> None:
    body = {"script": [{"status": "SUCCEEDED"}]}

    @flow
    async def pipeline() -> list[str]:
        ids = [(await start_run(api, body))["id"] for _ in range(2)]
        ids.append((await start_run(api, body, idempotency_key="explicit-1"))["id"])
        ids.append((await start_run(api, {"script": [{"status": "FAILED"}]}))["id"])
        return ids

    first, again, explicit, other = await pipeline()
    assert first == again
    assert len({first, explicit, other}) == 3
    assert server.stats()["runs_created"] == 3


async def test_a_flow_retry_starts_a_new_remote_run(api: RunStatusApi, server: ReferenceServer) -> None:
    started: list[str] = []

    @flow(retries=1)
    async def pipeline() -> None:
        started.append((await start_run(api, {"script": [{"status": "SUCCEEDED"}]}))["id"])
        if flow_run.run_count == 1:
            raise RuntimeError("first attempt fails after the start")

    await pipeline()
    assert len(started) == 2 and started[0] != started[1]


async def test_api_block_by_name(api: RunStatusApi, server: ReferenceServer) -> None:
    await api.asave("by-name", overwrite=True)
    run = server.create_run(script=[{"status": "SUCCEEDED"}])
    state = await _wait_state("by-name", run["id"])  # type: ignore[arg-type]
    assert (await state.result())["id"] == run["id"]


def test_sync_flow_uses_submit(api: RunStatusApi, server: ReferenceServer) -> None:
    run = server.create_run(script=[RUNNING, {"status": "SUCCEEDED"}])

    @flow
    def pipeline() -> dict[str, Any]:
        return wait_for_run.submit(run["id"], api, FAST).result()

    assert pipeline()["status"] == "SUCCEEDED"


def test_tasks_are_never_cached() -> None:
    # A cached poll would return the first status it saw for ever (PrefectHQ/prefect#19596).
    assert wait_for_run.cache_policy is NO_CACHE
    assert start_run.cache_policy is NO_CACHE
    assert start_run_and_wait.cache_policy is NO_CACHE


async def test_release_needs_a_saved_block(api: RunStatusApi, server: ReferenceServer) -> None:
    run = server.create_run(script=[{"status": "RUNNING"}])
    state = await _wait_state(api, run["id"], release_infrastructure=True)
    raised = await state.result(raise_on_failure=False)
    assert isinstance(raised, ValueError)
    assert str(raised) == (
        "release_infrastructure=True needs a saved RunStatusApi block: the watcher loads it by id, so that no "
        "credential is ever copied into the flow run. Save it (block.save('name')) or pass its name."
    )


async def test_release_needs_a_deployment(api: RunStatusApi, server: ReferenceServer) -> None:
    await api.asave("not-deployed", overwrite=True)
    run = server.create_run(script=[{"status": "RUNNING"}])
    state = await _wait_state(
        await RunStatusApi.aload("not-deployed"), run["id"], release_infrastructure=True
    )
    raised = await state.result(raise_on_failure=False)
    assert isinstance(raised, RuntimeError)
    assert str(raised) == (
        "release_infrastructure=True needs a flow run of a deployment: Prefect suspends only deployed flow runs "
        "(it reruns them from the top on resume). Serve or deploy the flow, or wait in process with "
        "release_infrastructure=False."
    )
    assert server.stats()["runs"][run["id"]]["GET"] == 0  # refused before any look at the run


async def test_release_needs_a_flow_run(api: RunStatusApi, server: ReferenceServer) -> None:
    await api.asave("no-flow-run", overwrite=True)
    run = server.create_run(script=[{"status": "RUNNING"}])
    state = await wait_for_run(run["id"], "no-flow-run", FAST, release_infrastructure=True, return_state=True)
    raised = await state.result(raise_on_failure=False)
    assert isinstance(raised, RuntimeError)
    assert str(raised) == "release_infrastructure=True works only inside a flow run"
    assert server.stats()["runs"][run["id"]]["GET"] == 0


@pytest.mark.parametrize(
    ("saved", "raised", "says"),
    [
        (False, ValueError, "saved RunStatusApi block"),
        (True, RuntimeError, "needs a flow run of a deployment"),
    ],
)
async def test_start_run_and_wait_checks_release_before_starting_anything(
    api: RunStatusApi, server: ReferenceServer, saved: bool, raised: type[Exception], says: str
) -> None:
    if saved:
        await api.asave("not-deployed-start", overwrite=True)
        api = await RunStatusApi.aload("not-deployed-start")

    @flow
    async def starts() -> dict[str, Any]:
        return await start_run_and_wait(api, {"script": [RUNNING]}, FAST, release_infrastructure=True)

    state = await starts(return_state=True)
    assert isinstance(await state.result(raise_on_failure=False), raised)
    assert says in (state.message or "")
    assert server.stats()["requests_total"] == 0  # no remote run was started, so none is orphaned


async def test_the_policy_may_be_left_out_or_given_as_a_policy(
    api: RunStatusApi, server: ReferenceServer
) -> None:
    run = server.create_run(script=[{"status": "SUCCEEDED"}])

    @flow
    async def pipeline() -> list[str]:
        policies = (None, runwatch.Policy(interval=0.1), FAST)
        return [(await wait_for_run(run["id"], api, policy))["status"] for policy in policies]

    assert await pipeline() == ["SUCCEEDED"] * 3


async def test_task_run_names_show_the_run(api: RunStatusApi, server: ReferenceServer) -> None:
    """Whichever way the run is given: its id, what `start_run` returned, or a `runwatch.StartedRun`."""

    @flow
    async def pipeline() -> tuple[str, list[str]]:
        started = await start_run(api, {"script": [{"status": "SUCCEEDED"}]})
        given = (started["id"], started, runwatch.StartedRun.from_dict(started))
        states = [await wait_for_run(run, api, FAST, return_state=True) for run in given]
        return started["id"], [str(state.state_details.task_run_id) for state in states]

    run_id, task_run_ids = await pipeline()
    async with get_client() as client:
        names = [(await client.read_task_run(UUID(task_run_id))).name for task_run_id in task_run_ids]
    assert names == [f"wait_for_run {run_id}"] * 3


@pytest.mark.usefixtures("tracing")
async def test_the_start_and_the_wait_carry_the_flow_runs_trace(
    api: RunStatusApi, server: ReferenceServer
) -> None:
    @flow
    async def traced() -> tuple[dict[str, Any], str]:
        final = await start_run_and_wait(
            api, {"script": [{"status": "RUNNING", "for": 0.3}, {"status": "SUCCEEDED"}]}, FAST
        )
        async with get_client() as client:
            flow_run_labels = (await client.read_flow_run(flow_run.id)).labels
        return final, flow_run_labels[LABELS_TRACEPARENT_KEY]

    final, parent = await traced()
    seen = server.stats()["traceparents"][final["id"]]
    # The start carries the flow run's own traceparent; the wait's reads hang from it (a span per wait).
    assert seen[parent] == 1 and "" not in seen
    assert {value.split("-")[1] for value in seen} == {parent.split("-")[1]}
