"""The waiter: one engine for polling, long polling and push, async first with a blocking twin."""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TypeVar

from runwatch._api import RunApi, StartedRun
from runwatch._errors import (
    BadStatusPayload,
    IllegalTransition,
    RunCancelled,
    RunFailed,
    RunLost,
    RunNotFound,
    RunPartiallySucceeded,
    RunTimedOut,
    StatusUnavailable,
    WaitTimeout,
)
from runwatch._http import Origin, TransientError, lease
from runwatch._machine import RunMachine, Verdict
from runwatch._policy import Policy
from runwatch._states import Phase, State
from runwatch._status import RunStatus

if TYPE_CHECKING:
    from runwatch._inbox import Mailbox, WebhookInbox

__all__ = ["outcome", "run_sync", "wait_for_run", "wait_for_run_sync", "watch_run"]

log = logging.getLogger("runwatch")

T = TypeVar("T")
OnChange = Callable[[RunStatus], "Awaitable[None] | None"]


class _Watch:
    """The state of one wait between two reads."""

    def __init__(self, api: RunApi, run: str | StartedRun, policy: Policy, deadline: float | None) -> None:
        self.api, self.policy = api, policy
        self.started = run if isinstance(run, StartedRun) else None
        self.url = run.status_url if isinstance(run, StartedRun) else api.status_url(run)
        self.run_id = run.id if isinstance(run, StartedRun) else (None if run == self.url else run)
        now = time.time()
        self.begun = now
        self.deadline = (
            deadline if deadline is not None else (now + policy.timeout if policy.timeout else None)
        )
        self.machine = RunMachine()
        self.etag: str | None = None
        self.quiet = 0
        self.unreadable_since: float | None = None
        self.heartbeat: tuple[datetime | None, float] | None = None  # (value, when we first saw it)

    @property
    def last(self) -> RunStatus | None:
        return self.machine.current

    def describe(self) -> str:
        last = self.last
        return f"run {last.id} was last {last.status.value}" if last else f"{self.url} was never read"

    def check_deadline(self, now: float) -> None:
        if self.deadline is not None and now >= self.deadline:
            waited = now - self.begun
            raise WaitTimeout(f"gave up waiting after {waited:.0f}s; {self.describe()}", self.last)

    async def read(self, origin: Origin) -> tuple[RunStatus | None, float | None, bool]:
        """One request: (status, None if unchanged or unreadable; the server's hint; ask again at once?)"""
        policy, profile = self.policy, self.api.profile
        headers = {"If-None-Match": self.etag} if self.etag else {}
        url, timeout, hold = self.url, policy.request_timeout, 0.0
        long_polling = bool(policy.long_poll and profile.long_poll)
        if policy.long_poll and profile.long_poll and self.etag:  # the first look is never held
            hold = min(policy.long_poll, profile.long_poll.max)
            if self.deadline is not None:
                hold = max(0.0, min(hold, self.deadline - time.time()))
            if hold >= 1:
                if profile.long_poll.style == "query":
                    url = f"{url}{'&' if '?' in url else '?'}{profile.long_poll.param}={hold:g}"
                else:
                    headers["Prefer"] = f"wait={hold:g}"
                timeout += hold
            else:
                hold = 0.0
        sent = time.monotonic()
        self.api.requests += 1
        try:
            response = await origin.request(
                "GET", url, headers=self.api.request_headers(headers), timeout=timeout
            )
            if response.status == 304:
                self.readable()
                # A 304 that came back early means the server does not hold requests: pace ourselves.
                return None, None, long_polling and time.monotonic() - sent >= hold / 2
            status = self.api.read_status(response, self.url, self.run_id)
        except TransientError as exc:
            self.unreadable(exc)
            return None, exc.retry_after, False
        except RunNotFound:
            if self.started is None or time.time() - self.begun > policy.not_found_grace:
                raise
            self.unreadable(RunNotFound(f"{self.url} is not readable yet"))
            return None, None, False
        except BadStatusPayload as exc:
            self.unreadable(exc)
            return None, None, False
        self.readable()
        previous, self.etag = self.etag, response.headers.get("etag")
        # Ask again at once only if the next request can be held: we have an ETag, and this answer was a
        # change or a real hold (a server that ignores holds would otherwise be polled in a tight loop).
        held = time.monotonic() - sent >= hold / 2 if hold else previous is None
        return status, None, long_polling and self.etag is not None and (held or self.etag != previous)

    def readable(self) -> None:
        self.unreadable_since = None

    def unreadable(self, problem: Exception) -> None:
        now = time.time()
        if self.unreadable_since is None:
            self.unreadable_since = now
        log.info("status of %s unreadable: %s", self.url, problem)
        if now - self.unreadable_since > self.policy.unavailable_after:
            since = datetime.fromtimestamp(self.unreadable_since, timezone.utc)
            if isinstance(problem, BadStatusPayload):
                raise BadStatusPayload(f"{problem} (for {now - self.unreadable_since:.0f}s)")
            raise StatusUnavailable(
                f"status unreadable for {now - self.unreadable_since:.0f}s ({problem}); {self.describe()}",
                self.last,
                since,
            )

    def take(self, status: RunStatus, delivery_id: str | None = None) -> bool:
        """Apply one observation; True when the watch moved on."""
        verdict = self.machine.observe(status, delivery_id)
        if verdict is Verdict.ILLEGAL and self.policy.on_illegal == "raise":
            raise IllegalTransition(str(self.machine.anomalies[-1]), self.last)
        if verdict in (Verdict.APPLIED, Verdict.UNCHANGED):
            self._track_heartbeat()
        return verdict is Verdict.APPLIED

    def _track_heartbeat(self) -> None:
        last = self.last
        if last is None or last.phase is not Phase.ACTIVE:
            self.heartbeat = None
            return
        beat = last.heartbeat_at or last.updated_at
        if self.heartbeat is None or self.heartbeat[0] != beat:
            self.heartbeat = (beat, time.monotonic())

    def check_heartbeat(self) -> None:
        # Staleness is measured on our clock from when we first saw the beat, so clock skew between us and
        # the remote cannot make a live run look lost.
        limit, beat, last = self.policy.heartbeat_timeout, self.heartbeat, self.last
        if limit is None or beat is None or last is None or last.status is not State.RUNNING:
            return
        silent = time.monotonic() - beat[1]
        if silent > limit:
            raise RunLost(
                f"run {last.id} says RUNNING but its heartbeat has not moved for {silent:.0f}s "
                f"(limit {limit:g}s); its process is likely gone",
                last,
            )

    def cap(self, delay: float) -> float:
        """`delay`, cut short so that no sleep runs past the deadline."""
        return delay if self.deadline is None else max(0.0, min(delay, self.deadline - time.time()))

    def next_delay(self, hint: float | None, again: bool, push: bool) -> float:
        if again:
            return 0.0  # long polling: the server holds the next request until something changes
        delay = self.policy.max_interval if push and self.quiet else self.policy.delay(self.quiet)
        if hint is not None:
            delay = max(delay, hint)
        delay = self.cap(delay)
        if self.heartbeat is not None and self.policy.heartbeat_timeout is not None:
            delay = min(delay, max(0.0, self.heartbeat[1] + self.policy.heartbeat_timeout - time.monotonic()))
        return delay


async def watch_run(
    api: RunApi,
    run: str | StartedRun,
    *,
    policy: Policy | None = None,
    deadline: float | None = None,
    inbox: WebhookInbox | None = None,
) -> AsyncIterator[RunStatus]:
    """Each change of a run as it is observed, the last one terminal.

    Raises only when the run cannot be watched to its end: WaitTimeout, RunLost, StatusUnavailable,
    IllegalTransition (by policy), RunNotFound, AccessDenied, ProfileError, BadStatusPayload.
    """
    watch = _Watch(api, run, policy or Policy(), deadline)
    mailbox: Mailbox | None = None
    async with lease(watch.url, api.verify, api.max_connections) as origin:
        try:
            if watch.started and watch.started.retry_after:
                await asyncio.sleep(watch.cap(watch.started.retry_after))
            while True:
                watch.check_deadline(time.time())
                status, hint, again = await watch.read(origin)
                if status is not None and watch.take(status):
                    watch.quiet = 0
                    yield status
                else:
                    watch.quiet += 1
                last = watch.last
                if last is not None and last.is_terminal:
                    return
                watch.check_heartbeat()
                if inbox is not None and mailbox is None and last is not None:
                    mailbox = inbox.subscribe(last.id)
                delay = watch.next_delay(hint, again, mailbox is not None)
                if mailbox is None:
                    await asyncio.sleep(delay)
                    continue
                # Until the next poll is due, take pushes as they come: each may end the wait at once.
                poll_at = time.monotonic() + delay
                while (left := poll_at - time.monotonic()) > 0:
                    for pushed, delivery_id in await mailbox.wait(left):
                        if watch.take(pushed, delivery_id):
                            watch.quiet = 0
                            yield pushed
                            if pushed.is_terminal:
                                return
        finally:
            if mailbox is not None and inbox is not None:
                inbox.unsubscribe(mailbox)


def outcome(status: RunStatus, policy: Policy | None = None) -> RunStatus:
    """The terminal status if it counts as success under the policy; else the typed outcome, raised."""
    state = status.status
    detail = f": {status.error_message}" if status.error_message else ""
    if state is State.SUCCEEDED:
        return status
    if state is State.PARTIAL_SUCCESS:
        rule = (policy or Policy()).partial_success
        if rule == "succeed":
            return status
        if rule == "fail":
            raise RunFailed(f"run {status.id} only partly succeeded{detail}", status)
        raise RunPartiallySucceeded(f"run {status.id} partly succeeded{detail}", status)
    if state is State.FAILED:
        raise RunFailed(f"run {status.id} failed{detail or f' ({status.raw_status})'}", status)
    if state is State.CANCELLED:
        raise RunCancelled(f"run {status.id} was cancelled{detail}", status)
    if state is State.TIMED_OUT:
        raise RunTimedOut(f"run {status.id} was timed out by the remote{detail}", status)
    raise ValueError(f"run {status.id} is not terminal ({state.value})")


async def wait_for_run(
    api: RunApi,
    run: str | StartedRun,
    *,
    policy: Policy | None = None,
    deadline: float | None = None,
    inbox: WebhookInbox | None = None,
    on_change: OnChange | None = None,
) -> RunStatus:
    """Wait until the run ends; return its terminal status if it succeeded, else raise the typed outcome."""
    last: RunStatus | None = None
    async for status in watch_run(api, run, policy=policy, deadline=deadline, inbox=inbox):
        last = status
        if on_change is not None:
            result = on_change(status)
            if inspect.isawaitable(result):
                await result
    assert last is not None  # watch_run ends only on a terminal status
    return outcome(last, policy)


def wait_for_run_sync(
    api: RunApi,
    run: str | StartedRun,
    *,
    policy: Policy | None = None,
    deadline: float | None = None,
    on_change: Callable[[RunStatus], None] | None = None,
) -> RunStatus:
    """The blocking twin of `wait_for_run`, for sync callers (an Airflow poke, a script)."""
    return run_sync(wait_for_run(api, run, policy=policy, deadline=deadline, on_change=on_change))


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run one of runwatch's coroutines (`api.get_status(...)`, say) to its end from sync code."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass  # no loop: run below, outside this block, so our errors do not chain "no running event loop"
    else:
        # Called from inside a running loop (a notebook, say): block in a thread of our own, not in that loop.
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="runwatch") as pool:
            return pool.submit(asyncio.run, coro).result()
    return asyncio.run(coro)
