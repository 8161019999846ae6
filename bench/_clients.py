"""The transport subjects: one way each of polling a status URL from many concurrent waits in one loop.

Every subject does the same work per poll that a minimal status poller must do: GET the URL, read the whole
body, decode the JSON and look at its `status`. The runwatch subjects do what `watch_run` does instead
(conditional GET with the ETag, profile parse into a RunStatus, state machine), because that is the thing
under test. All pools are bounded at 100 connections per origin, all timeouts are 30 s.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import ClassVar

import aiohttp
import httpx
from httpx_aiohttp import HttpxAiohttpClient

import runwatch

__all__ = ["SUBJECTS", "Subject"]

POOL = 100  # connections per origin, as runwatch's own pool (RunApi.max_connections)
TIMEOUT = 30.0  # seconds, as runwatch's Policy.request_timeout


class Subject:
    """One client pattern. `wait()` is one wait: poll, sleep `interval`, until `end` (loop time)."""

    name: ClassVar[str]
    title: ClassVar[str]
    runs: ClassVar[str] = "quiet"  # which runs it polls: "quiet" (never changes) or "beating" (changes)
    small_only: ClassVar[bool] = False  # too costly to run past the smallest size

    def __init__(self) -> None:
        self.errors = 0
        self.first_error: str | None = None

    async def open(self) -> None:
        """Create what the waits share (a client, a session)."""

    async def close(self) -> None:
        """Release what `open` created."""

    async def poll(self, url: str) -> None:
        raise NotImplementedError

    async def wait(self, url: str, interval: float, end: float) -> None:
        loop = asyncio.get_running_loop()
        while loop.time() < end:
            try:
                await self.poll(url)
            except Exception as exc:  # counted, reported, never fatal to the wait
                self.error(exc)
            await asyncio.sleep(min(interval, max(0.0, end - loop.time())))

    def error(self, exc: BaseException) -> None:
        self.errors += 1
        if self.first_error is None:
            self.first_error = f"{type(exc).__name__}: {exc}"[:200]


def _check(body: bytes) -> None:
    status = json.loads(body)["status"]
    if not isinstance(status, str):
        raise ValueError(f"unexpected status {status!r}")


class HttpxPerPoll(Subject):
    name = "httpx-per-poll"
    title = "new httpx.AsyncClient per poll"
    small_only = True

    async def poll(self, url: str) -> None:
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            response = await client.get(url)
            response.raise_for_status()
            _check(response.content)


class HttpxShared(Subject):
    name = "httpx-shared"
    title = f"one shared httpx.AsyncClient (pool {POOL}, semaphore {POOL})"

    async def open(self) -> None:
        limits = httpx.Limits(max_connections=POOL, max_keepalive_connections=POOL)
        self.client = httpx.AsyncClient(limits=limits, timeout=TIMEOUT)
        # Unbounded, 1,000 waits on a 100-connection pool end in httpx.PoolTimeout (measurements.md).
        self.bound = asyncio.Semaphore(POOL)

    async def close(self) -> None:
        await self.client.aclose()

    async def poll(self, url: str) -> None:
        async with self.bound:
            response = await self.client.get(url)
        response.raise_for_status()
        _check(response.content)


class HttpxOverAiohttp(Subject):
    name = "httpx-aiohttp"
    title = f"httpx over the aiohttp transport (httpx-aiohttp, pool {POOL})"

    async def open(self) -> None:
        limits = httpx.Limits(max_connections=POOL, max_keepalive_connections=POOL)
        self.client = HttpxAiohttpClient(limits=limits, timeout=TIMEOUT)

    async def close(self) -> None:
        await self.client.aclose()

    async def poll(self, url: str) -> None:
        response = await self.client.get(url)
        response.raise_for_status()
        _check(response.content)


class AiohttpShared(Subject):
    name = "aiohttp-shared"
    title = f"one shared aiohttp.ClientSession (pool {POOL})"

    async def open(self) -> None:
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=POOL))
        self.timeout = aiohttp.ClientTimeout(total=TIMEOUT)

    async def close(self) -> None:
        await self.session.close()

    async def poll(self, url: str) -> None:
        async with self.session.get(url, timeout=self.timeout) as response:
            body = await response.read()
            response.raise_for_status()
        _check(body)


class RunwatchWaiter(Subject):
    """`runwatch.watch_run` itself: one RunApi per wait (as each Airflow trigger builds its own)."""

    name = "runwatch"
    title = "runwatch.watch_run (fixed 1 s, no jitter), quiet run: polls are 304 (ETag)"
    policy = runwatch.Policy(interval=1.0, max_interval=1.0, backoff=1.0, jitter=False)

    def make_api(self) -> runwatch.RunApi:
        return runwatch.RunApi(profile="standard", max_connections=POOL)

    async def wait(self, url: str, interval: float, end: float) -> None:
        api = self.make_api()
        policy = self.policy.replace(interval=interval, max_interval=interval)
        deadline = time.time() + (end - asyncio.get_running_loop().time())
        try:
            async for _status in runwatch.watch_run(api, url, policy=policy, deadline=deadline):
                pass
        except runwatch.WaitTimeout:
            pass  # the bounded end of the wait
        except Exception as exc:
            self.error(exc)

    async def poll(self, url: str) -> None:  # only used to warm up
        await runwatch.RunApi(profile="standard").get_status(url)


class RunwatchOverHttpx(RunwatchWaiter):
    """The same waiter on `runwatch.HttpxTransport` (one httpx client per origin, shared by every wait)."""

    name = "runwatch-httpx"
    title = "runwatch.watch_run over HttpxTransport (fixed 1 s), quiet run: polls are 304 (ETag)"
    transport = runwatch.HttpxTransport()

    def make_api(self) -> runwatch.RunApi:
        return runwatch.RunApi(profile="standard", max_connections=POOL, transport=self.transport)


class RunwatchWaiterChanging(RunwatchWaiter):
    name = "runwatch-changing"
    title = "runwatch.watch_run (fixed 1 s, no jitter), changing run: every poll a 200 + full parse"
    runs = "beating"


SUBJECTS: dict[str, type[Subject]] = {
    cls.name: cls
    for cls in (
        HttpxPerPoll,
        HttpxShared,
        HttpxOverAiohttp,
        AiohttpShared,
        RunwatchWaiter,
        RunwatchOverHttpx,
        RunwatchWaiterChanging,
    )
}
