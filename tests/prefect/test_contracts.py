"""Prefect's own contracts (issue 16): what a task retry does with the remote run; a timeout, a cancellation
or a failure of the flow run stops our polling. (A malformed resume input: test_watcher.py.)"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect_harness import FAST

import runwatch
from prefect_runwatch import RemoteRunJob, RunStatusApi, start_run_and_wait, wait_for_run
from runwatch.server import ReferenceServer

LONG = [{"status": "RUNNING", "for": 20}, {"status": "SUCCEEDED"}]


def statuses(server: ReferenceServer) -> dict[str, str]:
    """Every run the server holds -> its status now."""
    return {run_id: str(server.get_run(run_id)["status"]) for run_id in server.stats()["runs"]}


# Item 7: retries and the remote run.


async def test_a_task_retry_after_a_failed_remote_run_starts_a_new_one(
    api: RunStatusApi, server: ReferenceServer
) -> None:
    body = {"script": [{"status": "RUNNING", "for": 0.2}, {"status": "FAILED"}]}
    retried = start_run_and_wait.with_options(retries=1, retry_delay_seconds=0)

    @flow
    async def pipeline() -> dict[str, Any]:
        return await retried(api, body, FAST)

    with pytest.raises(runwatch.RunFailed):
        await pipeline()
    assert list(statuses(server).values()) == ["FAILED", "FAILED"]  # one remote run per attempt


async def test_a_task_retry_after_losing_a_live_run_finds_it_again(
    api: RunStatusApi, server: ReferenceServer
) -> None:
    body = {"script": [{"status": "RUNNING", "for": 4.5}, {"status": "SUCCEEDED"}]}
    # The first attempt times out while the run goes on; the retry carries on with that run.
    retried = start_run_and_wait.with_options(retries=1, retry_delay_seconds=0, timeout_seconds=3)

    @flow
    async def pipeline() -> dict[str, Any]:
        return await retried(api, body, FAST)

    final = await pipeline()
    assert final["status"] == "SUCCEEDED"
    assert statuses(server) == {final["id"]: "SUCCEEDED"}  # one remote run in all


async def test_a_job_retried_after_a_partial_success_it_accepts_takes_that_run_again(
    api: RunStatusApi, server: ReferenceServer
) -> None:
    """Under partial_success="succeed" the first attempt's run ended well: the retry (the task failed after
    it) finds that run again instead of starting another."""
    runs: list[str] = []

    @task(retries=1, retry_delay_seconds=0, cache_policy=NO_CACHE)
    async def step() -> str:
        body = {"script": [{"status": "PARTIAL_SUCCESS"}]}
        run = await RemoteRunJob(api=api, body=body, partial_success="succeed", **FAST).trigger()
        runs.append(run.run_id)
        if len(runs) == 1:
            raise RuntimeError("a later step of the task failed")
        return run.run_id

    @flow
    async def pipeline() -> str:
        return await step()

    assert await pipeline() == runs[0] == runs[1]
    assert server.stats()["runs_created"] == 1


# Item 8: a task or flow timeout, or the flow run stopping, stops our polling.


def polls_stop(server: ReferenceServer, run_id: str) -> tuple[int, int]:
    """(status reads when the flow returned, reads 2 s later): equal once our polling has stopped."""
    at_return = server.stats()["runs"][run_id]["GET"]
    time.sleep(2)
    return at_return, server.stats()["runs"][run_id]["GET"]


def test_a_flow_timeout_stops_a_jobs_wait_in_a_submitted_task(
    api: RunStatusApi, server: ReferenceServer, caplog: pytest.LogCaptureFixture
) -> None:
    @task(cache_policy=NO_CACHE)
    async def waited() -> None:
        run = await RemoteRunJob(api=api, body={"script": LONG}, **FAST).trigger()
        await run.wait_for_completion()

    @flow(timeout_seconds=2)
    def pipeline() -> None:
        waited.submit().result()

    with caplog.at_level(logging.INFO):
        state = pipeline(return_state=True)
    assert state.name == "TimedOut"
    (run_id,) = server.stats()["runs"]
    at_return, later = polls_stop(server, run_id)
    assert at_return == later and server.get_run(run_id)["status"] == "RUNNING"  # we stopped; it goes on
    said = f"the flow run stopped: no longer watching remote run {run_id}, which goes on"
    assert said in caplog.messages


def test_a_sync_flow_timeout_stops_a_submitted_wait(
    api: RunStatusApi, server: ReferenceServer, caplog: pytest.LogCaptureFixture
) -> None:
    run = server.create_run(script=LONG)
    started = runwatch.StartedRun(
        runwatch.RunStatus.from_dict(run), server.run_url(run["id"])
    )  # as we start one

    @flow(timeout_seconds=2)
    def pipeline() -> dict[str, Any]:
        return wait_for_run.submit(started, api, FAST).result()

    begun = time.monotonic()
    with caplog.at_level(logging.INFO):
        state = pipeline(return_state=True)
    assert state.name == "TimedOut"
    assert (
        f"the flow run stopped: no longer watching remote run {run['id']}, which goes on" in caplog.messages
    )
    assert time.monotonic() - begun < 15  # not when the 20 s remote run ends (a bound, not a speed)
    at_return, later = polls_stop(server, run["id"])
    assert at_return == later and at_return <= 30  # about 2 s of polls at 0.1-0.3 s, then none
    assert server.get_run(run["id"])["status"] == "RUNNING"  # the remote run goes on


def test_a_sync_flow_that_fails_stops_a_submitted_wait(api: RunStatusApi, server: ReferenceServer) -> None:
    # The same signal as a cancellation: the flow run stops while a submitted wait polls.
    run = server.create_run(script=LONG)

    @flow
    def pipeline() -> None:
        wait_for_run.submit(run["id"], api, FAST)
        time.sleep(1)
        raise RuntimeError("something else failed")

    state = pipeline(return_state=True)
    assert state.is_failed()
    at_return, later = polls_stop(server, run["id"])
    assert at_return == later and at_return <= 30
    assert server.get_run(run["id"])["status"] == "RUNNING"


@pytest.mark.parametrize("submitted", [False, True])
async def test_an_async_flow_timeout_stops_the_wait(
    api: RunStatusApi, server: ReferenceServer, submitted: bool
) -> None:
    run = server.create_run(script=LONG)

    @flow(timeout_seconds=2)
    async def pipeline() -> dict[str, Any]:
        if submitted:
            return await asyncio.to_thread(wait_for_run.submit(run["id"], api, FAST).result)
        return await wait_for_run(run["id"], api, FAST)

    begun = time.monotonic()
    state = await pipeline(return_state=True)
    assert state.name == "TimedOut"
    assert time.monotonic() - begun < 15
    at_return, later = polls_stop(server, run["id"])
    assert at_return == later and at_return <= 30
    assert server.get_run(run["id"])["status"] == "RUNNING"


async def test_a_task_timeout_stops_the_wait(api: RunStatusApi, server: ReferenceServer) -> None:
    run = server.create_run(script=LONG)

    @flow
    async def pipeline() -> dict[str, Any]:
        return await wait_for_run.with_options(timeout_seconds=2)(run["id"], api, FAST)

    state = await pipeline(return_state=True)
    assert state.is_failed()
    at_return, later = polls_stop(server, run["id"])
    assert at_return == later and at_return <= 30
    assert server.get_run(run["id"])["status"] == "RUNNING"


def status_soon(server: ReferenceServer, run_id: str, wanted: str) -> str:
    """The run's status once it is `wanted`, or the last one seen after 10 s (a cancel is asynchronous)."""
    status = ""
    for _ in range(50):
        status = str(server.get_run(run_id)["status"])
        if status == wanted:
            break
        time.sleep(0.2)
    return status


def test_cancel_on_stop_cancels_the_remote_run_when_the_flow_times_out(
    api: RunStatusApi, server: ReferenceServer
) -> None:
    run = server.create_run(script=LONG)

    @flow(timeout_seconds=2)
    def pipeline() -> dict[str, Any]:  # given by URL: the id cancelled is the one its status carries
        return wait_for_run.submit(server.run_url(run["id"]), api, FAST, cancel_on_stop=True).result()

    assert pipeline(return_state=True).name == "TimedOut"
    assert status_soon(server, run["id"], "CANCELLED") == "CANCELLED"


async def test_cancel_on_stop_before_any_status_was_read(
    api: RunStatusApi, server: ReferenceServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A stop while the first read is still out: a run given by id is cancelled by that id; one given by URL
    has no id we know, so no cancel is tried."""
    slow_first_read = {"slow": {"first": 1, "seconds": 5}}
    by_id, by_url = (server.create_run(script=LONG, faults=slow_first_read) for _ in range(2))

    @flow
    async def pipeline() -> list[str]:
        timed = wait_for_run.with_options(timeout_seconds=1)
        given = (by_id["id"], server.run_url(by_url["id"]))
        return [(await timed(run, api, FAST, cancel_on_stop=True, return_state=True)).name for run in given]

    with caplog.at_level(logging.INFO):
        assert await pipeline() == ["TimedOut", "TimedOut"]
    assert status_soon(server, by_id["id"], "CANCELLED") == "CANCELLED"
    assert server.get_run(by_url["id"])["status"] == "RUNNING"
    assert [m for m in caplog.messages if "cancel" in m] == [
        f"asked the remote to cancel run {by_id['id']} (cancel_on_stop)"
    ]


async def test_cancel_on_stop_at_a_task_timeout_and_at_our_deadline(
    api: RunStatusApi, server: ReferenceServer
) -> None:
    by_task, by_us = (server.create_run(script=LONG) for _ in range(2))

    @flow
    async def pipeline() -> None:
        timed = wait_for_run.with_options(timeout_seconds=2)
        state = await timed(by_task["id"], api, FAST, cancel_on_stop=True, return_state=True)
        assert state.name == "TimedOut"
        with pytest.raises(runwatch.WaitTimeout):
            await wait_for_run(by_us["id"], api, FAST, timeout=1, cancel_on_stop=True)

    await pipeline()
    assert status_soon(server, by_task["id"], "CANCELLED") == "CANCELLED"
    assert status_soon(server, by_us["id"], "CANCELLED") == "CANCELLED"
