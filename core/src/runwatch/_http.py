"""The engine's HTTP: one pool per event loop, transport and origin, shared by every wait on that origin.

Above any transport: the origin's pause that server hints put on every wait (Retry-After, RateLimit
fields, a profile's own rate-limit rules), a bound on connections in use, same-origin redirects, deadlines
that no queue or pause outlives. Callers get a `Response` or a `TransientError`. With a request budget shared
across processes (`RedisBudget`), each request takes a token first and a pause is shared through the store.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
import weakref
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

from runwatch._clock import SYSTEM_CLOCK, Clock
from runwatch._profile import RateLimitSpec
from runwatch._transport import AiohttpTransport, Channel, Request, Response, TransientError, Transport
from runwatch._urls import origin_of, redact

if TYPE_CHECKING:
    from runwatch._budget import RedisBudget

__all__ = ["DEFAULT_TRANSPORT", "MAX_BODY", "MAX_HINT", "MAX_REDIRECTS", "Origin", "lease", "retry_after"]

MAX_HINT = 3600.0
"""The longest server hint honoured, in seconds (`Retry-After`, a rate-limit reset): a longer or unbounded one
(`Retry-After: Infinity`, a date in 9999) is read as this. A wait's deadline and its unavailable tolerance
still end it sooner."""

MAX_BODY = 4 * 1024 * 1024
"""The largest response body read by default, in bytes (`RunApi(max_body=...)` sets another)."""

MAX_REDIRECTS = 5
"""Same-origin redirects followed for one request; a redirect to another origin is never followed."""

DEFAULT_TRANSPORT: Transport = AiohttpTransport()

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_DEFAULT_RATE_LIMIT = RateLimitSpec()


class Origin:
    """One origin's pool in one loop, and the pause every wait on it honours (Retry-After, RateLimit)."""

    def __init__(self, origin: str, channel: Channel, clock: Clock, max_connections: int) -> None:
        self.origin, self.channel, self.clock = origin, channel, clock
        self.paused_until = 0.0  # monotonic time before which no request goes out
        self.leases = 0
        # Polls queue here, as one future each, rather than as built requests inside the transport:
        # thousands of queued requests would be promoted to the old GC generation and stall the loop.
        self.slots = asyncio.Semaphore(max_connections)
        self.budgets: set[RedisBudget] = set()  # budgets used here: released when the pool closes

    def pause(self, seconds: float) -> None:
        until = self.clock.monotonic() + min(seconds, MAX_HINT)
        self.paused_until = max(self.paused_until, until)

    def paused_for(self) -> float:
        """Seconds left of the pause a server hint put on this origin (0 when none)."""
        return max(0.0, self.paused_until - self.clock.monotonic())

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        json: Any = None,
        data: bytes | None = None,
        timeout: float,
        deadline: float | None = None,
        rate_limit: RateLimitSpec = _DEFAULT_RATE_LIMIT,
        max_body: int = MAX_BODY,
        budget: RedisBudget | None = None,
    ) -> Response:
        """Send one request, following same-origin redirects; the answer, or `TransientError`.

        `timeout` bounds one exchange, in seconds; `deadline` (UNIX seconds) bounds the whole call, queueing
        and server pauses included: past it, `TransientError` is raised without sending. A redirect to
        another origin is returned as it is, for the caller to judge. With a `budget`, every request
        (redirects too) takes one of its tokens, and a pause the answer puts on the origin is shared.
        """
        for _ in range(MAX_REDIRECTS + 1):
            await self._take_slot(method, url, deadline, budget)
            try:
                if deadline is not None:
                    timeout = min(timeout, max(0.001, deadline - self.clock.time()))
                response = await self.channel.send(
                    Request(method, url, headers, json, data), timeout=timeout, max_body=max_body
                )
            finally:
                self.slots.release()
            if budget is None:
                self._learn(method, url, response, rate_limit)
            else:
                await self._learn_shared(method, url, response, rate_limit, budget, deadline)
            location = response.headers.get("location")
            if response.status not in _REDIRECTS or location is None:
                return response
            target = urljoin(url, location)
            if origin_of(target) != self.origin:
                return response
            if method != "GET" and response.status not in (307, 308):
                return response  # only GETs, and 307/308 (which keep the method and body), are replayed
            url = target
        raise TransientError(f"{method} {redact(url)}: more than {MAX_REDIRECTS} redirects")

    async def _take_slot(
        self, method: str, url: str, deadline: float | None, budget: RedisBudget | None
    ) -> None:
        """Wait out the origin's pause, then for a budget token and a free connection slot; never past
        `deadline`. A pause the budget's store holds becomes this origin's pause."""
        clock = self.clock
        while True:
            pause = self.paused_until - clock.monotonic()
            left = math.inf if deadline is None else deadline - clock.time()
            if pause > 0:
                if pause >= left:
                    await clock.sleep(max(0.0, left))
                    raise TransientError(
                        f"{method} {redact(url)}: the server asked for a pause of {pause:.0f}s more",
                        retry_after=pause,
                    )
                await clock.sleep(pause)
                continue
            if budget is not None:
                if budget not in self.budgets:
                    self.budgets.add(budget)
                    budget.hold()
                shared = await budget.take(self.origin, deadline, clock)
                if shared > 0:
                    self.pause(shared)
                    continue
            if not self.slots.locked() or deadline is None:
                await self.slots.acquire()
            else:
                try:
                    await asyncio.wait_for(self.slots.acquire(), max(0.0, left))
                except asyncio.TimeoutError:
                    raise TransientError(f"{method} {redact(url)}: no free connection in time") from None
            if self.paused_until <= clock.monotonic():
                return
            self.slots.release()  # a pause began while we queued: wait it out without holding a slot

    async def _learn_shared(
        self,
        method: str,
        url: str,
        response: Response,
        rate_limit: RateLimitSpec,
        budget: RedisBudget,
        deadline: float | None,
    ) -> None:
        """`_learn`, and a pause it puts on the origin goes to the budget's store for every process."""
        before = self.paused_until
        try:
            self._learn(method, url, response, rate_limit)
        finally:
            if self.paused_until > before:
                seconds = self.paused_until - self.clock.monotonic()
                await budget.pause(self.origin, seconds, deadline, self.clock)

    def _learn(self, method: str, url: str, response: Response, rate_limit: RateLimitSpec) -> None:
        """Turn the server's hints into a pause on the origin; raise for an answer worth retrying."""
        status, headers = response.status, response.headers
        hint = retry_after(headers, self.clock.time())
        remaining, reset = _ratelimit(headers, rate_limit, self.clock.time())
        limited = status == 429 or (status in rate_limit.statuses and (hint is not None or remaining == 0))
        if limited:
            wait = hint if hint is not None else reset
            if wait is not None:
                self.pause(wait)
            raise TransientError(f"{method} {redact(url)}: HTTP {status} (rate limited)", retry_after=wait)
        if hint is not None and status == 503:
            self.pause(hint)
        elif remaining == 0 and reset is not None:
            self.pause(reset)
        if status == 408 or status >= 500:
            raise TransientError(f"{method} {redact(url)}: HTTP {status}", retry_after=hint)


_PoolKey = tuple[Transport, Clock, str, "bool | str"]
_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[_PoolKey, Origin]] = (
    weakref.WeakKeyDictionary()
)


@asynccontextmanager
async def lease(
    url: str,
    verify: bool | str = True,
    max_connections: int = 100,
    transport: Transport = DEFAULT_TRANSPORT,
    clock: Clock = SYSTEM_CLOCK,
) -> AsyncIterator[Origin]:
    """The shared pool for `url`'s origin in the running loop; closed when its last user leaves."""
    origin = origin_of(url)
    key: _PoolKey = (transport, clock, origin, verify)
    pools = _pools.setdefault(asyncio.get_running_loop(), {})
    pool = pools.get(key)
    if pool is None:
        pool = pools[key] = Origin(
            origin, transport.open(origin, verify, max_connections), clock, max_connections
        )
    pool.leases += 1
    try:
        yield pool
    finally:
        pool.leases -= 1
        if pool.leases == 0 and pools.get(key) is pool:
            del pools[key]
            await pool.channel.aclose()
            for budget in pool.budgets:
                await budget.release()


def retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait from `Retry-After` (seconds or HTTP date, RFC 9110 §10.2.3), or the `-ms` spellings.

    None if absent or unreadable; never negative; capped at `MAX_HINT` (so `Infinity` is read as the cap).
    `now` is the UNIX time a date is measured from (default: the system clock).
    """
    for name, scale in (("retry-after-ms", 1000.0), ("x-ms-retry-after-ms", 1000.0)):
        value = headers.get(name)
        if value is not None:
            seconds = _number(value)
            if seconds is not None:
                return _bounded(seconds / scale)
    value = headers.get("retry-after")
    if value is None:
        return None
    seconds = _number(value)
    if seconds is not None:
        return _bounded(seconds)
    try:
        return _bounded(parsedate_to_datetime(value).timestamp() - (time.time() if now is None else now))
    except (TypeError, ValueError, OverflowError):
        return None


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return None if math.isnan(value) else value


def _bounded(seconds: float) -> float:
    return min(MAX_HINT, max(0.0, seconds))


_RATELIMIT_PARAM = re.compile(r"\b([rt])=(\d+(?:\.\d+)?)")
_EPOCH = 1e9  # a reset larger than this is a UNIX time, not a number of seconds (GitLab sends one)


def _ratelimit(
    headers: Mapping[str, str], spec: RateLimitSpec, now: float | None = None
) -> tuple[int | None, float | None]:
    """(remaining, seconds to reset) from the IETF `RateLimit` field, `RateLimit-*` or the profile's."""
    field = headers.get("ratelimit")
    if field is not None:
        params = dict(_RATELIMIT_PARAM.findall(field))
        r, t = params.get("r"), params.get("t")
        return (int(float(r)) if r else None, _reset(float(t), False, now) if t else None)
    for remaining_name, reset_name, epoch in (
        ("ratelimit-remaining", "ratelimit-reset", False),
        (spec.remaining_header, spec.reset_header, spec.reset == "epoch_s"),
    ):
        remaining, reset = headers.get(remaining_name), headers.get(reset_name)
        if remaining is None and reset is None:
            continue
        left = _number(remaining) if remaining is not None else None
        seconds = _number(reset) if reset is not None else None
        return (
            int(left) if left is not None and math.isfinite(left) else None,
            _reset(seconds, epoch, now) if seconds is not None else None,
        )
    return None, None


def _reset(value: float, epoch: bool, now: float | None) -> float:
    """Seconds until a reset written as a UNIX time (`epoch`, or any value past 1e9) or as seconds."""
    if epoch or value > _EPOCH:
        return _bounded(value - (time.time() if now is None else now))
    return _bounded(value)
