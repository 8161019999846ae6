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
    """The state of one wait between two reads, and the rules that end it."""

    def __init__(self, api: RunApi, run: str | StartedRun, policy: Policy, deadline: float | None) -> None:
        self.api, self.policy = api, policy
        self.started = run if isinstance(run, StartedRun) else None
        self.url = run.status_url if isinstance(run, StartedRun) else api.status_url(run)
        self.run_id = run.id if isinstance(run, StartedRun) else (None if run == self.url else run)
        self.headers = api.headers_for(self.url)
        now = time.time()
        self.begun = now
        self.deadline = (
            deadline if deadline is not None else (now + policy.timeout if policy.timeout else None)
        )
        self.machine = RunMachine()
        self.etag: str | None = None
        self.looked = False  # a first answer came back: from now on a long poll may be held
        self.quiet = 0
        self.unreadable_since: float | None = None
        self.problem: Exception | None = None
        self.heartbeat: tuple[datetime | None, float] | None = None  # (value, when we first saw it)
        self.dropped: list[str] = []
        self.warned: set[str] = set()

    @property
    def last(self) -> RunStatus | None:
        return self.machine.current

    def describe(self) -> str:
        last = self.last
        return f"run {last.id} was last {last.status.value}" if last else f"{self.url} was never read"

    def blind_limit(self) -> float | None:
        """When being unable to read ends the wait: the unavailable tolerance, shorter for a first read."""
        if self.unreadable_since is None:
            return None
        policy = self.policy
        tolerance = policy.unavailable_after
        if self.last is None:
            first = max(policy.first_read_after, policy.not_found_grace if self.started else 0.0)
            tolerance = min(tolerance, first)
        return self.unreadable_since + tolerance

    def limit(self) -> float | None:
        """The earliest time (UNIX seconds) at which the wait ends without news: deadline or blindness."""
        found = [t for t in (self.deadline, self.blind_limit()) if t is not None]
        return min(found) if found else None

    def check_limits(self) -> None:
        """Raise the outcome of a limit that has passed: `WaitTimeout`, else `StatusUnavailable`."""
        now = time.time()
        if self.deadline is not None and now >= self.deadline:
            waited = now - self.begun
            raise WaitTimeout(f"gave up waiting after {waited:.0f}s; {self.describe()}", self.last)
        blind = self.blind_limit()
        if blind is None or now < blind:
            return
        assert self.unreadable_since is not None
        since = datetime.fromtimestamp(self.unreadable_since, timezone.utc)
        message = (
            f"status unreadable for {now - self.unreadable_since:.0f}s ({self.problem}); {self.describe()}"
        )
        if isinstance(self.problem, BadStatusPayload):
            raise BadStatusPayload(message, self.last)
        raise StatusUnavailable(message, self.last, since)

    def bound(self, delay: float) -> float:
        """`delay`, cut short so that no sleep runs past a limit or the heartbeat's expiry."""
        limit = self.limit()
        if limit is not None:
            delay = min(delay, limit - time.time())
        if self.heartbeat is not None and self.policy.heartbeat_timeout is not None:
            delay = min(delay, self.heartbeat[1] + self.policy.heartbeat_timeout - time.monotonic())
        return max(0.0, delay)

    async def read(self, api: RunApi, origin: Origin) -> tuple[RunStatus | None, float | None, bool]:
        """One request: (status, None if unchanged or unreadable; the server's hint; was it held?)"""
        policy, profile = self.policy, api.profile
        headers = {"If-None-Match": self.etag} if self.etag else {}
        url, timeout, hold = self.url, policy.request_timeout, 0.0
        if policy.long_poll and profile.long_poll and self.looked:  # the first look is never held
            hold = self.bound(min(policy.long_poll, profile.long_poll.max))
            if hold >= 1:
                if profile.long_poll.style == "query":
                    url = f"{url}{'&' if '?' in url else '?'}{profile.long_poll.param}={hold:g}"
                else:
                    headers["Prefer"] = f"wait={hold:g}"
                timeout += hold
            else:
                hold = 0.0
        sent = time.monotonic()
        try:
            response = await api.send(
                origin,
                "GET",
                url,
                headers={**self.headers, **headers} if headers else self.headers,
                timeout=timeout,
                deadline=self.limit(),
            )
            held = hold > 0 and time.monotonic() - sent >= hold / 2
            if response.status == 304:
                self.readable()
                return None, None, held
            status = api.read_status(response, self.url, self.run_id, self.dropped)
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
        self.etag = response.headers.get("etag")
        if self.dropped:
            self._warn_dropped()
        return status, None, held

    def readable(self) -> None:
        self.looked = True
        self.unreadable_since, self.problem = None, None

    def unreadable(self, problem: Exception) -> None:
        """Note a failed read; the limits decide when blindness ends the wait."""
        first = self.unreadable_since is None
        if first:
            self.unreadable_since = time.time()
        self.problem = problem
        log.log(logging.WARNING if first else logging.INFO, "status of %s unreadable: %s", self.url, problem)

    def _warn_dropped(self) -> None:
        for problem in self.dropped:
            name = problem.partition(":")[0]
            if name not in self.warned:
                self.warned.add(name)
                log.warning("left out an unreadable field of %s: %s", self.url, problem)
        self.dropped.clear()

    def take(self, status: RunStatus, delivery_id: str | None = None) -> Verdict:
        """Apply one observation; the machine's verdict (APPLIED or PROGRESSED are news)."""
        verdict = self.machine.observe(status, delivery_id)
        if verdict is Verdict.ILLEGAL and self.policy.on_illegal == "raise":
            raise IllegalTransition(str(self.machine.anomalies[-1]), self.last)
        if verdict in (Verdict.APPLIED, Verdict.PROGRESSED, Verdict.UNCHANGED):
            self._track_heartbeat()
        if verdict is Verdict.APPLIED:
            self.quiet = 0  # only a change of state, or of what decides the outcome, resets the pacing
        return verdict

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

    def next_delay(self, hint: float | None, push: bool) -> float:
        delay = self.policy.max_interval if push and self.quiet else self.policy.delay(self.quiet)
        if hint is not None:
            delay = max(delay, hint)
        return self.bound(delay)


async def watch_run(
    api: RunApi,
    run: str | StartedRun,
    *,
    policy: Policy | None = None,
    deadline: float | None = None,
    inbox: WebhookInbox | None = None,
    on_unreadable: Callable[[Exception], None] | None = None,
) -> AsyncIterator[RunStatus]:
    """Each change of a run as it is observed, the last one terminal.

    A change is news about the run: its state, what decides its outcome, or its progress; a heartbeat alone
    is not one. `deadline` is absolute, in UNIX seconds (default: now + `policy.timeout`).
    `on_unreadable(problem)` is called with each failed read as it happens (a live view shows it).
    Raises only when the run cannot be watched to its end: WaitTimeout, RunLost, StatusUnavailable,
    BadStatusPayload, IllegalTransition (by policy), RunNotFound, AccessDenied, ProfileError,
    ConfigurationError.
    """
    watch = _Watch(api, run, policy or Policy(), deadline)
    policy = watch.policy
    long_polling = bool(policy.long_poll and api.profile.long_poll)
    mailbox: Mailbox | None = None
    async with lease(watch.url, api.verify, api.max_connections) as origin:
        try:
            if watch.started and watch.started.retry_after:
                await asyncio.sleep(watch.bound(watch.started.retry_after))
            while True:
                watch.check_limits()
                pause = origin.paused_for()
                if pause > 0:  # another wait on this origin was told to slow down: we are blind too
                    watch.unreadable(TransientError(f"the server asked for a pause of {pause:.0f}s"))
                    await asyncio.sleep(watch.bound(pause))
                    continue
                problem = watch.problem
                status, hint, held = await watch.read(api, origin)
                if watch.problem is not None and watch.problem is not problem and on_unreadable is not None:
                    on_unreadable(watch.problem)
                verdict = watch.take(status) if status is not None else None
                news = verdict in (Verdict.APPLIED, Verdict.PROGRESSED)
                if news:
                    assert status is not None
                    yield status
                if verdict is not Verdict.APPLIED:
                    watch.quiet += 1
                last = watch.last
                if last is not None and last.is_terminal:
                    return
                watch.check_heartbeat()
                if inbox is not None and mailbox is None and last is not None:
                    mailbox = inbox.subscribe(last.id)
                # Long polling: ask again at once after a real hold or news; a server that answers at once
                # with nothing new does not hold requests, so it is paced like any other.
                if long_polling and watch.problem is None and (held or news):
                    continue
                delay = watch.next_delay(hint, mailbox is not None)
                if mailbox is None:
                    await asyncio.sleep(delay)
                    continue
                # Until the next poll is due, take pushes as they come: each may end the wait at once.
                poll_at = time.monotonic() + delay
                while (left := poll_at - time.monotonic()) > 0:
                    for pushed, delivery_id in await mailbox.wait(left):
                        if watch.take(pushed, delivery_id) in (Verdict.APPLIED, Verdict.PROGRESSED):
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
    on_unreadable: Callable[[Exception], None] | None = None,
) -> RunStatus:
    """Wait until the run ends; return its terminal status if it succeeded, else raise the typed outcome.

    `on_change(status)` (sync or async) is called with each change; see `watch_run` for the rest.
    """
    last: RunStatus | None = None
    async for status in watch_run(
        api, run, policy=policy, deadline=deadline, inbox=inbox, on_unreadable=on_unreadable
    ):
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
        return asyncio.run(coro)
    # Called from inside a running loop (a notebook, say): block in a thread of our own, not in that loop.
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="runwatch") as pool:
        return pool.submit(asyncio.run, coro).result()
