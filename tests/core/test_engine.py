"""The engine's rules with a fake clock and a mock transport: exact pacing, deadlines, heartbeats, hints and
long polls, in milliseconds. (The same engine meets real servers in test_waiter.py and test_reliability.py.)"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from runwatch import (
    Hooks,
    MockTransport,
    Policy,
    Request,
    Response,
    RunApi,
    RunLost,
    State,
    StatusUnavailable,
    WaitTimeout,
    wait_for_run,
    watch_run,
)
from runwatch.testing import FakeClock

BASE = "https://jobs.test"


def api_for(answer: Callable[[Request, FakeClock], Response], **profile: Any) -> tuple[RunApi, FakeClock]:
    clock = FakeClock()
    transport = MockTransport(lambda request: answer(request, clock))
    spec: Any = "standard"
    if profile:
        spec = {
            "name": "mock",
            "status_url": "{base_url}/runs/{run_id}",
            "states": {"RUNNING": "RUNNING", "SUCCEEDED": "SUCCEEDED", "FAILED": "FAILED"},
            "fields": {"heartbeat_at": "heartbeat_at", "progress": "progress"},
            **profile,
        }
    return RunApi(BASE, spec, transport=transport, clock=clock), clock


def running_until(end: float, **extra: Any) -> Callable[[Request, FakeClock], Response]:
    def answer(request: Request, clock: FakeClock) -> Response:
        state = "SUCCEEDED" if clock.monotonic() >= end else "RUNNING"
        return Response.of_json({"id": "r", "status": state, **extra})

    return answer


async def test_a_quiet_run_is_paced_exactly_as_the_policy_says() -> None:
    api, clock = api_for(running_until(100))
    final = await wait_for_run(api, "r", policy=Policy(interval=1, max_interval=16, backoff=2, jitter=False))
    assert final.status is State.SUCCEEDED
    # RUNNING was news at t=0, so the next read is an interval later; then the pause doubles up to the cap.
    assert clock.slept[:6] == [1, 2, 4, 8, 16, 16]
    assert sum(clock.slept) == pytest.approx(clock.monotonic())
    assert 100 <= clock.monotonic() < 116  # the end is seen within one capped interval


@pytest.mark.parametrize("seed", range(20))
async def test_jittered_pauses_stay_between_half_the_interval_and_the_ceiling(seed: int) -> None:
    import random

    random.seed(seed)
    api, clock = api_for(running_until(300))
    await wait_for_run(api, "r", policy=Policy(interval=2, max_interval=30, backoff=2))
    ceilings = [min(30, 2 * 2**n) for n in range(len(clock.slept))]
    assert all(1 <= s <= c for s, c in zip(clock.slept, ceilings, strict=True)), clock.slept
    assert any(s < c for s, c in zip(clock.slept, ceilings, strict=True))  # jittered, not the ceiling


async def test_only_a_change_of_state_resets_the_pacing() -> None:
    def answer(request: Request, clock: FakeClock) -> Response:
        t = clock.monotonic()
        state = "RUNNING" if t < 50 else ("FAILED" if t >= 80 else "RUNNING")
        progress = {"percent": min(99, int(t))}  # moves on every read: reported, never a reset
        return Response.of_json({"id": "r", "status": state, "progress": progress})

    api, clock = api_for(answer)
    seen = [s async for s in watch_run(api, "r", policy=Policy(interval=1, max_interval=8, jitter=False))]
    assert seen[-1].status is State.FAILED
    assert len(seen) > 3 and all(s.status is State.RUNNING for s in seen[:-1])  # progress was reported
    assert clock.slept[:5] == [1, 2, 4, 8, 8]  # and never reset the pace


async def test_heartbeats_alone_are_not_news() -> None:
    def answer(request: Request, clock: FakeClock) -> Response:
        beat = datetime(2026, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=clock.monotonic())
        state = "SUCCEEDED" if clock.monotonic() >= 40 else "RUNNING"
        return Response.of_json({"id": "r", "status": state, "heartbeat_at": beat.isoformat()})

    api, clock = api_for(answer)
    changes: list[State] = []
    hooks = Hooks(on_change=lambda s: changes.append(s.status))
    await wait_for_run(api, "r", policy=Policy(interval=1, max_interval=8, jitter=False), hooks=hooks)
    assert changes == [State.RUNNING, State.SUCCEEDED]
    assert clock.slept[:4] == [1, 2, 4, 8]


async def test_our_deadline_ends_the_wait_exactly_then() -> None:
    api, clock = api_for(running_until(10_000))
    with pytest.raises(WaitTimeout) as info:
        await wait_for_run(api, "r", policy=Policy(interval=1, max_interval=8, jitter=False, timeout=30))
    assert clock.monotonic() == pytest.approx(30)  # the last pause was cut short at the deadline
    assert info.value.status is not None and info.value.status.status is State.RUNNING


async def test_a_stale_heartbeat_is_found_at_its_limit() -> None:
    frozen = datetime(2026, 1, 1, tzinfo=timezone.utc).isoformat()
    api, clock = api_for(running_until(10_000, heartbeat_at=frozen))
    policy = Policy(interval=1, max_interval=60, jitter=False, heartbeat_timeout=10)
    with pytest.raises(RunLost):
        await wait_for_run(api, "r", policy=policy)
    assert clock.monotonic() == pytest.approx(10)  # read again at the limit, not a minute later


async def test_a_server_hint_longer_than_the_tolerance_ends_in_status_unavailable() -> None:
    def answer(request: Request, clock: FakeClock) -> Response:
        return Response.of_json({"message": "slow down"}, 429, {"Retry-After": "120"})

    api, clock = api_for(answer)
    with pytest.raises(StatusUnavailable):
        await wait_for_run(api, "r", policy=Policy(unavailable_after=50, first_read_after=50))
    assert clock.monotonic() == pytest.approx(50)
    assert len(api.transport.requests) == 1  # type: ignore[attr-defined]  # the hint was honoured


async def test_a_429_pauses_every_wait_on_the_origin_until_its_hint() -> None:
    sent: list[tuple[str, float]] = []

    def answer(request: Request, clock: FakeClock) -> Response:
        sent.append((request.url, clock.monotonic()))
        if request.url.endswith("/a") and len(sent) == 1:
            return Response.of_json({}, 429, {"Retry-After": "30"})
        return Response.of_json({"id": request.url[-1], "status": "SUCCEEDED"})

    api, _ = api_for(answer)
    final = await wait_for_run(api, "a", policy=Policy(interval=1))
    assert final.status is State.SUCCEEDED
    assert [t for _, t in sent] == [0, 30]  # the second read waited out the hint


async def test_a_long_poll_is_held_and_asked_again_at_once() -> None:
    holds: list[str] = []

    async def answer(request: Request, clock: FakeClock) -> Response:
        if "wait=" in request.url:
            holds.append(request.url.rpartition("wait=")[2])
            await clock.sleep(min(25.0, max(0.0, 40 - clock.monotonic())))  # the server holds until news
        state = "SUCCEEDED" if clock.monotonic() >= 40 else "RUNNING"
        return Response.of_json({"id": "r", "status": state})

    clock = FakeClock()
    api = RunApi(BASE, transport=MockTransport(lambda request: answer(request, clock)), clock=clock)
    final = await wait_for_run(api, "r", policy=Policy(interval=5, max_interval=60, long_poll=25))
    assert final.status is State.SUCCEEDED
    assert holds == ["25", "25"]  # no pause of our own between held requests
    assert clock.monotonic() == pytest.approx(40)  # the end seen as it happened
