"""`start_attempt`: a retry reconnects to a live or successful run and redoes one that ended unsuccessfully."""

from __future__ import annotations

from typing import Any

import pytest

import runwatch
from runwatch import Policy, RunApi
from runwatch.server import ReferenceServer

pytestmark = pytest.mark.runwatch_server(retry_after=0)

FAILED = {"script": [{"status": "FAILED"}]}
RUNNING = {"script": [{"status": "RUNNING", "for": 60}, {"status": "SUCCEEDED"}]}
SUCCEEDED = {"script": [{"status": "SUCCEEDED"}]}
PARTIAL = {"script": [{"status": "PARTIAL_SUCCESS"}]}


async def attempt(
    server: ReferenceServer, body: dict[str, Any], n: int, **options: Any
) -> runwatch.StartedRun:
    return await runwatch.start_attempt(
        RunApi(server.url), body, idempotency_key="task-1", attempt=n, **options
    )


async def test_the_first_attempt_starts_a_run_under_the_key_itself(runwatch_server: ReferenceServer) -> None:
    first = await attempt(runwatch_server, FAILED, 1)
    again = runwatch_server.create_run(idempotency_key="task-1", **FAILED)  # the key is unchanged
    assert again["id"] == first.id and runwatch_server.stats()["runs_created"] == 1


async def test_a_retry_after_a_failed_run_starts_a_new_one(runwatch_server: ReferenceServer) -> None:
    first = await attempt(runwatch_server, FAILED, 1)
    second = await attempt(runwatch_server, FAILED, 2)
    third = await attempt(runwatch_server, FAILED, 3)
    assert len({first.id, second.id, third.id}) == 3
    assert runwatch_server.create_run(idempotency_key="task-1.g2", **FAILED)["id"] == second.id
    assert runwatch_server.stats()["runs_created"] == 3  # one new run per attempt, no more


@pytest.mark.parametrize("body", [RUNNING, SUCCEEDED], ids=["live", "succeeded"])
async def test_a_retry_reconnects_to_a_live_or_successful_run(
    runwatch_server: ReferenceServer, body: dict[str, Any]
) -> None:
    first = await attempt(runwatch_server, body, 1)
    second = await attempt(runwatch_server, body, 2)
    assert second.id == first.id and second.replayed
    assert runwatch_server.stats()["runs_created"] == 1


async def test_partial_success_follows_the_policy(runwatch_server: ReferenceServer) -> None:
    first = await attempt(runwatch_server, PARTIAL, 1)
    kept = await attempt(runwatch_server, PARTIAL, 2, policy=Policy(partial_success="succeed"))
    redone = await attempt(runwatch_server, PARTIAL, 2)  # "partial" raises: not a success
    assert kept.id == first.id and redone.id != first.id


async def test_an_attempt_below_one_is_refused(runwatch_server: ReferenceServer) -> None:
    with pytest.raises(ValueError, match="attempt must be 1 or more"):
        await attempt(runwatch_server, FAILED, 0)
