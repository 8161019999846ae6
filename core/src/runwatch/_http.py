"""HTTP for waiters: one aiohttp pool per event loop and origin, shared by every wait in that loop.

The async transport is aiohttp because it is the cheapest per poll at thousands of concurrent waits
(docs/transport.md has the figures). Callers never see aiohttp: they get `Response` or `TransientError`.
"""

from __future__ import annotations

import asyncio
import functools
import re
import ssl
import time
import weakref
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from multidict import CIMultiDictProxy

from runwatch._errors import RunwatchError

__all__ = ["Response", "TransientError", "lease", "retry_after"]

_USER_AGENT = "runwatch/0.1"


class TransientError(RunwatchError):
    """A failure that may pass: connect error, timeout, cut connection, 408, 429 or 5xx."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes


class Origin:
    """One origin's pool in one loop, and the pause every wait on it honours (Retry-After, RateLimit)."""

    def __init__(self, verify: bool | str, max_connections: int) -> None:
        ssl_ctx: ssl.SSLContext | bool = (
            verify if isinstance(verify, bool) else ssl.create_default_context(cafile=verify)
        )
        connector = aiohttp.TCPConnector(limit=max_connections, ssl=ssl_ctx, ttl_dns_cache=300)
        self.session = aiohttp.ClientSession(
            connector=connector, headers={"User-Agent": _USER_AGENT}, skip_auto_headers=("Accept-Encoding",)
        )
        self.paused_until = 0.0  # loop time before which no request goes out
        self.leases = 0
        # Polls queue here, as one future each, rather than as built requests inside aiohttp's connector:
        # thousands of queued requests would be promoted to the old GC generation and stall the loop.
        self.slots = asyncio.Semaphore(max_connections)

    def pause(self, seconds: float) -> None:
        until = asyncio.get_running_loop().time() + seconds
        self.paused_until = max(self.paused_until, until)

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        json: Any = None,
        timeout: float,
    ) -> Response:
        loop = asyncio.get_running_loop()
        async with self.slots:
            # A 429 may pause the origin while we queue, or again while we sleep.
            while (delay := self.paused_until - loop.time()) > 0:  # noqa: ASYNC110 - a deadline, not an event
                await asyncio.sleep(delay)
            try:
                async with self.session.request(
                    method, url, headers=headers, json=json, timeout=_timeout(timeout), allow_redirects=False
                ) as resp:
                    body = await resp.read()
                    response = Response(resp.status, resp.headers, body)
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                raise TransientError(f"{method} {url}: {_describe(exc)}") from None
        hint = retry_after(response.headers)
        self._learn(response, hint)
        if response.status in (408, 429) or response.status >= 500:
            raise TransientError(f"{method} {url}: HTTP {response.status}", retry_after=hint)
        return response

    def _learn(self, response: Response, hint: float | None) -> None:
        # Server hints slow every wait on this origin down together.
        if hint is not None and response.status in (429, 503):
            self.pause(hint)
            return
        remaining, reset = _ratelimit(response.headers)
        if remaining == 0 and reset is not None:
            self.pause(reset)


@functools.lru_cache(maxsize=64)
def _timeout(seconds: float) -> aiohttp.ClientTimeout:
    # One timer for the whole request (a per-read timeout reschedules a timer on every chunk received).
    return aiohttp.ClientTimeout(total=seconds, sock_connect=min(seconds, 30.0))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, bool | str], Origin]] = (
    weakref.WeakKeyDictionary()
)


@asynccontextmanager
async def lease(url: str, verify: bool | str = True, max_connections: int = 100) -> AsyncIterator[Origin]:
    """The shared pool for `url`'s origin in the running loop; closed when its last user leaves."""
    parts = urlsplit(url)
    key = (f"{parts.scheme}://{parts.netloc}", verify)
    pools = _pools.setdefault(asyncio.get_running_loop(), {})
    origin = pools.get(key)
    if origin is None:
        origin = pools[key] = Origin(verify, max_connections)
    origin.leases += 1
    try:
        yield origin
    finally:
        origin.leases -= 1
        if origin.leases == 0 and pools.get(key) is origin:
            del pools[key]
            await origin.session.close()


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from `Retry-After` (seconds or HTTP date), or the `-ms` spellings; None if absent."""
    for name, scale in (("retry-after-ms", 1000.0), ("x-ms-retry-after-ms", 1000.0)):
        value = headers.get(name)
        if value is not None:
            try:
                return max(0.0, float(value) / scale)
            except ValueError:
                pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


_RATELIMIT_PARAM = re.compile(r"\b([rt])=(\d+(?:\.\d+)?)")


def _ratelimit(headers: Mapping[str, str]) -> tuple[int | None, float | None]:
    """(remaining, seconds to reset) from the IETF `RateLimit` field or the older `RateLimit-*` fields."""
    field = headers.get("ratelimit")
    if field is not None:
        params = dict(_RATELIMIT_PARAM.findall(field))
        r, t = params.get("r"), params.get("t")
        return (int(float(r)) if r else None, float(t) if t else None)
    remaining, reset = headers.get("ratelimit-remaining"), headers.get("ratelimit-reset")
    try:
        return (
            int(remaining) if remaining is not None else None,
            float(reset) if reset is not None else None,
        )
    except ValueError:
        return None, None
