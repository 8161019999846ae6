"""One origin's pool (`runwatch._http`) on a fake clock, to the second: Retry-After as delta-seconds and as an
HTTP date (RFC 9110 §10.2.3), RateLimit fields, the pause that every request to that origin (and only to
that origin) waits out, deadlines, redirects and connection slots."""

from __future__ import annotations

import asyncio
import inspect
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime, timezone
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from runwatch import RedisBudget, Request, Response, TransientError
from runwatch._http import MAX_HINT, MAX_REDIRECTS, Origin, _ratelimit, lease, retry_after
from runwatch._profile import RateLimitSpec
from runwatch._transport import Channel, Transport
from runwatch.testing import FakeClock

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the Redis server the suites share
from redis_server import RedisServer

# Each test takes milliseconds on the fake clock: a far bound that stops a wait which would spin for ever.
pytestmark = pytest.mark.timeout(30)

BASE = "https://jobs.test"
URL = f"{BASE}/runs/r"
Answer = Callable[[Request], "Response | Awaitable[Response]"]


def answer(status: int = 200, **headers: str) -> Response:
    """An empty answer; `Retry_After="3"` becomes the header `Retry-After: 3`."""
    named = {name.replace("_", "-"): value for name, value in headers.items()}
    return Response(status, CIMultiDictProxy(CIMultiDict(named)))


class Recorder(Transport):
    """Answers with `reply(request)` and records what the pool asks of the transport."""

    def __init__(self, reply: Answer, clock: FakeClock | None = None) -> None:
        self.reply, self.clock = reply, clock
        self.opened: list[tuple[str, bool | str, int]] = []
        self.closed = 0
        self.sent: list[tuple[str, str, float]] = []  # method, url, timeout
        self.sent_at: list[float] = []  # the clock's monotonic time of each request
        self.bodies: list[tuple[Any, bytes | None]] = []  # json, data
        self.in_flight = self.most_in_flight = 0

    def open(self, origin: str, verify: bool | str, max_connections: int) -> Channel:
        self.opened.append((origin, verify, max_connections))
        return _Channel(self)


class _Channel(Channel):
    def __init__(self, transport: Recorder) -> None:
        self.transport = transport

    async def send(self, request: Request, *, timeout: float, max_body: int) -> Response:
        t = self.transport
        t.sent.append((request.method, request.url, timeout))
        t.sent_at.append(t.clock.monotonic() if t.clock else 0.0)
        t.bodies.append((request.json, request.data))
        t.in_flight += 1
        t.most_in_flight = max(t.most_in_flight, t.in_flight)
        try:
            reply = t.reply(request)
            return await reply if inspect.isawaitable(reply) else reply
        finally:
            t.in_flight -= 1

    async def aclose(self) -> None:
        self.transport.closed += 1


def pool_for(reply: Answer, max_connections: int = 100) -> tuple[Origin, Recorder, FakeClock]:
    clock = FakeClock()
    transport = Recorder(reply, clock)
    return Origin(BASE, transport.open(BASE, True, max_connections), clock, max_connections), transport, clock


async def get(
    pool: Origin,
    url: str = URL,
    *,
    deadline: float | None = None,
    rate_limit: RateLimitSpec | None = None,
    timeout: float = 30.0,
) -> Response:
    spec = rate_limit or RateLimitSpec()
    return await pool.request("GET", url, headers={}, timeout=timeout, deadline=deadline, rate_limit=spec)


async def rate_limited(pool: Origin, **options: object) -> TransientError:
    with pytest.raises(TransientError) as info:
        await get(pool, **options)  # type: ignore[arg-type]
    return info.value


# ------------------------------------------------------------------------------------------------ Retry-After


async def test_a_429_pauses_the_origin_for_its_retry_after_in_seconds() -> None:
    replies = iter([answer(429, Retry_After="30"), answer(200)])
    pool, transport, clock = pool_for(lambda _r: next(replies))
    error = await rate_limited(pool)
    assert str(error) == f"GET {URL}: HTTP 429 (rate limited)"
    assert error.retry_after == 30
    assert pool.paused_for() == 30
    assert (await get(pool)).status == 200
    assert transport.sent_at == [0, 30] and clock.slept == [30]


async def test_an_http_date_is_measured_from_the_clock_of_the_pool() -> None:
    clock = FakeClock()  # its UNIX time is not the system's: a date read against time.time() is far off
    date = format_datetime(datetime.fromtimestamp(clock.time() + 45, timezone.utc), usegmt=True)
    pool, _, clock = pool_for(lambda _r: answer(429, Retry_After=date))
    error = await rate_limited(pool)
    assert error.retry_after == 45 and pool.paused_for() == 45


def test_retry_after_as_a_date_or_delta_seconds_from_a_given_now() -> None:
    now = datetime(2015, 10, 21, 7, 26, 30, tzinfo=timezone.utc).timestamp()
    assert retry_after(CIMultiDict({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}), now) == 90
    assert retry_after(CIMultiDict({"Retry-After": "Wed, 21 Oct 2015 07:26:00 GMT"}), now) == 0
    assert retry_after(CIMultiDict({"Retry-After": "120"}), now) == 120  # delta-seconds ignore `now`
    assert retry_after(CIMultiDict({"Retry-After": "0"})) == 0
    assert retry_after(CIMultiDict({"Retry-After": "-5"})) == 0


def test_the_millisecond_spellings_come_first_and_an_unreadable_one_falls_back() -> None:
    assert retry_after(CIMultiDict({"Retry-After-Ms": "250", "Retry-After": "9"})) == 0.25
    assert retry_after(CIMultiDict({"Retry-After-Ms": "soon", "Retry-After": "9"})) == 9
    assert retry_after(CIMultiDict({"Retry-After-Ms": "soon", "x-ms-retry-after-ms": "4000"})) == 4
    assert retry_after(CIMultiDict({"Retry-After-Ms": "soon"})) is None
    assert retry_after(CIMultiDict({"Retry-After-Ms": "9000000"})) == MAX_HINT


async def test_the_hint_wins_over_the_reset_and_the_reset_serves_without_one() -> None:
    both = {"Retry_After": "5", "RateLimit": '"default";r=0;t=12'}
    pool, _, _ = pool_for(lambda _r: answer(429, **both))
    assert (await rate_limited(pool)).retry_after == 5 and pool.paused_for() == 5
    clock = FakeClock()
    reset = f"{clock.time() + 40:.0f}"  # a UNIX time: measured from the pool's clock
    pool, _, _ = pool_for(lambda _r: answer(429, X_RateLimit_Remaining="0", X_RateLimit_Reset=reset))
    assert (await rate_limited(pool)).retry_after == 40 and pool.paused_for() == 40


async def test_a_429_without_any_hint_raises_without_pausing_the_origin() -> None:
    pool, _, _ = pool_for(lambda _r: answer(429))
    error = await rate_limited(pool)
    assert error.retry_after is None and pool.paused_for() == 0


GITHUB = RateLimitSpec(statuses=(429, 403))


@pytest.mark.parametrize(
    ("headers", "pause"),
    [
        ({"Retry_After": "9"}, 9),
        ({"X_RateLimit_Remaining": "0", "X_RateLimit_Reset": "1800000021"}, 21),
        ({"X_RateLimit_Remaining": "0"}, None),  # limited, but no word on how long
    ],
)
async def test_a_profile_status_is_a_rate_limit_only_with_a_hint_or_nothing_left(
    headers: dict[str, str], pause: float | None
) -> None:
    pool, _, _ = pool_for(lambda _r: answer(403, **headers))
    error = await rate_limited(pool, rate_limit=GITHUB)
    assert str(error) == f"GET {URL}: HTTP 403 (rate limited)"
    assert error.retry_after == pause and pool.paused_for() == (pause or 0)


@pytest.mark.parametrize(
    ("spec", "headers"),
    [
        (GITHUB, {"X_RateLimit_Remaining": "1"}),  # requests left: a plain 403
        (GITHUB, {}),
        (RateLimitSpec(), {"Retry_After": "9"}),  # 403 not a rate-limit status of this API
    ],
)
async def test_other_answers_of_a_profile_status_are_returned_as_they_are(
    spec: RateLimitSpec, headers: dict[str, str]
) -> None:
    pool, _, _ = pool_for(lambda _r: answer(403, **headers))
    assert (await get(pool, rate_limit=spec)).status == 403
    assert pool.paused_for() == 0


async def test_a_503_hint_pauses_the_origin_other_hints_only_the_request() -> None:
    pool, _, _ = pool_for(lambda _r: answer(503, Retry_After="7"))
    error = await rate_limited(pool)
    assert str(error) == f"GET {URL}: HTTP 503" and error.retry_after == 7 and pool.paused_for() == 7
    pool, _, _ = pool_for(lambda _r: answer(500, Retry_After="7"))
    error = await rate_limited(pool)
    assert str(error) == f"GET {URL}: HTTP 500" and error.retry_after == 7 and pool.paused_for() == 0
    pool, _, _ = pool_for(lambda _r: answer(503))
    assert (await rate_limited(pool)).retry_after is None and pool.paused_for() == 0
    pool, _, _ = pool_for(lambda _r: answer(200, Retry_After="7"))
    assert (await get(pool)).status == 200 and pool.paused_for() == 0


@pytest.mark.parametrize(
    ("headers", "pause"),
    [
        ({"RateLimit": "r=0;t=20"}, 20),
        ({"RateLimit": "r=1;t=20"}, 0),
        ({"RateLimit": "r=0"}, 0),
        ({"RateLimit_Remaining": "0", "RateLimit_Reset": "15"}, 15),
    ],
)
async def test_a_good_answer_with_nothing_left_pauses_until_the_reset(
    headers: dict[str, str], pause: float
) -> None:
    pool, _, _ = pool_for(lambda _r: answer(200, **headers))
    assert (await get(pool)).status == 200
    assert pool.paused_for() == pause


@pytest.mark.parametrize(
    ("status", "raises"),
    [(404, False), (407, False), (408, True), (409, False), (499, False), (500, True), (502, True)],
)
async def test_a_timeout_and_server_errors_are_worth_retrying(status: int, raises: bool) -> None:
    pool, _, _ = pool_for(lambda _r: answer(status, Retry_After="3"))
    if raises:
        error = await rate_limited(pool)
        assert str(error) == f"GET {URL}: HTTP {status}" and error.retry_after == 3
    else:
        assert (await get(pool)).status == status


# ------------------------------------------------------------------------------------------------ the pause


def test_a_pause_is_never_shortened_and_never_longer_than_the_cap() -> None:
    pool, _, clock = pool_for(lambda _r: answer())
    assert pool.paused_for() == 0
    pool.pause(30)
    pool.pause(10)
    assert pool.paused_for() == 30
    pool.pause(50)
    assert pool.paused_for() == 50
    clock.advance(20)
    assert pool.paused_for() == 30
    clock.advance(45)
    assert pool.paused_for() == 0  # over, never negative
    pool.pause(1e9)
    assert pool.paused_for() == MAX_HINT


async def test_every_request_on_the_origin_waits_out_its_pause_and_no_other_origin_does() -> None:
    clock = FakeClock()
    limited: list[str] = []

    def reply(request: Request) -> Response:
        if request.url.startswith(BASE) and not limited:
            limited.append(request.url)
            return answer(429, Retry_After="30")
        return answer(200)

    transport = Recorder(reply, clock)
    async with (
        lease(URL, transport=transport, clock=clock) as first,
        lease(f"{BASE}/runs/other", transport=transport, clock=clock) as second,
        lease("https://elsewhere.test/runs/r", transport=transport, clock=clock) as other,
    ):
        assert first is second and other is not first
        with pytest.raises(TransientError):
            await get(first)
        assert (await get(other, "https://elsewhere.test/runs/r")).status == 200
        assert clock.monotonic() == 0  # the other origin was not paused
        assert (await get(second, f"{BASE}/runs/other")).status == 200
        assert clock.monotonic() == 30  # another wait on the paused origin waited the pause out
    assert [url for _, url, _ in transport.sent] == [
        URL,
        "https://elsewhere.test/runs/r",
        f"{BASE}/runs/other",
    ]


async def test_a_pause_under_a_second_is_waited_out_too() -> None:
    pool, transport, clock = pool_for(lambda _r: answer())
    pool.pause(0.5)
    await get(pool)
    assert clock.slept == [0.5] and transport.sent_at == [0.5]


@pytest.mark.parametrize("left", [10, 4])
async def test_a_pause_as_long_as_the_time_left_ends_the_request_at_its_deadline(left: float) -> None:
    pool, transport, clock = pool_for(lambda _r: answer())
    pool.pause(10)
    with pytest.raises(TransientError) as info:
        await get(pool, deadline=clock.time() + left)
    assert str(info.value) == f"GET {URL}: the server asked for a pause of 10s more"
    assert info.value.retry_after == 10
    assert clock.slept == [left] and transport.sent == []


async def test_a_pause_shorter_than_the_time_left_is_waited_out_then_the_request_goes() -> None:
    pool, transport, clock = pool_for(lambda _r: answer())
    pool.pause(10)
    await get(pool, deadline=clock.time() + 10.5)
    assert clock.slept == [10] and transport.sent_at == [10]
    assert transport.sent[0][2] == pytest.approx(0.5)  # the exchange gets the rest of the time


async def test_a_pause_past_a_deadline_already_gone_sleeps_no_more() -> None:
    pool, transport, clock = pool_for(lambda _r: answer())
    pool.pause(10)
    with pytest.raises(TransientError) as info:
        await get(pool, deadline=clock.time() - 5)
    assert info.value.retry_after == 10 and clock.slept == [0] and transport.sent == []


@pytest.mark.parametrize(("left", "timeout"), [(None, 30), (100, 30), (2.5, 2.5), (0, 0.001), (-3, 0.001)])
async def test_each_exchange_is_bounded_by_the_deadline(left: float | None, timeout: float) -> None:
    pool, transport, clock = pool_for(lambda _r: answer())
    await get(pool, deadline=None if left is None else clock.time() + left, timeout=30)
    assert transport.sent == [("GET", URL, timeout)]


# ------------------------------------------------------------------------------------------------ redirects


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_a_get_follows_a_same_origin_redirect_relative_or_absolute(status: int) -> None:
    hops = iter([answer(status, Location="/runs/moved"), answer(status, Location=f"{BASE}/runs/last")])
    pool, transport, _ = pool_for(lambda r: next(hops, answer(200)))
    assert (await get(pool)).status == 200
    assert [url for _, url, _ in transport.sent] == [URL, f"{BASE}/runs/moved", f"{BASE}/runs/last"]


@pytest.mark.parametrize(
    ("status", "headers"),
    [
        (300, {"Location": "/runs/moved"}),
        (304, {"Location": "/runs/moved"}),
        (201, {"Location": "/runs/moved"}),
        (302, {}),  # no Location: nothing to follow
        (302, {"Location": "https://elsewhere.test/runs/r"}),  # another origin: the caller judges
    ],
)
async def test_other_answers_are_returned_as_they_are(status: int, headers: dict[str, str]) -> None:
    pool, transport, _ = pool_for(lambda _r: answer(status, **headers))
    assert (await get(pool)).status == status
    assert len(transport.sent) == 1


@pytest.mark.parametrize(
    ("status", "followed"), [(301, False), (302, False), (303, False), (307, True), (308, True)]
)
async def test_only_307_and_308_replay_a_post(status: int, followed: bool) -> None:
    hops = iter([answer(status, Location="/runs/moved")])
    pool, transport, _ = pool_for(lambda _r: next(hops, answer(201)))
    response = await pool.request("POST", URL, headers={}, json={"a": 1}, timeout=30)
    assert response.status == (201 if followed else status)
    assert transport.sent[1:] == ([("POST", f"{BASE}/runs/moved", 30)] if followed else [])
    assert transport.bodies == [({"a": 1}, None)] * len(transport.sent)  # the same body each time


async def test_a_form_body_is_sent_as_it_is() -> None:
    pool, transport, _ = pool_for(lambda _r: answer(201))
    await pool.request("POST", URL, headers={}, data=b"grant_type=x", timeout=30)
    assert transport.bodies == [(None, b"grant_type=x")]


async def test_redirects_are_followed_up_to_the_limit_and_no_further() -> None:
    hops = iter([answer(302, Location=f"/runs/{n}") for n in range(MAX_REDIRECTS)])
    pool, transport, _ = pool_for(lambda _r: next(hops, answer(200)))
    assert (await get(pool)).status == 200
    assert len(transport.sent) == MAX_REDIRECTS + 1 == 6
    pool, transport, _ = pool_for(lambda _r: answer(302, Location="/runs/loop"))
    with pytest.raises(TransientError) as info:
        await get(pool)
    assert str(info.value) == f"GET {BASE}/runs/loop: more than 5 redirects"
    assert len(transport.sent) == 6


# ------------------------------------------------------------------------------------------------ slots


async def test_requests_beyond_the_connection_bound_queue_for_a_slot() -> None:
    gate = asyncio.Event()

    async def held(_r: Request) -> Response:
        await gate.wait()
        return answer()

    pool, transport, _ = pool_for(held, max_connections=2)
    waits = asyncio.gather(*(get(pool) for _ in range(5)))
    for _ in range(10):
        await asyncio.sleep(0)
    assert transport.in_flight == 2
    gate.set()
    assert [r.status for r in await waits] == [200] * 5
    assert transport.most_in_flight == 2


async def test_a_failed_request_gives_its_slot_back() -> None:
    replies = iter([answer(500), answer(429), answer(200)])
    pool, _, clock = pool_for(lambda _r: next(replies), max_connections=1)
    for _ in range(2):
        with pytest.raises(TransientError):
            await get(pool, deadline=clock.time() + 1)
    assert (await get(pool, deadline=clock.time() + 1)).status == 200


async def test_no_free_slot_before_the_deadline_is_a_transient_error() -> None:
    gate = asyncio.Event()

    async def held(_r: Request) -> Response:
        await gate.wait()
        return answer()

    pool, transport, clock = pool_for(held, max_connections=1)
    first = asyncio.ensure_future(get(pool))
    await asyncio.sleep(0)
    asyncio.get_running_loop().call_later(0.05, gate.set)  # the slot frees soon, but no time is left now
    with pytest.raises(TransientError) as info:
        await get(pool, deadline=clock.time())
    assert str(info.value) == f"GET {URL}: no free connection in time"
    assert len(transport.sent) == 1
    second = await get(pool)  # no deadline: it waits for the slot
    assert (await first).status == second.status == 200
    assert len(transport.sent) == 2


async def test_a_pause_that_begins_while_a_request_queues_is_waited_out_without_its_slot() -> None:
    gate = asyncio.Event()
    replies = iter([answer(429, Retry_After="30")])

    async def reply(_r: Request) -> Response:
        await gate.wait()
        return next(replies, answer(200))

    pool, transport, _ = pool_for(reply, max_connections=1)
    first = asyncio.ensure_future(get(pool))
    second = asyncio.ensure_future(get(pool))  # queued behind the first for the one slot
    await asyncio.sleep(0)
    gate.set()
    with pytest.raises(TransientError):
        await first
    assert (await second).status == 200
    assert transport.sent_at == [0, 30] and transport.most_in_flight == 1


async def test_after_a_pause_the_connection_bound_still_holds() -> None:
    gate = asyncio.Event()

    async def held(_r: Request) -> Response:
        await gate.wait()
        return answer()

    pool, transport, _ = pool_for(held, max_connections=1)
    pool.pause(5)
    waits = asyncio.gather(get(pool), get(pool))
    for _ in range(10):
        await asyncio.sleep(0)
    gate.set()
    assert [r.status for r in await waits] == [200, 200]
    assert transport.most_in_flight == 1


# ------------------------------------------------------------------------------------------------ leases


async def test_waits_on_one_origin_share_one_pool_closed_when_the_last_leaves() -> None:
    clock = FakeClock()
    transport = Recorder(lambda _r: answer(), clock)
    async with lease(URL, transport=transport, clock=clock) as outer:
        async with lease(f"{BASE}/other", transport=transport, clock=clock) as inner:
            assert inner is outer
        assert transport.closed == 0
        async with lease(URL, transport=transport, clock=clock) as again:
            assert again is outer  # the pool outlived the inner lease
    assert transport.closed == 1
    async with lease(URL, transport=transport, clock=clock) as fresh:
        assert fresh is not outer
    assert transport.opened == [(BASE, True, 100), (BASE, True, 100)]
    assert transport.closed == 2


async def test_pools_differ_by_origin_verification_clock_and_transport() -> None:
    clock, other_clock = FakeClock(), FakeClock()
    transport = Recorder(lambda _r: answer(), clock)
    other_transport = Recorder(lambda _r: answer(), clock)
    async with lease(URL, transport=transport, clock=clock) as pool:
        async with lease("https://elsewhere.test/", transport=transport, clock=clock) as a:
            async with lease(URL, verify="ca.pem", max_connections=3, transport=transport, clock=clock) as b:
                async with lease(URL, transport=transport, clock=other_clock) as c:
                    async with lease(URL, transport=other_transport, clock=clock) as d:
                        assert len({id(p) for p in (pool, a, b, c, d)}) == 5
    assert transport.opened[1:3] == [("https://elsewhere.test", True, 100), (BASE, "ca.pem", 3)]


async def test_the_default_bound_is_a_hundred_connections() -> None:
    gate = asyncio.Event()

    async def held(_r: Request) -> Response:
        await gate.wait()
        return answer()

    clock = FakeClock()
    transport = Recorder(held, clock)
    async with lease(URL, transport=transport, clock=clock) as pool:
        waits = asyncio.gather(*(get(pool) for _ in range(101)))
        for _ in range(10):
            await asyncio.sleep(0)
        assert transport.in_flight == 100
        gate.set()
        await waits
    assert transport.most_in_flight == 100


# ------------------------------------------------------------------------------------------------ RateLimit


@pytest.mark.parametrize(
    ("field", "parsed"),
    [
        ("r=0;t=12", (0, 12.0)),
        ('"burst";r=7', (7, None)),
        ('"burst";t=3.5', (None, 3.5)),
        ('"day";r=2.0;t=1800000030', (2, 30.0)),  # a reset past 1e9 is a UNIX time, even here
        ("q=100", (None, None)),
    ],
)
def test_the_ietf_ratelimit_field(field: str, parsed: tuple[int | None, float | None]) -> None:
    assert _ratelimit(CIMultiDict({"RateLimit": field}), RateLimitSpec(), 1_800_000_000) == parsed


def test_the_draft_fields_one_without_the_other_and_before_the_profiles() -> None:
    spec = RateLimitSpec()
    assert _ratelimit(CIMultiDict({"RateLimit-Reset": "3"}), spec) == (None, 3.0)
    assert _ratelimit(CIMultiDict({"RateLimit-Remaining": "5"}), spec) == (5, None)
    assert _ratelimit(CIMultiDict({"RateLimit-Remaining": "inf", "RateLimit-Reset": "x"}), spec) == (
        None,
        None,
    )
    both = CIMultiDict({"RateLimit-Remaining": "4", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "9"})
    assert _ratelimit(both, spec) == (4, None)
    only_profile = CIMultiDict({"X-RateLimit-Reset": "1800000009"})
    assert _ratelimit(only_profile, spec, 1_800_000_000) == (None, 9.0)


def test_a_profile_reset_read_as_a_unix_time_or_as_seconds() -> None:
    epoch = RateLimitSpec(remaining_header="x-left", reset_header="x-at", reset="epoch_s")
    delta = RateLimitSpec(remaining_header="x-left", reset_header="x-at", reset="delta_s")
    small = CIMultiDict({"X-Left": "0", "X-At": "130"})
    assert _ratelimit(small, epoch, 100) == (0, 30.0)  # a UNIX time, even a small one
    assert _ratelimit(small, delta, 100) == (0, 130.0)


@pytest.mark.parametrize(("reset", "seconds"), [("1000000000", MAX_HINT), ("1000000000.5", 10.5)])
def test_a_reset_is_a_unix_time_only_past_1e9(reset: str, seconds: float) -> None:
    headers = CIMultiDict({"RateLimit-Remaining": "0", "RateLimit-Reset": reset})
    assert _ratelimit(headers, RateLimitSpec(), 999_999_990) == (0, seconds)


# ------------------------------------------------------------------------------------------------ budgets
# A request budget shares an origin's pause between processes through Redis: here two pools with clocks of
# their own stand for two processes. The store measures a pause in real time, so those bounds are loose.


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with RedisServer() as server:
        yield server.url


def budget_at(redis_url: str, rate: float = 1000, burst: int = 100) -> RedisBudget:
    return RedisBudget(redis_url, rate=rate, burst=burst, key_prefix=f"hints:{time.monotonic_ns()}")


async def test_a_pause_one_process_learns_holds_every_process_on_that_origin(redis_url: str) -> None:
    budget = budget_at(redis_url)
    pool, _, clock = pool_for(lambda _r: answer(429, Retry_After="300"))
    clock.advance(1000)  # the pause is measured from its own clock's now
    with pytest.raises(TransientError) as limited:
        await pool.request("GET", URL, headers={}, timeout=30, budget=budget)
    assert str(limited.value) == f"GET {URL}: HTTP 429 (rate limited)"
    assert pool.paused_for() == 300
    other, transport, other_clock = pool_for(lambda _r: answer())
    with pytest.raises(TransientError) as info:
        await other.request(
            "GET", URL, headers={}, timeout=30, budget=budget, deadline=other_clock.time() + 400
        )
    assert transport.sent == []  # held by the other process's pause
    assert str(info.value).startswith(f"GET {URL}: the server asked for a pause of ")
    assert 250 < other_clock.slept[0] <= 300
    elsewhere = Origin(
        "https://elsewhere.test", transport.open("https://elsewhere.test", True, 9), other_clock, 9
    )
    await elsewhere.request("GET", "https://elsewhere.test/r", headers={}, timeout=30, budget=budget)
    assert len(transport.sent) == 1  # another origin is not paused
    await budget.aclose()


async def test_a_shared_pause_under_a_second_is_waited_out_too(redis_url: str) -> None:
    """Another process shared a 0.5 s pause: no request goes inside it. The store keeps real time and this
    pool a fake clock, so the pool either saw the pause (and slept) or came after its end in real time."""
    budget = budget_at(redis_url)
    pool, transport, clock = pool_for(lambda _r: answer())
    shared_at = time.time()
    await budget.pause(pool.origin, 0.5)
    await pool.request("GET", URL, headers={}, timeout=30, budget=budget)
    assert len(transport.sent) == 1
    assert clock.slept or time.time() - shared_at >= 0.5
    assert all(0 < pause <= 0.5 for pause in clock.slept)
    await budget.aclose()


def store_calls(redis_url: str) -> int:
    """Scripts the store has run so far (each token taken, each pause shared, is one)."""
    from redis import Redis

    with Redis.from_url(redis_url) as client:
        stats = client.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("evalsha", "eval"))


async def test_an_answer_without_hints_puts_no_pause_in_the_store(redis_url: str) -> None:
    budget = budget_at(redis_url)
    pool, _, clock = pool_for(lambda _r: answer(200))
    clock.advance(1000)
    await pool.request("GET", URL, headers={}, timeout=30, budget=budget)  # loads the scripts
    before = store_calls(redis_url)
    await pool.request("GET", URL, headers={}, timeout=30, budget=budget)
    assert store_calls(redis_url) == before + 1  # its token, and nothing else
    other, transport, other_clock = pool_for(lambda _r: answer())
    await other.request("GET", URL, headers={}, timeout=30, budget=budget, deadline=other_clock.time() + 5)
    assert other_clock.slept == [] and len(transport.sent) == 1
    await budget.aclose()


async def test_every_request_takes_a_token_and_none_is_waited_for_past_the_deadline(redis_url: str) -> None:
    budget = budget_at(redis_url, rate=0.01, burst=2)  # two at once, then one per 100 s
    hops = iter([answer(302, Location="/runs/moved")])
    pool, transport, clock = pool_for(lambda _r: next(hops, answer()))
    await pool.request("GET", URL, headers={}, timeout=30, budget=budget)  # and its redirect: two tokens
    with pytest.raises(TransientError) as info:
        await pool.request("GET", URL, headers={}, timeout=30, budget=budget, deadline=clock.time() + 5)
    assert str(info.value) == f"{BASE}: no request budget left before the deadline"
    assert len(transport.sent) == 2
    await budget.aclose()


async def test_the_last_pool_to_leave_closes_the_budgets_connections(redis_url: str) -> None:
    from redis import Redis

    budget = budget_at(redis_url)
    clock = FakeClock()
    transport = Recorder(lambda _r: answer(), clock)
    with Redis.from_url(redis_url) as client:
        before = len(client.client_list())
        async with lease(URL, transport=transport, clock=clock) as pool:
            await pool.request("GET", URL, headers={}, timeout=30, budget=budget)
            await pool.request("GET", URL, headers={}, timeout=30, budget=budget)
            assert len(client.client_list()) == before + 1
        assert len(client.client_list()) == before


async def test_a_pause_learnt_past_the_deadline_is_not_sent_to_the_store(redis_url: str) -> None:
    """The store is never asked past a request's deadline (`RedisBudget.pause`): this process keeps it."""
    budget = budget_at(redis_url)
    clock = FakeClock()

    def slow_429(_r: Request) -> Response:
        clock.advance(10)  # the answer comes after the deadline
        return answer(429, Retry_After="300")

    transport = Recorder(slow_429, clock)
    pool = Origin(BASE, transport.open(BASE, True, 9), clock, 9)
    with pytest.raises(TransientError):
        await pool.request("GET", URL, headers={}, timeout=30, budget=budget, deadline=clock.time() + 5)
    assert pool.paused_for() == 300
    other, others, other_clock = pool_for(lambda _r: answer())
    await other.request("GET", URL, headers={}, timeout=30, budget=budget, deadline=other_clock.time() + 400)
    assert other_clock.slept == [] and len(others.sent) == 1
    await budget.aclose()
