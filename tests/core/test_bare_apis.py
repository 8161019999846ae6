"""The waiter against APIs poorer than the reference server's default: no ETag, no 304, no `updated_at`.

The server's modes (`no_etag`, `no_304`, `omit`; docs/reference-server.md) make it answer as such APIs do;
the waiter must see the same changes, find the same zombies and never report a run it cannot judge as lost.
"""

from __future__ import annotations

from typing import Any

import pytest

from runwatch import Policy, RunApi, RunLost, State, WaitTimeout, wait_for_run, watch_run
from runwatch.server import ReferenceServer

FAST = Policy(interval=0.05, max_interval=0.1, timeout=30)
LIFECYCLE = [
    {"status": "QUEUED", "for": 0.15},
    {"status": "RUNNING", "for": 0.3},
    {"status": "SUCCEEDED", "output_ref": "s3://out/1"},
]
BARE: dict[str, dict[str, Any]] = {
    "no ETag": {"no_etag": True},
    "no 304": {"no_304": True},
    "no time of its own": {"omit": ["updated_at", "version"]},
    "none of them": {"no_etag": True, "omit": ["updated_at", "version"]},
}


@pytest.mark.parametrize("faults", BARE.values(), ids=BARE.keys())
async def test_the_same_changes_are_seen_without_conditional_reads(
    runwatch_server: ReferenceServer, faults: dict[str, Any]
) -> None:
    run = runwatch_server.create_run(script=LIFECYCLE, faults=faults)
    api = RunApi(runwatch_server.url)
    seen = [(s.status, s.output_ref) async for s in watch_run(api, run["id"], policy=FAST)]
    assert seen == [(State.QUEUED, None), (State.RUNNING, None), (State.SUCCEEDED, "s3://out/1")]
    counts = runwatch_server.stats()["runs"][run["id"]]
    conditional = not (faults.get("no_etag") or faults.get("no_304"))
    assert counts["GET"] >= 4
    assert (counts["304"] > 0) is conditional  # without: every read was a full 200, and that was fine


async def test_the_default_server_does_answer_304_to_the_same_waits(runwatch_server: ReferenceServer) -> None:
    """The control of the test above: without the modes, the same wait is answered with 304s."""
    run = runwatch_server.create_run(script=LIFECYCLE)
    seen = [s.status async for s in watch_run(RunApi(runwatch_server.url), run["id"], policy=FAST)]
    assert seen == [State.QUEUED, State.RUNNING, State.SUCCEEDED]
    assert runwatch_server.stats()["runs"][run["id"]]["304"] > 0


@pytest.mark.parametrize("faults", BARE.values(), ids=BARE.keys())
async def test_a_zombie_is_found_from_its_last_new_heartbeat(
    runwatch_server: ReferenceServer, faults: dict[str, Any]
) -> None:
    """Every read answers 200 with the same heartbeat once it stops: staleness counts from the last new one.
    The deadline (10 s) is far above the limit (0.4 s) and far below 100 times it: a limit read a hundred
    times too loosely, or reset by every read, ends in WaitTimeout instead."""
    run = runwatch_server.create_run(
        script=[{"status": "RUNNING", "for": 60}, {"status": "SUCCEEDED"}],
        heartbeat_every=0.05,
        stop_heartbeat_after=0.2,
        faults=faults,
    )
    policy = FAST.replace(heartbeat_timeout=0.4, timeout=10)
    with pytest.raises(RunLost) as info:
        await wait_for_run(RunApi(runwatch_server.url), run["id"], policy=policy)
    assert info.value.status is not None and info.value.status.status is State.RUNNING
    assert info.value.status.heartbeat_at is not None


async def test_a_run_that_reports_no_liveness_is_never_called_lost(runwatch_server: ReferenceServer) -> None:
    """No heartbeat and no `updated_at`: the heartbeat rule cannot judge the run, so it does not apply."""
    run = runwatch_server.create_run(
        script=[{"status": "RUNNING", "for": 0.8}, {"status": "SUCCEEDED"}],
        faults={"no_etag": True, "omit": ["updated_at", "heartbeat_at", "version"]},
    )
    final = await wait_for_run(
        RunApi(runwatch_server.url), run["id"], policy=FAST.replace(heartbeat_timeout=0.2)
    )
    assert final.status is State.SUCCEEDED


async def test_updated_at_stands_in_for_a_missing_heartbeat(runwatch_server: ReferenceServer) -> None:
    """Without a heartbeat field, a RUNNING run whose `updated_at` stands still past the limit is lost."""
    run = runwatch_server.create_run(
        script=[{"status": "RUNNING", "for": 60}, {"status": "SUCCEEDED"}],
        faults={"no_etag": True, "omit": ["heartbeat_at", "version"]},
    )
    with pytest.raises(RunLost):
        await wait_for_run(
            RunApi(runwatch_server.url), run["id"], policy=FAST.replace(heartbeat_timeout=0.3, timeout=10)
        )


async def test_our_deadline_still_ends_a_wait_on_a_bare_api(runwatch_server: ReferenceServer) -> None:
    run = runwatch_server.create_run(
        script=[{"status": "RUNNING", "for": 60}, {"status": "SUCCEEDED"}], faults=BARE["none of them"]
    )
    with pytest.raises(WaitTimeout) as info:
        await wait_for_run(RunApi(runwatch_server.url), run["id"], policy=FAST.replace(timeout=0.3))
    assert info.value.status is not None and info.value.status.status is State.RUNNING
