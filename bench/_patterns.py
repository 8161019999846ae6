"""Client patterns for "many waits on one API": runwatch's waiter and the patterns it is compared with.

The Airflow patterns are reimplemented minimally from apache-airflow-providers-http 6.3.0 and
apache-airflow-providers-databricks (Airflow is not installed here, and must not be: only the client
behaviour matters, and it is small enough to restate faithfully):

- `HttpSensorTrigger`: every poll opens a new `aiohttp.ClientSession`; `HttpAsyncHook.run` tries up to 3 times
  with no pause, retrying only statuses >= 500 (429 and 413 are explicitly not retried) and raising
  "<status>:<reason>"; the trigger sleeps `poke_interval` only when that message starts with "404", so
  any other HTTP error (a 429 included) sends it straight back to the top: a hot loop. Adaptation: the real
  trigger waits for a non-404 answer; on a run-status API "not ready" is a non-terminal status, which sleeps
  like its 404 branch. Not modelled (each makes the real trigger costlier): its connection lookup through
  `sync_to_async` on every poll, its logging.
- `DatabricksExecutionTrigger`: one `aiohttp.ClientSession` per trigger (`async with hook:`), reused across
  its polls; each call retried by tenacity with `stop_after_attempt(retry_limit=3)` and
  `wait_exponential(min=retry_delay=1, max=2**3)` on 429, 5xx, connection errors and timeouts, ignoring
  `Retry-After`; after 3 failed attempts it raises and the trigger (so the task) fails. It sleeps
  `polling_period_seconds` between polls, and makes one more GET (`a_get_run`) once the run is terminal.
- A naive poller: one shared session, a GET every `interval`, whatever the answer (no backoff, no hints).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

import aiohttp
from tenacity import AsyncRetrying, RetryError, retry_if_exception, stop_after_attempt, wait_exponential

import runwatch

__all__ = ["PATTERNS", "Outcome", "Pattern"]

TERMINAL = frozenset({"SUCCEEDED", "FAILED", "CANCELLED", "TIMED_OUT", "PARTIAL_SUCCESS"})


@dataclass
class Outcome:
    """How one wait ended: when it saw the terminal state, and when the run says it ended (UNIX times)."""

    detected_at: float
    ended_at: float | None


def _ended_at(payload: dict[str, Any]) -> float | None:
    value = payload.get("ended_at")
    return datetime.fromisoformat(value).timestamp() if value else None


class Pattern:
    name: ClassVar[str]
    title: ClassVar[str]

    async def open(self) -> None:
        """Create what the waits of this pattern share."""

    async def close(self) -> None:
        """Release it."""

    async def wait(self, url: str) -> Outcome:
        raise NotImplementedError


class Naive(Pattern):
    name = "naive-1s"
    title = "naive poller: shared session, GET every 1 s, no backoff, no hints"
    interval = 1.0

    async def open(self) -> None:
        self.session = aiohttp.ClientSession()

    async def close(self) -> None:
        await self.session.close()

    async def wait(self, url: str) -> Outcome:
        while True:
            try:
                async with self.session.get(url) as response:
                    if response.status == 200:
                        payload = await response.json()
                        if payload["status"] in TERMINAL:
                            return Outcome(time.time(), _ended_at(payload))
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(self.interval)


class HttpError(Exception):
    """The hook's HttpErrorException (an AirflowException): "<status>:<reason>"."""


class HttpSensorTriggerLike(Pattern):
    name = "airflow-http-sensor"
    title = "HttpSensorTrigger pattern: new ClientSession per poll, poke_interval 1 s"
    poke_interval = 1.0
    retry_limit = 3

    async def wait(self, url: str) -> Outcome:
        while True:
            try:
                async with aiohttp.ClientSession() as session:
                    payload = await self._hook_run(session, url)
                if payload["status"] in TERMINAL:
                    return Outcome(time.time(), _ended_at(payload))
                await asyncio.sleep(self.poke_interval)  # "not ready": the trigger's 404 branch
            except HttpError as exc:
                if str(exc).startswith("404"):
                    await asyncio.sleep(self.poke_interval)
                # any other HTTP error: straight back to the top, without sleeping

    async def _hook_run(self, session: aiohttp.ClientSession, url: str) -> Any:
        for attempt in range(1, self.retry_limit + 1):
            async with session.get(url) as response:
                if response.status < 400:
                    return await response.json()
                retryable = response.status >= 500  # HttpAsyncHook: 429 and 413 are never retried
                if not retryable or attempt == self.retry_limit:
                    raise HttpError(f"{response.status}:{response.reason}")
        raise AssertionError("unreachable")


class AirflowLikeError(Exception):
    """An AirflowException raised by the hook: the trigger, so the task, fails."""


def _databricks_retryable(exc: BaseException) -> bool:
    if isinstance(exc, aiohttp.ClientResponseError):
        return exc.status >= 500 or exc.status == 429
    return isinstance(exc, (aiohttp.ClientConnectorError, asyncio.TimeoutError))


class DatabricksTriggerLike(Pattern):
    name = "airflow-databricks"
    title = "DatabricksExecutionTrigger pattern: session per trigger, 1 s period, tenacity 3 tries"
    polling_period = 1.0
    retry_limit, retry_delay = 3, 1.0

    async def wait(self, url: str) -> Outcome:
        async with aiohttp.ClientSession() as session:
            while True:
                payload = await self._api_call(session, url)  # a_get_run_state
                if payload["status"] not in TERMINAL:
                    await asyncio.sleep(self.polling_period)
                    continue
                detected = time.time()
                await self._api_call(session, url)  # a_get_run, for the event's run info
                return Outcome(detected, _ended_at(payload))

    async def _api_call(self, session: aiohttp.ClientSession, url: str) -> Any:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.retry_limit),
            wait=wait_exponential(min=self.retry_delay, max=2**self.retry_limit),
            retry=retry_if_exception(_databricks_retryable),
        )
        try:
            async for attempt in retrying:
                with attempt:
                    async with session.get(url, timeout=aiohttp.ClientTimeout(total=180)) as response:
                        response.raise_for_status()
                        return await response.json()
        except RetryError:
            raise AirflowLikeError(f"API requests failed {self.retry_limit} times. Giving up.") from None
        raise AssertionError("unreachable")


class Runwatch(Pattern):
    """`runwatch.watch_run` with one RunApi per wait (as each Airflow trigger builds its own)."""

    name = "runwatch"
    title = "runwatch, default Policy (2 s, x2 backoff, full jitter, cap 60 s)"
    policy = runwatch.Policy()

    async def wait(self, url: str) -> Outcome:
        api = runwatch.RunApi(profile="standard")
        last: runwatch.RunStatus | None = None
        async for status in runwatch.watch_run(api, url, policy=self.policy):
            last = status
        assert last is not None and last.is_terminal
        return Outcome(time.time(), last.ended_at.timestamp() if last.ended_at else None)


class RunwatchFixed(Runwatch):
    name = "runwatch-1s"
    title = "runwatch, fixed 1 s (backoff 1, no jitter)"
    policy = runwatch.Policy(interval=1.0, max_interval=1.0, backoff=1.0, jitter=False)


class RunwatchLongPoll(Runwatch):
    name = "runwatch-longpoll"
    title = "runwatch, long polling (?wait=30), default Policy otherwise"
    policy = runwatch.Policy(long_poll=30.0)


PATTERNS: dict[str, type[Pattern]] = {
    cls.name: cls
    for cls in (
        Naive,
        HttpSensorTriggerLike,
        DatabricksTriggerLike,
        RunwatchFixed,
        Runwatch,
        RunwatchLongPoll,
    )
}
