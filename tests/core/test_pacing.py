"""Pacing, backoff reset, heartbeat staleness and the origin-wide pause, to exact bounds.

Each test here fails on one deliberate bug in the decision code (docs/testing.md lists them): a pause shorter
than `interval / 2`, a backoff that jumps to the cap or never resets, staleness counted from every read,
a 429 that slows only the wait that got it.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tenacity import RetryCallState, Retrying

from runwatch import (
    BadStatusPayload,
    BearerAuth,
    Hooks,
    MockTransport,
    Policy,
    Request,
    Response,
    RunApi,
    RunLost,
    RunNotFound,
    RunStatus,
    StartedRun,
    State,
    StatusUnavailable,
    TransientError,
    Verdict,
    WaitTimeout,
    wait_for_run,
    watch_run,
)
from runwatch._wait_strategy import wait_server_hint
from runwatch._watch import Ask, Reading, Watch
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


# ---------------------------------------------------------------------------- one wait's rules, asked directly
# `Watch` holds the decisions of one wait apart from any I/O (`_waiter` does the sending and sleeping), so each
# rule is asked here for its exact value on a fake clock: the request it builds, when a limit ends the wait,
# how long the next pause is. The waits above check the same rules end to end.

NOW = FakeClock().time()  # the fake clock's UNIX time at its start


def watch_on(
    policy: Policy,
    run: str | StartedRun = "r",
    *,
    deadline: float | None = None,
    profile: Any = "standard",
    auth: BearerAuth | None = None,
) -> tuple[Watch, FakeClock]:
    clock = FakeClock()
    transport = MockTransport(lambda _request: running_now())  # never called: a Watch sends nothing
    api = RunApi(BASE, profile, auth=auth, transport=transport, clock=clock)
    return Watch(api, run, policy, deadline, clock), clock


def looked(watch: Watch, response: Response | None = None) -> RunStatus | None:
    """One first answer taken, as the wait takes it."""
    status, _ = watch.answered(watch.ask(), response or running_now(), 0.0)
    if status is not None:
        watch.take(status)
    return status


PREFER = {
    "name": "prefer",
    "status_url": "{base_url}/runs/{run_id}",
    "states": {"RUNNING": "RUNNING", "SUCCEEDED": "SUCCEEDED"},
    "long_poll": {"style": "prefer", "max": 30},
}


def test_the_first_look_is_a_plain_read_and_every_later_one_is_held_for_the_policy_hold() -> None:
    watch, _ = watch_on(Policy(long_poll=25, request_timeout=30))
    url, headers = f"{BASE}/runs/r", watch.headers
    assert watch.ask() == Ask(url, headers, 30.0, 0.0)
    looked(watch)
    assert watch.ask() == Ask(f"{url}?wait=25", headers, 55.0, 25.0)  # the request may take the hold too


def test_a_hold_is_capped_by_the_api_and_keeps_a_query_the_url_has() -> None:
    watch, _ = watch_on(Policy(long_poll=90), f"{BASE}/runs/r?view=full")
    looked(watch)
    assert watch.ask() == Ask(f"{BASE}/runs/r?view=full&wait=60", watch.headers, 90.0, 60.0)  # max = 60


def test_a_prefer_style_api_is_asked_to_hold_in_a_header() -> None:
    watch, _ = watch_on(Policy(long_poll=25), profile=PREFER)
    looked(watch, Response.of_json({"id": "r", "status": "RUNNING"}))
    assert watch.ask() == Ask(f"{BASE}/runs/r", {**watch.headers, "Prefer": "wait=25"}, 55.0, 25.0)


def test_a_hold_ends_at_the_deadline_and_under_a_second_is_a_plain_read() -> None:
    watch, clock = watch_on(Policy(long_poll=25), deadline=NOW + 10)
    looked(watch)
    url, headers = f"{BASE}/runs/r", watch.headers
    assert watch.ask() == Ask(f"{url}?wait=10", headers, 40.0, 10.0)
    clock.advance(8.5)
    assert watch.ask() == Ask(f"{url}?wait=1.5", headers, 31.5, 1.5)
    clock.advance(0.5)
    assert watch.ask() == Ask(f"{url}?wait=1", headers, 31.0, 1.0)  # a one-second hold is still asked for
    clock.advance(0.5)
    assert watch.ask() == Ask(url, headers, 30.0, 0.0)


def test_no_hold_without_long_polling_on_both_sides_or_once_pushes_come() -> None:
    for policy, profile in [(Policy(), "standard"), (Policy(long_poll=25), {**PREFER, "long_poll": None})]:
        watch, _ = watch_on(policy, profile=profile)
        looked(watch)
        assert watch.ask() == Ask(f"{BASE}/runs/r", watch.headers, 30.0, 0.0)
        assert not watch.ask_again_at_once(True, Verdict.APPLIED)  # paced as any poll
    watch, _ = watch_on(Policy(long_poll=25))
    looked(watch)
    watch.long_polling = False  # what the wait does once pushes come
    assert watch.ask() == Ask(f"{BASE}/runs/r", watch.headers, 30.0, 0.0)


def test_the_etag_last_seen_is_asked_about_and_dropped_when_an_answer_has_none() -> None:
    watch, _ = watch_on(Policy(long_poll=25))
    url, headers = f"{BASE}/runs/r", watch.headers
    looked(watch, Response.of_json({"id": "r", "status": "RUNNING"}, 200, {"ETag": '"v1"'}))
    conditional = {**headers, "If-None-Match": '"v1"'}
    assert watch.ask() == Ask(f"{url}?wait=25", conditional, 55.0, 25.0)
    assert watch.answered(watch.ask(), Response(304, {"ETag": '"v1"'}, b""), 25.0) == (None, True)
    assert watch.ask().headers == conditional  # a 304 keeps the version it confirmed
    looked(watch, Response.of_json({"id": "r", "status": "RUNNING"}))
    assert watch.ask().headers == headers


def test_credentials_go_with_every_status_request() -> None:
    watch, _ = watch_on(Policy(), auth=BearerAuth("t0ken"))
    assert watch.ask().headers["Authorization"] == "Bearer t0ken"


@pytest.mark.parametrize(
    ("hold", "took", "held"),
    [(25, 12.5, True), (25, 12.49, False), (1, 0.5, True), (1, 0.49, False), (9, 3.5, False), (0, 0, False)],
)
def test_an_answer_was_held_when_it_took_half_the_hold_or_more(hold: float, took: float, held: bool) -> None:
    watch, _ = watch_on(Policy(long_poll=25))
    ask = Ask(watch.url, watch.headers, 30 + hold, float(hold))
    status, was_held = watch.answered(ask, running_now(), took)
    assert status is not None and status.status is State.RUNNING
    assert was_held is held
    assert watch.answered(ask, Response(304, {}, b""), took) == (None, held)


def test_an_answer_without_an_id_is_the_run_that_was_asked_for() -> None:
    nameless = Response.of_json({"status": "RUNNING"})
    started = StartedRun(RunStatus(id="s1", status=State.QUEUED), f"{BASE}/runs/s1", None)
    for run, run_id in [("r", "r"), (started, "s1"), (f"{BASE}/runs/u1", f"{BASE}/runs/u1")]:
        watch, _ = watch_on(Policy(), run)
        status = looked(watch, nameless)
        assert status is not None and (status.id, status.url) == (run_id, watch.url)


async def test_a_run_given_by_its_url_is_read_there_even_when_reads_are_batched() -> None:
    url = f"{BASE}/runs/u1"

    def answer(request: Request, clock: FakeClock) -> Response:
        if request.url != url:  # a list read: the run is there too, so such a wait would end as well
            return Response.of_json({"runs": [{"id": url, "status": "SUCCEEDED"}]})
        return Response.of_json({"id": "u1", "status": "SUCCEEDED" if clock.monotonic() >= 3 else "RUNNING"})

    clock = FakeClock()
    transport = MockTransport(lambda request: answer(request, clock))
    api = RunApi(BASE, transport=transport, clock=clock, reads="batched")
    assert (await wait_for_run(api, url, policy=Policy(interval=1, jitter=False))).status is State.SUCCEEDED
    assert {r.url for r in transport.requests} == {url}  # its id is not known: no list read can name it


def test_a_404_is_tolerated_for_our_own_start_within_its_grace_only() -> None:
    gone = Response.of_json({"message": "no such run"}, 404)
    started = StartedRun(RunStatus(id="r", status=State.QUEUED), f"{BASE}/runs/r", None)
    watch, clock = watch_on(Policy(not_found_grace=2, long_poll=25), started)
    held = Ask(watch.url, watch.headers, 55.0, 25.0)
    assert watch.answered(held, gone, 25.0) == (None, False)  # an unreadable answer was not a hold
    assert isinstance(watch.problem, RunNotFound)
    assert str(watch.problem) == f"{BASE}/runs/r is not readable yet"
    clock.advance(2)
    assert watch.answered(held, gone, 0.0) == (None, False)  # 2 s is still within the grace
    clock.advance(0.5)
    with pytest.raises(RunNotFound):
        watch.answered(held, gone, 0.0)
    watch, _ = watch_on(Policy(not_found_grace=2), "r")
    with pytest.raises(RunNotFound):
        watch.answered(watch.ask(), gone, 0.0)  # a run we did not start has no grace


def test_a_body_that_does_not_parse_is_unreadable_not_held() -> None:
    watch, _ = watch_on(Policy(long_poll=25))
    looked(watch)
    held = Ask(watch.url, watch.headers, 55.0, 25.0)
    assert watch.answered(held, Response(200, {"Content-Type": "application/json"}, b"<html>"), 25.0) == (
        None,
        False,
    )
    assert isinstance(watch.problem, BadStatusPayload)


def test_a_reading_of_any_kind_is_taken_with_its_hint_and_never_as_a_hold() -> None:
    watch, _ = watch_on(Policy())
    ask = watch.ask()
    busy = TransientError("GET: HTTP 503", retry_after=7.0)
    assert watch.took_reading(ask, Reading(error=busy)) == (None, False, 7.0)
    assert watch.problem is busy
    bad = BadStatusPayload("no status")
    assert watch.took_reading(ask, Reading(error=bad)) == (None, False, None)
    assert watch.problem is bad
    listed = RunStatus(id="r", status=State.RUNNING)
    assert watch.took_reading(ask, Reading(listed=listed)) == (listed, False, None)
    assert watch.problem is None and watch.unreadable_since is None
    with pytest.raises(RunNotFound):
        watch.took_reading(ask, Reading(error=RunNotFound("gone")))


def test_a_redelivered_push_is_taken_once() -> None:
    watch, _ = watch_on(Policy())
    assert watch.take(RunStatus(id="r", status=State.RUNNING), "msg-1") is Verdict.APPLIED
    assert watch.take(RunStatus(id="r", status=State.SUCCEEDED), "msg-1") is Verdict.DUPLICATE
    assert watch.last is not None and watch.last.status is State.RUNNING


def test_the_deadline_ends_the_wait_the_instant_it_comes() -> None:
    watch, clock = watch_on(Policy(timeout=30))
    clock.advance(29)
    watch.check_limits()
    clock.advance(1)
    with pytest.raises(WaitTimeout) as info:
        watch.check_limits()
    assert str(info.value) == f"gave up waiting after 30s; {BASE}/runs/r was never read"
    watch, clock = watch_on(Policy(timeout=30), deadline=NOW + 10)  # a deadline given wins over the policy
    clock.advance(10)
    with pytest.raises(WaitTimeout, match="after 10s"):
        watch.check_limits()
    watch, clock = watch_on(Policy())  # no timeout: no deadline
    clock.advance(1e9)
    watch.check_limits()
    assert watch.limit() is None


def test_blindness_ends_the_wait_at_its_tolerance_with_the_reason_the_last_status_and_since_when() -> None:
    watch, clock = watch_on(Policy(unavailable_after=40, first_read_after=5))
    looked(watch)
    clock.advance(1)
    watch.failed(TransientError("GET: HTTP 503"))
    clock.advance(10)
    watch.failed(TransientError("GET: HTTP 502"))  # still blind since the first failure
    assert watch.limit() == NOW + 41
    clock.advance(29.5)
    watch.check_limits()
    clock.advance(0.5)
    with pytest.raises(StatusUnavailable) as info:
        watch.check_limits()
    assert str(info.value) == "status unreadable for 40s (GET: HTTP 502); run r was last RUNNING"
    assert info.value.status is watch.last and watch.last is not None
    assert info.value.since == datetime.fromtimestamp(NOW + 1, timezone.utc)


def test_bodies_that_never_parse_after_a_good_read_end_as_bad_status_payload_with_the_last_status() -> None:
    watch, clock = watch_on(Policy(unavailable_after=40))
    looked(watch)
    watch.answered(watch.ask(), Response(200, {}, b"<html>"), 0.0)
    clock.advance(40)
    with pytest.raises(BadStatusPayload) as info:
        watch.check_limits()
    assert str(info.value).startswith("status unreadable for 40s (")
    assert info.value.status is watch.last and watch.last is not None


def test_a_pause_is_cut_at_the_nearest_limit_and_never_below_zero() -> None:
    watch, clock = watch_on(Policy(timeout=30, heartbeat_timeout=8))
    assert watch.bound(5) == 5  # nothing near, and no beat seen yet
    looked(watch, Response.of_json({"id": "r", "status": "RUNNING", "heartbeat_at": T0.isoformat()}))
    clock.advance(7)
    assert watch.bound(16) == 1  # the beat seen at 0 is stale at 8
    watch, clock = watch_on(Policy(timeout=30))
    clock.advance(29.5)
    assert watch.bound(5) == 0.5
    clock.advance(1)
    assert watch.bound(5) == 0.0


def test_the_next_pause_takes_the_shared_draw_a_longer_hint_and_slows_once_pushes_come() -> None:
    watch, _ = watch_on(Policy(interval=2, max_interval=60))
    looked(watch)
    assert watch.next_delay(None, False, 0.0) == 1.0  # the draw places the pause in [interval / 2, ceiling]
    assert watch.next_delay(None, False, 0.5) == 1.5
    assert watch.next_delay(None, True, 0.0) == 1.0  # right after news, pushes or not
    assert watch.next_delay(7.0, False, 0.0) == 7.0  # the server's hint when longer
    assert watch.next_delay(0.5, False, 0.0) == 1.0
    watch.nothing_new()
    assert watch.next_delay(None, False, 0.5) == 2.5  # quiet once: ceiling 4
    assert watch.next_delay(None, True, 0.0) == 60  # quiet with pushes: polling is the slow safety net
    steady, _ = watch_on(Policy(interval=1, max_interval=100, jitter=False))
    looked(steady)
    for _ in range(3):
        steady.nothing_new()
    assert steady.next_delay(None, False) == 8


def test_long_polling_asks_again_at_once_after_a_hold_or_news_never_after_a_failure() -> None:
    watch, _ = watch_on(Policy(long_poll=25))
    looked(watch)
    assert watch.ask_again_at_once(True, None)
    assert watch.ask_again_at_once(False, Verdict.APPLIED)
    assert watch.ask_again_at_once(False, Verdict.PROGRESSED)
    assert not watch.ask_again_at_once(False, Verdict.UNCHANGED)
    assert not watch.ask_again_at_once(False, None)
    watch.failed(TransientError("GET: HTTP 503"))
    assert not watch.ask_again_at_once(True, Verdict.APPLIED)


async def test_a_run_that_reports_no_liveness_is_paced_as_usual_under_a_heartbeat_limit() -> None:
    def answer(request: Request, clock: FakeClock) -> Response:
        if clock.monotonic() == 0:
            return _failing(request, clock)
        return Response.of_json({"id": "r", "status": "SUCCEEDED" if clock.monotonic() >= 100 else "RUNNING"})

    api, clock = api_for(answer)
    policy = Policy(interval=1, max_interval=16, jitter=False, heartbeat_timeout=5)
    assert (await wait_for_run(api, "r", policy=policy)).status is State.SUCCEEDED
    assert clock.slept[:6] == [2, 1, 2, 4, 8, 16]  # no pause cut to a heartbeat's expiry, no RunLost


async def test_a_cancelling_run_whose_heartbeat_stopped_is_neither_lost_nor_polled_without_pause() -> None:
    reads: list[float] = []

    def answer(request: Request, clock: FakeClock) -> Response:
        t = clock.monotonic()
        reads.append(t)
        # At most 50 reads: a wait that polls without pause ends there, and fails the pacing check below.
        state = "RUNNING" if t < 10 else ("CANCELLING" if t < 100 and len(reads) < 50 else "CANCELLED")
        beat = T0 + timedelta(seconds=min(t, 10))
        return Response.of_json({"id": "r", "status": state, "heartbeat_at": beat.isoformat()})

    api, clock = api_for(answer)
    policy = Policy(interval=1, max_interval=16, jitter=False, heartbeat_timeout=5)
    seen = [s.status async for s in watch_run(api, "r", policy=policy)]
    assert seen == [State.RUNNING, State.CANCELLING, State.CANCELLED]
    # Reads at 0, 1, 3, 7, 12 (cut to the beat's expiry: CANCELLING), 13, 15, 19, 27, 43, 59, 75, 91, 107.
    assert clock.slept == [1, 2, 4, 5, 1, 2, 4, 8, 16, 16, 16, 16, 16]


async def test_each_unreadable_field_is_warned_about_once_whatever_its_bad_values(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def answer(request: Request, clock: FakeClock) -> Response:
        t = clock.monotonic()
        updated = "not a time" if t < 2 else "soon: later"
        state = "SUCCEEDED" if t >= 10 else "RUNNING"
        return Response.of_json({"id": "r", "status": state, "updated_at": updated, "heartbeat_at": "x"})

    api, _ = api_for(answer)
    with caplog.at_level(logging.WARNING, logger="runwatch"):
        await wait_for_run(api, "r", policy=Policy(interval=1, jitter=False))
    assert [m for m in caplog.messages if m.startswith("left out")] == [
        f"left out an unreadable field of {BASE}/runs/r: updated_at: Invalid isoformat string: 'not a time'",
        f"left out an unreadable field of {BASE}/runs/r: heartbeat_at: Invalid isoformat string: 'x'",
    ]


def _retry_state(attempt: int, exc: BaseException) -> RetryCallState:
    state = RetryCallState(Retrying(), None, (), {})
    state.attempt_number = attempt
    state.set_exception((type(exc), exc, None))
    return state


def test_a_retry_waits_the_servers_hint_else_full_jitter_up_to_its_cap() -> None:
    wait = wait_server_hint(0.5, 5.0)
    assert wait(_retry_state(1, TransientError("HTTP 429", retry_after=7.0))) == 7.0
    for exc in (TransientError("HTTP 503"), ValueError("not transient")):
        for attempt, ceiling in [(1, 0.5), (3, 2.0), (10, 5.0)]:  # 0.5 * 2 ** (attempt - 1), capped at 5
            draws = [wait(_retry_state(attempt, exc)) for _ in range(DRAWS)]
            assert all(0 <= d <= ceiling for d in draws)
            assert max(draws) > ceiling / 2  # the whole band is used, not a fixed fraction of it


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


async def test_304s_back_off_exactly_as_unchanged_bodies_do() -> None:
    def answer(request: Request, clock: FakeClock) -> Response:
        if clock.monotonic() >= 100:
            return Response.of_json({"id": "r", "status": "SUCCEEDED"}, 200, {"ETag": '"v2"'})
        if request.headers.get("If-None-Match") == '"v1"':
            return Response(304, {"ETag": '"v1"'}, b"")
        return Response.of_json({"id": "r", "status": "RUNNING"}, 200, {"ETag": '"v1"'})

    api, clock = api_for(answer)
    final = await wait_for_run(api, "r", policy=Policy(interval=1, max_interval=16, jitter=False))
    assert final.status is State.SUCCEEDED
    assert clock.slept[:6] == [1, 2, 4, 8, 16, 16]
    sent = [r.headers.get("If-None-Match") for r in api.transport.requests[:3]]  # type: ignore[attr-defined]
    assert sent == [None, '"v1"', '"v1"']  # the ETag seen is asked about, so the answers are 304s


async def test_an_illegal_move_raises_by_policy_and_is_passed_over_otherwise() -> None:
    from runwatch import IllegalTransition

    def answer(request: Request, clock: FakeClock) -> Response:
        t = clock.monotonic()
        state = "RUNNING" if t < 2 else ("QUEUED" if t < 10 else "SUCCEEDED")
        return Response.of_json({"id": "r", "status": state})

    api, clock = api_for(answer)
    policy = Policy(interval=1, jitter=False, on_illegal="raise")
    with pytest.raises(IllegalTransition) as info:
        await wait_for_run(api, "r", policy=policy)
    assert str(info.value) == "run r: RUNNING -> QUEUED (QUEUED) is not a legal move"
    assert info.value.status is not None and info.value.status.status is State.RUNNING
    assert clock.monotonic() == 3  # reads at 0, 1, 3
    api, clock = api_for(answer)
    assert (
        await wait_for_run(api, "r", policy=policy.replace(on_illegal="ignore"))
    ).status is State.SUCCEEDED


def _failing(request: Request, clock: FakeClock) -> Response:
    return Response.of_json({"message": "down"}, 503)


@pytest.mark.parametrize(
    ("policy", "started", "gives_up_at"),
    [
        (Policy(first_read_after=20, not_found_grace=50), False, 20),  # never read: the first-read tolerance
        (Policy(first_read_after=20, not_found_grace=50), True, 50),  # our own start: the 404 grace if longer
        (Policy(first_read_after=0, not_found_grace=0), False, 0),
        (Policy(first_read_after=400, unavailable_after=300), False, 300),  # never longer than the tolerance
    ],
)
async def test_a_run_never_read_is_given_up_on_at_its_first_read_tolerance(
    policy: Policy, started: bool, gives_up_at: float
) -> None:
    from runwatch import RunStatus, StartedRun, StatusUnavailable

    api, clock = api_for(_failing)
    run: str | StartedRun = "r"
    if started:
        run = StartedRun(RunStatus(id="r", status=State.QUEUED), f"{BASE}/runs/r", None)
    with pytest.raises(StatusUnavailable) as info:
        await wait_for_run(api, run, policy=policy.replace(interval=1, jitter=False))
    assert clock.monotonic() == pytest.approx(gives_up_at)
    assert str(info.value).endswith(f"HTTP 503); {BASE}/runs/r was never read")
    assert info.value.status is None


async def test_a_run_read_once_is_given_up_on_at_the_unavailable_tolerance() -> None:
    from runwatch import StatusUnavailable

    def answer(request: Request, clock: FakeClock) -> Response:
        return _failing(request, clock) if clock.monotonic() > 0 else running_now()

    api, clock = api_for(answer)
    policy = Policy(interval=1, jitter=False, first_read_after=5, unavailable_after=40)
    with pytest.raises(StatusUnavailable) as info:
        await wait_for_run(api, "r", policy=policy)
    assert clock.monotonic() == pytest.approx(41)  # unreadable from the read at 1, for 40 s
    assert str(info.value).startswith("status unreadable for 40s (GET ")
    assert str(info.value).endswith("HTTP 503); run r was last RUNNING")


def running_now() -> Response:
    return Response.of_json({"id": "r", "status": "RUNNING"})


async def test_our_deadline_says_how_long_it_waited_and_what_it_saw() -> None:
    from runwatch import WaitTimeout

    api, _ = api_for(lambda _r, _c: running_now())
    with pytest.raises(WaitTimeout) as info:
        await wait_for_run(api, "r", policy=Policy(interval=1, timeout=30))
    assert str(info.value) == "gave up waiting after 30s; run r was last RUNNING"


async def test_a_pending_run_is_not_paced_by_a_heartbeat_limit() -> None:
    frozen = T0.isoformat()

    def answer(request: Request, clock: FakeClock) -> Response:
        state = "QUEUED" if clock.monotonic() < 100 else "SUCCEEDED"
        return Response.of_json({"id": "r", "status": state, "heartbeat_at": frozen})

    api, clock = api_for(answer)
    policy = Policy(interval=1, max_interval=16, jitter=False, heartbeat_timeout=5)
    assert (await wait_for_run(api, "r", policy=policy)).status is State.SUCCEEDED
    assert clock.slept[:6] == [1, 2, 4, 8, 16, 16]  # no pause cut to the heartbeat's expiry, no RunLost


def _not_found_until(t: float) -> Callable[[Request, FakeClock], Response]:
    def answer(request: Request, clock: FakeClock) -> Response:
        if clock.monotonic() < t:
            return Response.of_json({"message": "no such run"}, 404)
        return Response.of_json({"id": "r", "status": "SUCCEEDED"})

    return answer


async def test_our_own_start_may_answer_404_for_its_grace_and_no_longer() -> None:
    from runwatch import RunNotFound, RunStatus, StartedRun

    started = StartedRun(RunStatus(id="r", status=State.QUEUED), f"{BASE}/runs/r", None)
    policy = Policy(interval=1, jitter=False, not_found_grace=2)
    api, clock = api_for(_not_found_until(3.5))
    assert (await wait_for_run(api, started, policy=policy)).status is State.SUCCEEDED
    assert clock.monotonic() == 6  # 404s at 0 and 2 (2 s is still within the grace), found at 6
    api, clock = api_for(_not_found_until(100))
    with pytest.raises(RunNotFound):
        await wait_for_run(api, started, policy=policy)
    assert clock.monotonic() == 6  # the first 404 after the grace
    api, clock = api_for(_not_found_until(100))
    with pytest.raises(RunNotFound):
        await wait_for_run(api, "r", policy=policy)  # not started by us: no grace at all
    assert clock.monotonic() == 0


@pytest.mark.parametrize(("server_holds", "held"), [(12.5, True), (12.4, False), (0, False)])
async def test_a_request_counts_as_held_when_the_server_kept_it_half_the_hold(
    server_holds: float, held: bool
) -> None:
    async def answer(request: Request, clock: FakeClock) -> Response:
        if "wait=" in request.url:
            await clock.sleep(server_holds)
        state = "SUCCEEDED" if clock.monotonic() >= 60 else "RUNNING"
        return Response.of_json({"id": "r", "status": state})

    clock = FakeClock()
    api = RunApi(BASE, transport=MockTransport(lambda request: answer(request, clock)), clock=clock)
    ours: list[float] = []
    policy = Policy(interval=5, max_interval=5, jitter=False, long_poll=25)
    final = await wait_for_run(api, "r", policy=policy, hooks=Hooks(before_sleep=ours.append))
    assert final.status is State.SUCCEEDED
    # Held: asked again at once, no pause of ours; answered early: paced as a plain poll.
    assert (ours == []) is held
    assert all(pause == 5 for pause in ours)


async def test_unreadable_status_is_logged_once_as_a_warning_then_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    api, _ = api_for(_failing)
    with caplog.at_level(logging.INFO, logger="runwatch"), pytest.raises(Exception, match="unreadable"):
        await wait_for_run(api, "r", policy=Policy(interval=1, jitter=False, first_read_after=3))
    lines = [(r.levelno, r.getMessage()) for r in caplog.records if "unreadable:" in r.getMessage()]
    assert [level for level, _ in lines] == [logging.WARNING, logging.INFO]  # reads at 0 and 2; gave up at 3
    assert lines[0][1] == f"status of {BASE}/runs/r unreadable: GET {BASE}/runs/r: HTTP 503"


async def test_a_body_that_never_parses_ends_as_bad_status_payload() -> None:
    from runwatch import BadStatusPayload

    api, clock = api_for(lambda _r, _c: Response(200, {"Content-Type": "application/json"}, b"<html>"))
    with pytest.raises(BadStatusPayload) as info:
        await wait_for_run(api, "r", policy=Policy(interval=1, jitter=False, first_read_after=10))
    assert clock.monotonic() == pytest.approx(10)
    assert str(info.value).startswith("status unreadable for 10s (")


async def test_an_unreadable_auxiliary_field_is_left_out_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def answer(request: Request, clock: FakeClock) -> Response:
        state = "SUCCEEDED" if clock.monotonic() >= 10 else "RUNNING"
        return Response.of_json({"id": "r", "status": state, "updated_at": "not a time"})

    api, _ = api_for(answer)
    with caplog.at_level(logging.WARNING, logger="runwatch"):
        final = await wait_for_run(api, "r", policy=Policy(interval=1, jitter=False))
    assert final.status is State.SUCCEEDED and final.updated_at is None
    left_out = [
        m for m in caplog.messages if m.startswith(f"left out an unreadable field of {BASE}/runs/r: ")
    ]
    assert len(left_out) == 1 and "updated_at" in left_out[0]
