"""RemoteRunJob and RemoteRun: Prefect's JobBlock/JobRun interface over the core waiter."""

from __future__ import annotations

import pytest
from prefect import flow
from prefect_harness import FAST

import runwatch
from prefect_runwatch import RemoteRunJob, RunStatusApi
from runwatch.server import ReferenceServer

RUNNING = {"status": "RUNNING", "for": 0.3}


async def test_trigger_wait_fetch(api: RunStatusApi) -> None:
    job = RemoteRunJob(
        api=api, body={"script": [RUNNING, {"status": "SUCCEEDED", "output_ref": "s3://x"}]}, **FAST
    )

    @flow
    async def pipeline() -> dict[str, object]:
        run = await job.trigger()
        await run.wait_for_completion()
        return await run.fetch_result()

    result = await pipeline()
    assert (result["status"], result["output_ref"]) == ("SUCCEEDED", "s3://x")


async def test_failed_run_raises_from_fetch_result(api: RunStatusApi) -> None:
    job = RemoteRunJob(
        api=api, body={"script": [RUNNING, {"status": "FAILED", "errors": [{"message": "oom"}]}]}, **FAST
    )
    run = await job.trigger()
    await run.wait_for_completion()  # the wait itself went fine: the run ended
    assert run.status.status is runwatch.State.FAILED
    with pytest.raises(runwatch.RunFailed, match="oom"):
        await run.fetch_result()


async def test_fetch_before_the_end_says_so(api: RunStatusApi) -> None:
    run = await RemoteRunJob(api=api, body={"script": [{"status": "RUNNING"}]}).trigger()
    with pytest.raises(RuntimeError, match="wait_for_completion"):
        await run.fetch_result()


async def test_our_deadline_raises_from_the_wait(api: RunStatusApi) -> None:
    run = await RemoteRunJob(api=api, body={"script": [{"status": "RUNNING"}]}, timeout=0.5, **FAST).trigger()
    with pytest.raises(runwatch.WaitTimeout):
        await run.wait_for_completion()


async def test_fetch_result_judges_the_end_by_the_jobs_own_policy(api: RunStatusApi) -> None:
    body = {"script": [RUNNING, {"status": "PARTIAL_SUCCESS", "errors": [{"message": "3 of 40 skipped"}]}]}
    accepted = await RemoteRunJob(api=api, body=body, partial_success="succeed", **FAST).trigger()
    await accepted.wait_for_completion()
    assert (await accepted.fetch_result())["status"] == "PARTIAL_SUCCESS"
    refused = await RemoteRunJob(api=api, body=body, partial_success="fail", **FAST).trigger()
    await refused.wait_for_completion()
    with pytest.raises(runwatch.RunFailed, match="only partly succeeded: 3 of 40 skipped"):
        await refused.fetch_result()


def test_the_jobs_policy_is_its_fields_over_the_apis_request_timeout() -> None:
    api = RunStatusApi(base_url="http://127.0.0.1:9", request_timeout=7.0)
    job = RemoteRunJob(
        api=api,
        interval=0.5,
        max_interval=4.0,
        timeout=90.0,
        heartbeat_timeout=20.0,
        unavailable_after=30.0,
        long_poll=10.0,
        partial_success="succeed",
    )
    policy = job.policy()
    chosen = (
        policy.interval,
        policy.max_interval,
        policy.timeout,
        policy.heartbeat_timeout,
        policy.unavailable_after,
        policy.long_poll,
        policy.partial_success,
        policy.request_timeout,
    )
    assert chosen == (0.5, 4.0, 90.0, 20.0, 30.0, 10.0, "succeed", 7.0)


async def test_a_given_idempotency_key_is_the_one_sent(api: RunStatusApi, server: ReferenceServer) -> None:
    """The same key finds the same run again; the same body without it gets its own derived key, a new run."""
    body = {"script": [{"status": "RUNNING"}]}
    first = await RemoteRunJob(api=api, body=body, idempotency_key="nightly-7").trigger()
    again = await RemoteRunJob(api=api, body=body, idempotency_key="nightly-7").trigger()
    derived = await RemoteRunJob(api=api, body=body).trigger()
    assert again.run_id == first.run_id and again.started.replayed
    assert derived.run_id != first.run_id and not derived.started.replayed
    assert server.stats()["runs_created"] == 2
