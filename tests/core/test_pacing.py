"""Pacing, backoff reset, heartbeat staleness and the origin-wide pause, to exact bounds.

Each test here fails on one deliberate bug in the decision code (docs/testing.md lists them): a pause shorter
than `interval / 2`, a backoff that jumps to the cap or never resets, staleness counted from every read,
a 429 that slows only the wait that got it.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runwatch import MockTransport, Policy, Request, Response, RunApi, RunLost, State, wait_for_run, watch_run
from runwatch.testing import FakeClock

BASE = "https://jobs.test"
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
DRAWS = 400


def api_for(answer: Callable[[Request, FakeClock], Response]) -> tuple[RunApi, FakeClock]:
    clock = FakeClock()
    return RunApi(BASE, transport=MockTransport(lambda request: answer(request, clock)), clock=clock), clock


@settings(max_examples=40, deadline=None)
@given(
    interval=st.floats(0.1, 30),
    spread=st.floats(1, 50),
    backoff=st.floats(1, 4),
    quiet=st.integers(0, 80),
)
def test_jittered_delays_fill_the_whole_band_and_never_leave_it(
    interval: float, spread: float, backoff: float, quiet: int
) -> None:
    """Many draws from one unseeded source per example: the bounds hold for every one, and the draws spread
    over the band [max(interval/2 capped), ceiling] as full jitter should (a single value would prove neither)."""
    policy = Policy(interval=interval, max_interval=interval * spread, backoff=backoff)
    ceiling = min(policy.max_interval, interval * backoff ** min(quiet, 64))
    floor = min(interval / 2, ceiling)
    draws = [policy.delay(quiet) for _ in range(DRAWS)]
    assert all(floor <= d <= ceiling for d in draws)
    width = ceiling - floor
    if width < 1e-9:
        return
    # Uniform over the band: each quarter holds draws, and the mean sits near the middle (7 standard errors).
    quarters = [
        sum(floor + q * width / 4 <= d <= floor + (q + 1) * width / 4 for d in draws) for q in range(4)
    ]
    assert all(n > 0 for n in quarters), quarters
    assert abs(statistics.fmean(draws) - (floor + width / 2)) < 0.1 * width


@pytest.mark.parametrize("quiet", range(8))
def test_without_jitter_the_delay_is_the_ceiling_exactly(quiet: int) -> None:
    policy = Policy(interval=3, max_interval=100, backoff=2, jitter=False)
    assert policy.delay(quiet) == min(100, 3 * 2**quiet)
    assert Policy(interval=3, max_interval=100, backoff=1, jitter=False).delay(quiet) == 3


def test_a_huge_quiet_count_stays_at_the_cap() -> None:
    assert Policy(interval=1, max_interval=60, jitter=False).delay(10_000) == 60
    assert all(30 <= d <= 60 for d in (Policy(interval=60, max_interval=60).delay(10_000) for _ in range(50)))


async def test_jittered_waits_never_poll_faster_than_half_the_interval_nor_jump_to_the_cap() -> None:
    """Twenty quiet waits, one random source: every pause n is within [interval/2, interval * 2**n]."""
    pauses: list[list[float]] = []
    for _ in range(20):
        api, clock = api_for(lambda _r, c: Response.of_json({"id": "r", "status": "RUNNING"}))
        with pytest.raises(Exception, match="gave up waiting"):
            await wait_for_run(api, "r", policy=Policy(interval=2, max_interval=64, timeout=200))
        pauses.append(clock.slept)
    for slept in pauses:
        for n, pause in enumerate(slept[:-1]):  # the last one is cut short by the deadline
            assert 1 <= pause <= min(64, 2 * 2**n), (n, slept)
    firsts = [slept[0] for slept in pauses]
    assert min(firsts) < 1.5 and max(firsts) <= 2  # the first pause is jittered within [1, 2], not the cap


async def test_a_change_of_state_resets_the_backoff_to_the_interval() -> None:
    def answer(request: Request, clock: FakeClock) -> Response:
        t = clock.monotonic()
        state = "RUNNING" if t < 30 else ("CANCELLING" if t < 100 else "CANCELLED")
        return Response.of_json({"id": "r", "status": state})

    api, clock = api_for(answer)
    seen = [
        s.status async for s in watch_run(api, "r", policy=Policy(interval=1, max_interval=8, jitter=False))
    ]
    assert seen == [State.RUNNING, State.CANCELLING, State.CANCELLED]
    # reads at 0, 1, 3, 7, 15, 23, 31 (CANCELLING: reset), 32, 34, 38, 46, ...
    assert clock.slept[:10] == [1, 2, 4, 8, 8, 8, 1, 2, 4, 8]


def beating_until(stop: float, end: float = 10_000) -> Callable[[Request, FakeClock], Response]:
    """RUNNING with a heartbeat that moves on every read until `stop` seconds, then stands still (no ETag)."""

    def answer(request: Request, clock: FakeClock) -> Response:
        t = clock.monotonic()
        beat = T0 + timedelta(seconds=min(t, stop))
        state = "SUCCEEDED" if t >= end else "RUNNING"
        return Response.of_json({"id": "r", "status": state, "heartbeat_at": beat.isoformat()})

    return answer


async def test_staleness_counts_from_the_last_new_heartbeat_not_from_every_read() -> None:
    api, clock = api_for(beating_until(20))
    policy = Policy(interval=1, max_interval=2, jitter=False, heartbeat_timeout=10, timeout=1000)
    with pytest.raises(RunLost) as info:
        await wait_for_run(api, "r", policy=policy)
    # Reads at 0, 1, 3, 5, ..., 19, 21: the beat of t=20 is first seen at 21, so the run is lost at 31 exactly,
    # though every read in between answered.
    assert clock.monotonic() == pytest.approx(31)
    assert "has not moved for 10s (limit 10s)" in str(info.value)
    assert info.value.status is not None and info.value.status.status is State.RUNNING


async def test_a_beat_that_keeps_moving_is_never_lost() -> None:
    api, clock = api_for(beating_until(10_000, end=500))
    policy = Policy(interval=1, max_interval=30, jitter=False, heartbeat_timeout=31)
    assert (await wait_for_run(api, "r", policy=policy)).status is State.SUCCEEDED
    assert 500 <= clock.monotonic() <= 530


async def test_a_beat_reaching_its_limit_exactly_is_lost_then() -> None:
    # A beat that stops at once: first seen at 0, lost at 8 exactly, though the backoff would sleep 16 there.
    api, clock = api_for(beating_until(0))
    with pytest.raises(RunLost):
        await wait_for_run(
            api, "r", policy=Policy(interval=1, max_interval=16, jitter=False, heartbeat_timeout=8)
        )
    assert clock.slept == [1, 2, 4, 1]


async def test_one_429_on_one_wait_pauses_every_wait_on_the_origin() -> None:
    """Ten waits on one origin; exactly one request of one of them gets `429 Retry-After: 1`. No wait sends
    anything until that pause is over. (Real time, for real concurrency: only lower bounds are asserted.)"""
    sent: list[tuple[str, float]] = []
    limited: list[float] = []
    begun = time.monotonic()

    def answer(request: Request) -> Response:
        now = time.monotonic() - begun
        run = request.url.rpartition("/")[2]
        if run == "r3" and not limited and now > 0.2:
            limited.append(now)
            return Response.of_json({"message": "slow down"}, 429, {"Retry-After": "1"})
        sent.append((run, now))
        return Response.of_json({"id": run, "status": "SUCCEEDED" if now > 1.8 else "RUNNING"})

    api = RunApi(BASE, transport=MockTransport(answer))
    policy = Policy(interval=0.05, max_interval=0.1, timeout=60)
    finals = await asyncio.gather(*(wait_for_run(api, f"r{n}", policy=policy) for n in range(10)))
    assert [f.status for f in finals] == [State.SUCCEEDED] * 10
    [at] = limited
    during = [(run, t) for run, t in sent if at < t < at + 1]
    assert during == []  # nobody polled while the origin was paused
    after = {run for run, t in sent if t >= at + 1}
    assert after == {f"r{n}" for n in range(10)}  # and every wait went on afterwards


def test_the_backoff_exponent_stops_at_64_so_huge_counts_cannot_overflow() -> None:
    policy = Policy(interval=1, max_interval=1e300, backoff=2, jitter=False)
    assert policy.delay(64) == policy.delay(10**9) == 2.0**64
    assert policy.delay(63) == 2.0**63


def test_a_policy_dumps_only_what_was_set_and_replace_keeps_defaults_out() -> None:
    assert Policy(interval=1, timeout=30).to_dict() == {"interval": 1.0, "timeout": 30.0}
    assert Policy().to_dict() == {}
    later = Policy().replace(timeout=10)  # interval stays a default: it must not win in a `+`
    assert (Policy(interval=3) + later).interval == 3
    assert (Policy(interval=3) + later).timeout == 10


async def test_a_one_shot_read_retries_after_the_hint_else_with_jittered_backoff() -> None:
    answers = iter(
        [
            Response.of_json({"message": "busy"}, 503, {"Retry-After": "7"}),
            Response.of_json({"message": "oops"}, 500),
            Response.of_json({"id": "r", "status": "RUNNING"}),
        ]
    )
    api, clock = api_for(lambda _r, _c: next(answers))
    status = await api.get_status("r")
    assert status.status is State.RUNNING
    assert clock.slept[0] == 7  # the server's hint, not our backoff
    assert len(clock.slept) == 2 and 0 <= clock.slept[1] <= 2  # then full jitter: [0, 1 * 2**1]
