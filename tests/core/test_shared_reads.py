"""Shared and batched reads (docs/shared-reads.md), against the reference server over 127.0.0.1.

Counts come from the server's own stats. Intervals are short and fixed (no jitter) so a read count is
known within a read or two, whatever the machine's load.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from runwatch import (
    ConfigurationError,
    Hooks,
    Policy,
    RunApi,
    RunFailed,
    RunLost,
    StatusUnavailable,
    WaitTimeout,
    load_profile,
    wait_for_run,
)
from runwatch.server import ReferenceServer

FAST = Policy(interval=0.1, max_interval=0.1, jitter=False)


def _gets(server: ReferenceServer, run_id: str) -> int:
    return int(server.stats()["runs"][run_id]["GET"])


def _active_only_profile() -> dict[str, Any]:
    """The standard profile with its batch read limited to runs that have not ended."""
    profile = load_profile("standard").to_dict()
    profile["list_runs"] = {
        "url": "{base_url}/runs?ids={run_ids}&active=true",
        "page_limit": 100,
        "runs": "runs",
        "active_only": True,
    }
    return profile


async def test_two_hundred_waits_on_one_run_cost_the_requests_of_one(
    runwatch_server: ReferenceServer,
) -> None:
    script = [{"status": "RUNNING", "for": 1.5}, {"status": "SUCCEEDED"}]
    alone = runwatch_server.create_run(script=script)["id"]
    shared = runwatch_server.create_run(script=script)["id"]
    own, api = RunApi(runwatch_server.url, reads="own"), RunApi(runwatch_server.url)
    # A pace whose half (what a joiner takes from a fresh reading) outlasts 200 waits' start on a busy loop.
    pace = Policy(interval=0.25, max_interval=0.25, jitter=False)
    results = await asyncio.gather(
        wait_for_run(own, alone, policy=pace),
        *(wait_for_run(api, shared, policy=pace) for _ in range(200)),
    )
    assert {status.status.value for status in results} == {"SUCCEEDED"}
    single, together = _gets(runwatch_server, alone), _gets(runwatch_server, shared)
    assert single >= 4  # about 1.5 s at 0.25 s: the comparison below means something
    assert together <= single + 2, (single, together)
    # One ETag for all: after the first answer, an unchanged run costs the server a 304.
    assert runwatch_server.stats()["runs"][shared]["304"] >= together - 3


async def test_waits_that_share_a_read_keep_their_own_rules(runwatch_server: ReferenceServer) -> None:
    script = [{"status": "RUNNING", "for": 1.0}, {"status": "PARTIAL_SUCCESS"}]
    run = runwatch_server.create_run(script=script)["id"]
    api = RunApi(runwatch_server.url)
    seen: dict[str, list[str]] = {"patient": [], "strict": []}

    def hooks(name: str) -> Hooks:
        return Hooks(on_change=lambda status: seen[name].append(status.status.value))

    outcomes = await asyncio.gather(
        wait_for_run(api, run, policy=FAST + Policy(timeout=0.3)),
        wait_for_run(api, run, policy=FAST + Policy(heartbeat_timeout=0.4)),  # updated_at stands still
        wait_for_run(api, run, policy=FAST + Policy(partial_success="succeed"), hooks=hooks("patient")),
        wait_for_run(api, run, policy=FAST + Policy(partial_success="fail"), hooks=hooks("strict")),
        return_exceptions=True,
    )
    kinds = [type(o).__name__ for o in outcomes]
    assert kinds == ["WaitTimeout", "RunLost", "RunStatus", "RunFailed"]
    assert isinstance(outcomes[0], WaitTimeout) and isinstance(outcomes[1], RunLost)
    assert isinstance(outcomes[3], RunFailed)
    assert seen["patient"] == seen["strict"] == ["RUNNING", "PARTIAL_SUCCESS"]


async def test_the_shared_read_goes_at_the_most_demanding_pace(runwatch_server: ReferenceServer) -> None:
    run = runwatch_server.create_run(script=[{"status": "RUNNING", "for": 0.9}, {"status": "SUCCEEDED"}])[
        "id"
    ]
    api = RunApi(runwatch_server.url)
    slow_sleeps: list[float] = []
    slow = wait_for_run(
        api,
        run,
        policy=Policy(interval=5, max_interval=5, jitter=False),
        hooks=Hooks(before_sleep=slow_sleeps.append),
    )
    final, _ = await asyncio.wait_for(asyncio.gather(slow, wait_for_run(api, run, policy=FAST)), 30)
    # The slow wait took every reading of the fast one's reads (each cut its 5 s pause short), so it saw the
    # end with them; on its own it would have read twice: once, then 5 s later.
    assert final.status.value == "SUCCEEDED"
    assert len(slow_sleeps) >= 4 and set(slow_sleeps) == {5}
    assert 5 <= _gets(runwatch_server, run) <= 14


@pytest.mark.runwatch_server(token="right")
async def test_waits_with_other_credentials_never_share_a_read(runwatch_server: ReferenceServer) -> None:
    run = runwatch_server.create_run(script=[{"status": "RUNNING", "for": 0.3}, {"status": "SUCCEEDED"}])[
        "id"
    ]
    right = RunApi(runwatch_server.url, headers={"Authorization": "Bearer right"})
    wrong = RunApi(runwatch_server.url, headers={"Authorization": "Bearer wrong"})
    outcomes = await asyncio.gather(
        wait_for_run(right, run, policy=FAST), wait_for_run(wrong, run, policy=FAST), return_exceptions=True
    )
    assert [type(o).__name__ for o in outcomes] == ["RunStatus", "AccessDenied"]


async def test_the_read_stops_when_the_last_wait_leaves(runwatch_server: ReferenceServer) -> None:
    runs = [runwatch_server.create_run(script=[{"status": "RUNNING"}])["id"] for _ in range(2)]
    shared, batched = RunApi(runwatch_server.url), RunApi(runwatch_server.url, reads="batched")
    tasks = [asyncio.ensure_future(wait_for_run(shared, runs[0], policy=FAST)) for _ in range(3)]
    tasks += [
        asyncio.ensure_future(wait_for_run(batched, run, policy=FAST)) for run in runs for _ in range(2)
    ]
    for _ in range(200):  # both kinds of read are under way
        stats = runwatch_server.stats()
        if stats["batch"]["requests"] >= 2 and _gets(runwatch_server, runs[0]) >= 2:
            break
        await asyncio.sleep(0.02)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    before = runwatch_server.stats()["requests_total"]
    await asyncio.sleep(0.4)  # four of the waits' intervals
    assert runwatch_server.stats()["requests_total"] == before


async def test_batched_waits_read_many_runs_a_request(runwatch_server: ReferenceServer) -> None:
    runs = [
        runwatch_server.create_run(script=[{"status": "RUNNING", "for": 0.5}, {"status": status}])["id"]
        for status in ["SUCCEEDED"] * 149 + ["FAILED"]
    ]
    api = RunApi(runwatch_server.url, reads="batched")
    outcomes = await asyncio.gather(
        *(wait_for_run(api, run, policy=FAST) for run in runs), return_exceptions=True
    )
    assert [type(o).__name__ for o in outcomes] == ["RunStatus"] * 149 + ["RunFailed"]
    stats = runwatch_server.stats()
    # 150 runs, 100 a page: two requests a tick, about 0.5 s at 0.1 s; no run read on its own.
    assert sum(run["GET"] for run in stats["runs"].values()) == 0
    assert 6 <= stats["batch"]["requests"] <= 2 * 12, stats["batch"]
    assert stats["requests_total"] == stats["batch"]["requests"]


async def test_a_run_that_leaves_an_active_only_list_gets_one_read_for_its_end(
    runwatch_server: ReferenceServer,
) -> None:
    run = runwatch_server.create_run(script=[{"status": "RUNNING", "for": 0.4}, {"status": "FAILED"}])["id"]
    api = RunApi(runwatch_server.url, _active_only_profile(), reads="batched")
    with pytest.raises(RunFailed):
        await wait_for_run(api, run, policy=FAST)
    counters = runwatch_server.stats()["runs"][run]
    assert counters["GET"] == 1 and counters["listed"] >= 3


async def test_a_batched_wait_honours_retry_after(runwatch_server: ReferenceServer) -> None:
    runwatch_server.set_faults(rate_limit={"first": 2, "retry_after": 0.5})
    run = runwatch_server.create_run(script=[{"status": "RUNNING", "for": 0.2}, {"status": "SUCCEEDED"}])[
        "id"
    ]
    sleeps: list[float] = []
    api = RunApi(runwatch_server.url, reads="batched")
    final = await wait_for_run(api, run, policy=FAST, hooks=Hooks(before_sleep=sleeps.append))
    assert final.status.value == "SUCCEEDED"
    assert sleeps[:2] == [0.5, 0.5]  # the server's hint, not the 0.1 s pace
    assert runwatch_server.stats()["batch"]["requests"] >= 3


async def test_a_batched_wait_gives_up_after_its_unavailable_tolerance(
    runwatch_server: ReferenceServer,
) -> None:
    runwatch_server.set_faults(errors_5xx={"after": 1})
    run = runwatch_server.create_run(script=[{"status": "RUNNING"}])["id"]
    api = RunApi(runwatch_server.url, reads="batched")
    with pytest.raises(StatusUnavailable) as caught:
        await wait_for_run(api, run, policy=FAST + Policy(unavailable_after=0.3))
    assert caught.value.status is not None and caught.value.status.status.value == "RUNNING"
    assert _gets(runwatch_server, run) == 0 and runwatch_server.stats()["batch"]["requests"] >= 3


async def test_a_batched_wait_finds_a_zombie_and_spares_a_live_run(runwatch_server: ReferenceServer) -> None:
    zombie = runwatch_server.create_run(
        script=[{"status": "RUNNING", "for": 3}, {"status": "SUCCEEDED"}],
        heartbeat_every=0.1,
        stop_heartbeat_after=0.2,
    )["id"]
    live = runwatch_server.create_run(
        script=[{"status": "RUNNING", "for": 0.8}, {"status": "SUCCEEDED"}], heartbeat_every=0.1
    )["id"]
    api = RunApi(runwatch_server.url, reads="batched")
    policy = FAST + Policy(heartbeat_timeout=0.4)
    outcomes = await asyncio.gather(
        wait_for_run(api, zombie, policy=policy),
        wait_for_run(api, live, policy=policy),
        return_exceptions=True,
    )
    assert [type(o).__name__ for o in outcomes] == ["RunLost", "RunStatus"]
    assert _gets(runwatch_server, zombie) == 0 and runwatch_server.stats()["batch"]["requests"] >= 3


def test_batched_reads_need_a_list_that_names_or_filters_runs() -> None:
    with pytest.raises(ConfigurationError, match=r"reads='batched' needs a \[list_runs\]"):
        RunApi("https://jobs.test", "azure-lro", reads="batched")
    with pytest.raises(ConfigurationError, match="reads must be 'shared', 'batched' or 'own'"):
        RunApi("https://jobs.test", reads="sometimes")  # type: ignore[arg-type]
    api = RunApi("https://jobs.test", reads="batched")
    assert RunApi.from_dict(api.to_dict()).reads == "batched"
    assert "reads" not in RunApi("https://jobs.test").to_dict()  # the default travels as before
    assert api.batch_request(["a b", "c"]) == ("GET", "https://jobs.test/runs?ids=a%20b,c", None)


def test_run_ids_in_a_list_body_become_a_json_list() -> None:
    profile = load_profile(
        _active_only_profile()
        | {
            "list_runs": {
                "url": "{base_url}/q",
                "method": "POST",
                "runs": "@",
                "body": {"id": {"any_": "{run_ids}"}},
            }
        }
    )
    assert profile.list_runs is not None and profile.list_runs.by_ids
    assert profile.render_body(profile.list_runs.body, run_ids=["1", "2"]) == {"id": {"any_": ["1", "2"]}}  # type: ignore[arg-type]
    assert profile.render_body({"n": "{run_ids:int}"}, run_ids=["1", "2"]) == {"n": [1, 2]}  # type: ignore[arg-type]


def test_waits_that_share_a_draw_pause_alike() -> None:
    policy = Policy(interval=2, max_interval=8)  # after 2 quiet reads: between 1 s (the floor) and 8 s
    assert [policy.delay(2, draw) for draw in (0.0, 0.5, 0.999)] == [1.0, 4.5, 1 + 0.999 * 7]
    assert Policy(interval=2, jitter=False).delay(2, 0.3) == 8  # no jitter: the draw does not matter


async def test_a_list_the_api_refuses_is_a_configuration_error(runwatch_server: ReferenceServer) -> None:
    run = runwatch_server.create_run(script=[{"status": "RUNNING"}])["id"]
    profile = _active_only_profile()
    profile["list_runs"]["url"] = "{base_url}/no-such-list?ids={run_ids}"
    api = RunApi(runwatch_server.url, profile, reads="batched")
    with pytest.raises(ConfigurationError) as caught:
        await wait_for_run(api, run, policy=FAST)
    assert str(caught.value) == (
        f"the batch read GET {runwatch_server.url}/no-such-list of 1 runs was answered HTTP 404: give this API "
        "reads='shared' (each run read on its own), or a profile whose [list_runs] this API serves"
    )
