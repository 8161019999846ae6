"""One request budget per API origin, shared by every process that polls it, kept in Redis.

A generic cell rate algorithm (GCRA) in one Lua script that Redis runs atomically: the origin's state is one
hash (the theoretical arrival time of the next request, and the pause a server hint put on everyone), read
and written in the store's own clock, so processes on machines whose clocks differ still share one pace. A
request reserves its slot at most a short horizon ahead, so a process that dies loses at most that much of
the budget, never its share: there are no per-process reservations, and the survivors get the whole rate.
The hash expires once it no longer holds anything (its arrival time and pause are in the past).

A store that is down or slow never fails or holds up a wait: each call to it is bounded by `store_timeout`
and the request's deadline; when it does not answer, the process paces itself at the budget's rate (one
warning line per outage) and asks the store again after `retry_store_after` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from runwatch._clock import SYSTEM_CLOCK, Clock
from runwatch._errors import ConfigurationError
from runwatch._transport import TransientError
from runwatch._urls import redact_text

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

__all__ = ["RedisBudget"]

log = logging.getLogger("runwatch")

# KEYS[1]: the origin's hash. ARGV: seconds between requests, burst, the furthest ahead (seconds) a slot may
# be reserved. Answers {granted, seconds until the slot, seconds of shared pause left}, as strings: Redis
# truncates Lua numbers to integers.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval, burst, horizon = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tat', 'pause')
local pause = tonumber(state[2]) or 0
if pause > now then
  return {'0', '0', tostring(pause - now)}
end
local tat = math.max(tonumber(state[1]) or now, now)
local at = tat - (burst - 1) * interval
local wait = math.max(at - now, 0)
if wait > horizon then
  return {'0', tostring(wait), '0'}
end
local next_tat = math.max(tat, now) + interval
redis.call('HSET', KEYS[1], 'tat', tostring(next_tat))
redis.call('PEXPIRE', KEYS[1], math.ceil((next_tat - now) * 1000) + 1000)
return {'1', tostring(wait), '0'}
"""

# KEYS[1]: the origin's hash. ARGV[1]: seconds every process holds off (a 429's Retry-After). Never shortens
# a pause already there.
_PAUSE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local untl = now + tonumber(ARGV[1])
local pause = tonumber(redis.call('HGET', KEYS[1], 'pause')) or 0
if untl > pause then
  redis.call('HSET', KEYS[1], 'pause', tostring(untl))
  local tat = tonumber(redis.call('HGET', KEYS[1], 'tat')) or now
  redis.call('PEXPIRE', KEYS[1], math.ceil((math.max(untl, tat) - now) * 1000) + 1000)
end
return '1'
"""


_SHARED: dict[tuple[str, float, int], RedisBudget] = {}  # RedisBudget.shared: one per settings
_SHARED_LOCK = threading.Lock()


@dataclass
class _LoopState:
    """What one event loop holds: its client (redis-py's connections belong to one loop) and its queues."""

    client: Redis
    take: AsyncScript
    pause: AsyncScript
    locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    holders: int = 0  # pools (one per origin) in this loop that use the budget


class RedisBudget:
    """A request budget per API origin, shared through Redis by every process that uses the same store.

    `RunApi(budget=RedisBudget("redis://host:6379/0", rate=10, burst=5))`: every request of that API (status
    reads, starts, cancels, token requests) takes a token first, so all processes together send at most
    `burst` requests at once and `rate` requests per second after that, per origin. A 429 (or any server
    hint that pauses the origin) seen by one process pauses all of them. `rate` is in requests per second
    (> 0), `burst` a whole number of requests (>= 1). `key_prefix` names the Redis keys (`<prefix>:<origin>`,
    expiring).

    The store is asked at most `store_timeout` seconds per call (and never past a request's deadline); when
    it does not answer, requests are paced by this process alone at `rate` (one warning line) until it
    answers again, asked every `retry_store_after` seconds. Raises `ConfigurationError` for a bad rate or
    burst, or when the `redis` package is missing (`pip install 'runwatch[redis]'`).
    """

    def __init__(
        self,
        url: str,
        *,
        rate: float,
        burst: int = 1,
        key_prefix: str = "runwatch:budget",
        store_timeout: float = 1.0,
        retry_store_after: float = 5.0,
    ) -> None:
        try:
            import redis.asyncio  # noqa: F401 - checked here so a missing extra is a usage error at once
        except ImportError:
            raise ConfigurationError(
                "RedisBudget needs the redis package: pip install 'runwatch[redis]'"
            ) from None
        if not _positive(rate):
            raise ConfigurationError(
                f"budget rate must be a number of requests per second > 0 (got {rate!r})"
            )
        if not (_positive(burst) and isinstance(burst, int)):
            raise ConfigurationError(f"budget burst must be a whole number of requests >= 1 (got {burst!r})")
        for name, value in (("store_timeout", store_timeout), ("retry_store_after", retry_store_after)):
            if not _positive(value):
                raise ConfigurationError(f"budget {name} must be a number of seconds > 0 (got {value!r})")
        self.url = url
        self.rate, self.burst = float(rate), burst
        self.key_prefix = key_prefix
        self.store_timeout, self.retry_store_after = store_timeout, retry_store_after
        self.interval = 1.0 / self.rate
        # A slot is reserved at most this far ahead: what a process that dies can leave unused.
        self.horizon = max(self.interval, 0.25)
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = (
            weakref.WeakKeyDictionary()
        )
        self._loops_lock = threading.Lock()
        self._down_until = 0.0  # time.monotonic() before which the store is not asked
        self._local: dict[str, float] = {}  # origin -> next free slot (monotonic) while the store is down

    @classmethod
    def shared(cls, url: str, *, rate: float, burst: int = 1) -> RedisBudget:
        """This process's one budget for these settings, made on first use (same errors as the constructor).

        What the integrations use, which build a `RunApi` per wait (each Airflow trigger, each Prefect
        `get_api()`): their waits then queue for tokens in the process and share one Redis client per
        event loop, instead of one client each.
        """
        key = (url, rate, burst)
        with _SHARED_LOCK:
            budget = _SHARED.get(key)
            if budget is None:
                budget = _SHARED[key] = cls(url, rate=rate, burst=burst)
        return budget

    def __repr__(self) -> str:
        return f"RedisBudget({self.store!r}, rate={self.rate}, burst={self.burst})"

    @property
    def store(self) -> str:
        """The store's address without its credentials (`redis://host:port/db`), for logs."""
        parts = urlsplit(self.url)
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{parts.hostname or ''}{port}{parts.path}"

    async def take(self, origin: str, deadline: float | None, clock: Clock) -> float:
        """Wait for this origin's next token; 0.0 once it is ours, or the seconds of a shared pause left.

        A shared pause reserves nothing: the caller waits it out (as its own pause) and asks again.
        `deadline` is in UNIX seconds on `clock`; `TransientError` when no token comes before it.
        """
        state = self._state()
        lock = state.locks.get(origin)
        if lock is None:
            lock = state.locks[origin] = asyncio.Lock()
        # One ask at a time per origin in this process: the rest queue here, not at the store.
        if deadline is None:
            await lock.acquire()
        else:
            try:
                await asyncio.wait_for(lock.acquire(), max(0.0, deadline - clock.time()))
            except asyncio.TimeoutError:
                raise _late(origin, None) from None
        try:
            while True:
                left = math.inf if deadline is None else deadline - clock.time()
                if left <= 0:
                    raise _late(origin, None)
                reach = min(self.horizon, left)  # never reserve a slot past the deadline
                answer = await self._ask(state.take, origin, left, self.interval, self.burst, reach)
                if answer is None:
                    wait = self._take_locally(origin)
                    break
                granted, wait, paused = (float(value) for value in answer)
                if paused > 0:
                    return paused
                if granted:
                    break
                if wait >= left:
                    raise _late(origin, wait)
                await clock.sleep(wait - reach)  # the store's next free slot is beyond our reach
        finally:
            lock.release()
        if wait > 0:
            left = math.inf if deadline is None else deadline - clock.time()
            if wait >= left:  # local pacing, or a slot whose answer took up the rest of the time
                raise _late(origin, wait)
            await clock.sleep(wait)
        return 0.0

    async def pause(
        self, origin: str, seconds: float, deadline: float | None = None, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        """Make every process hold off `origin` for `seconds` (a 429's hint); never past `deadline` (UNIX
        seconds on `clock`). Never raises: a pause the store did not take still holds this process."""
        left = math.inf if deadline is None else deadline - clock.time()
        if left > 0:
            with contextlib.suppress(TransientError):
                await self._ask(self._state().pause, origin, left, seconds)

    def hold(self) -> None:
        """A pool of this loop uses the budget: its connections stay open until the last one `release`s."""
        self._state().holders += 1

    async def release(self) -> None:
        """The counterpart of `hold`: the last pool of this loop to leave closes its connections."""
        state = self._loops.get(asyncio.get_running_loop())
        if state is not None:
            state.holders -= 1
            if state.holders <= 0:
                await self.aclose()

    async def aclose(self) -> None:
        """Close this event loop's connections to the store (they are also dropped with the loop)."""
        with self._loops_lock:
            state = self._loops.pop(asyncio.get_running_loop(), None)
        if state is not None:
            await state.client.aclose()

    def _state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        with self._loops_lock:  # a shared budget serves loops in several threads (sync waits, Prefect tasks)
            return self._loops.get(loop) or self._new_state(loop)

    def _new_state(self, loop: asyncio.AbstractEventLoop) -> _LoopState:
        """A client for `loop` (called with `_loops_lock` held)."""
        # Forget the clients of loops that ended (a sync wait runs in a loop of its own each time).
        for ended in [other for other in self._loops if other.is_closed()]:
            del self._loops[ended]
        from redis.asyncio import Redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        # No retries inside the client: a slow store is our timeout's business, and falls back at once.
        client = Redis.from_url(
            self.url,
            socket_timeout=self.store_timeout,
            socket_connect_timeout=self.store_timeout,
            retry=Retry(NoBackoff(), 0),
        )
        state = self._loops[loop] = _LoopState(
            client, client.register_script(_TAKE), client.register_script(_PAUSE)
        )
        return state

    async def _ask(self, script: AsyncScript, origin: str, left: float, *args: float) -> Any:
        """The script's answer, or None when the store is down, slow, or known to be down."""
        if time.monotonic() < self._down_until:
            return None
        from redis.exceptions import RedisError

        limit = min(self.store_timeout, left)
        try:
            answer = await asyncio.wait_for(script(keys=[f"{self.key_prefix}:{origin}"], args=args), limit)
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            if isinstance(exc, asyncio.TimeoutError) and limit < self.store_timeout:  # the deadline ran out
                raise _late(origin, None) from None
            self._store_down(exc)
            return None
        if self._down_until:
            self._down_until = 0.0
            log.info("request budget store %s answers again: the budget is shared again", self.store)
        return answer

    def _store_down(self, exc: BaseException) -> None:
        from redis.exceptions import TimeoutError as RedisTimeout

        if not self._down_until:
            if isinstance(exc, (asyncio.TimeoutError, RedisTimeout)):
                reason = f"no answer within {self.store_timeout:g}s"
            else:
                reason = redact_text((str(exc) or type(exc).__name__).splitlines()[0][:200])
            log.warning(
                "request budget store %s did not answer (%s): this process paces itself at %g requests/s "
                "until it does",
                self.store,
                reason,
                self.rate,
            )
        self._down_until = time.monotonic() + self.retry_store_after

    def _take_locally(self, origin: str) -> float:
        """This process's own GCRA while the store is down: seconds until our slot (reserved)."""
        now = time.monotonic()
        tat = max(self._local.get(origin, now), now)
        wait = max(0.0, tat - (self.burst - 1) * self.interval - now)
        self._local[origin] = tat + self.interval
        return wait


def _positive(value: object) -> bool:
    """A finite number > 0, and not a bool (settings may come from JSON or a form)."""
    return (
        isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    )


def _late(origin: str, wait: float | None) -> TransientError:
    return TransientError(f"{origin}: no request budget left before the deadline", retry_after=wait)
