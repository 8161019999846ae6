"""The waiter: one engine for polling, long polling and push, async first with a blocking twin."""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
from collections.abc import AsyncIterator, Coroutine, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from runwatch._api import RunApi, StartedRun
from runwatch._errors import RunCancelled, RunFailed, RunPartiallySucceeded, RunTimedOut
from runwatch._hooks import NO_HOOKS, Hooks
from runwatch._machine import Verdict
from runwatch._policy import Policy
from runwatch._sharing import feed_for
from runwatch._states import State
from runwatch._status import RunStatus
from runwatch._trace import WaitTrace
from runwatch._transport import TransientError
from runwatch._urls import redact
from runwatch._watch import NEWS, Watch
from runwatch.text import inert

if TYPE_CHECKING:
    from runwatch._inbox import Mailbox, WebhookInbox

__all__ = ["outcome", "run_sync", "wait_for_run", "wait_for_run_sync", "watch_run"]

T = TypeVar("T")


async def watch_run(
    api: RunApi,
    run: str | StartedRun,
    *,
    policy: Policy | None = None,
    deadline: float | None = None,
    inbox: WebhookInbox | None = None,
    hooks: Hooks = NO_HOOKS,
    trace: Mapping[str, str] | None = None,
) -> AsyncIterator[RunStatus]:
    """Each change of a run as it is observed, the last one terminal.

    A change is news about the run: its state, what decides its outcome, or its progress; a heartbeat alone
    is not one. `run` is a run id, a status URL or a `StartedRun`; `deadline` is absolute, in UNIX seconds
    (default: now + `policy.timeout`); `hooks` are told what happens as it happens; `trace` is a W3C Trace
    Context carrier (`{"traceparent": ..., "tracestate": ...}`) whose headers every request carries.
    Raises only when the run cannot be watched to its end: WaitTimeout, RunLost, StatusUnavailable,
    BadStatusPayload, IllegalTransition (by policy), RunNotFound, AccessDenied, ProfileError,
    ConfigurationError.
    """
    clock = api.clock
    watch = Watch(api, run, policy or Policy(), deadline, clock)
    mailbox: Mailbox | None = None

    async def sleep(seconds: float) -> None:
        if hooks.before_sleep is not None:
            hooks.before_sleep(seconds)
        await feed.sleep(seconds)  # a shared feed ends it early when another wait's read brings news

    async def news(status: RunStatus) -> None:
        if hooks.on_change is not None:
            result = hooks.on_change(status)
            if inspect.isawaitable(result):
                await result

    def verdict_of(status: RunStatus, delivery_id: str | None = None) -> Verdict:
        anomalies = len(watch.machine.anomalies)
        verdict = watch.take(status, delivery_id)
        if hooks.on_anomaly is not None and len(watch.machine.anomalies) > anomalies:
            hooks.on_anomaly(watch.machine.anomalies[-1])
        return verdict

    tracing = WaitTrace(trace, redact(watch.url))
    if tracing.headers:
        watch.headers = {**watch.headers, **tracing.headers}

    def announce(method: str, url: str) -> None:
        tracing.requests += 1
        if hooks.on_request is not None:
            hooks.on_request(method, url)

    async with api.lease(watch.url) as origin, feed_for(api, watch, origin, announce) as feed:
        try:
            if watch.started and watch.started.retry_after:
                await sleep(watch.bound(watch.started.retry_after))
            while True:
                watch.check_limits()
                pause = origin.paused_for()
                if pause > 0:  # another wait on this origin was told to slow down: we are blind too
                    watch.unreadable(TransientError(f"the server asked for a pause of {pause:.0f}s"))
                    await sleep(watch.bound(pause))
                    continue
                ask = watch.ask()
                # Another wait's read may have brought a reading while this one slept: it is this read.
                reading = feed.pending() or await feed.read(ask)
                status, held, hint = watch.took_reading(ask, reading)
                if watch.problem is not None and hooks.on_unreadable is not None:
                    hooks.on_unreadable(watch.problem)
                verdict = verdict_of(status) if status is not None else None
                if verdict is None:
                    watch.nothing_new()
                elif verdict in NEWS:
                    assert status is not None
                    tracing.changed(status.id, status.status.value)
                    await news(status)
                    yield status
                last = watch.last
                if last is not None and last.is_terminal:
                    tracing.finish(last.status.value)
                    return
                watch.check_heartbeat()
                if inbox is not None and mailbox is None and last is not None:
                    mailbox = inbox.subscribe(last.id)
                    # Pushes are the fast path now: a held request would keep a push waiting behind it.
                    watch.long_polling = False
                if watch.ask_again_at_once(held, verdict):
                    continue
                delay = watch.next_delay(hint, mailbox is not None, feed.draw)
                if mailbox is None:
                    await sleep(delay)
                    continue
                # Until the next poll is due, take pushes as they come: each may end the wait at once.
                poll_at = clock.monotonic() + delay
                while (left := poll_at - clock.monotonic()) > 0:
                    for pushed, delivery_id in await mailbox.wait(left):
                        if verdict_of(pushed, delivery_id) in NEWS:
                            tracing.changed(pushed.id, pushed.status.value)
                            await news(pushed)
                            yield pushed
                            if pushed.is_terminal:
                                tracing.finish(pushed.status.value)
                                return
        except BaseException as exc:
            tracing.finish(type(exc).__name__)
            raise
        finally:
            if mailbox is not None and inbox is not None:
                inbox.unsubscribe(mailbox)


def outcome(status: RunStatus, policy: Policy | None = None) -> RunStatus:
    """The terminal status if it counts as success under the policy; else the typed outcome, raised."""
    state = status.status
    # The remote's words end up in logs and on terminals wherever the exception is shown: made inert here.
    detail = f": {inert(status.error_message)}" if status.error_message else ""
    run = inert(status.id)
    if state is State.SUCCEEDED:
        return status
    if state is State.PARTIAL_SUCCESS:
        rule = (policy or Policy()).partial_success
        if rule == "succeed":
            return status
        if rule == "fail":
            raise RunFailed(f"run {run} only partly succeeded{detail}", status)
        raise RunPartiallySucceeded(f"run {run} partly succeeded{detail}", status)
    if state is State.FAILED:
        raise RunFailed(f"run {run} failed{detail or f' ({inert(str(status.raw_status))})'}", status)
    if state is State.CANCELLED:
        raise RunCancelled(f"run {run} was cancelled{detail}", status)
    if state is State.TIMED_OUT:
        raise RunTimedOut(f"run {run} was timed out by the remote{detail}", status)
    raise ValueError(f"run {run} is not terminal ({state.value})")


async def wait_for_run(
    api: RunApi,
    run: str | StartedRun,
    *,
    policy: Policy | None = None,
    deadline: float | None = None,
    inbox: WebhookInbox | None = None,
    hooks: Hooks = NO_HOOKS,
    trace: Mapping[str, str] | None = None,
) -> RunStatus:
    """Wait until the run ends; return its terminal status if it succeeded, else raise the typed outcome.

    The arguments are `watch_run`'s; so are the exceptions, with the run's own outcome (RunFailed,
    RunCancelled, RunTimedOut, RunPartiallySucceeded) once it ends.
    """
    last: RunStatus | None = None
    async for status in watch_run(
        api, run, policy=policy, deadline=deadline, inbox=inbox, hooks=hooks, trace=trace
    ):
        last = status
    assert last is not None  # watch_run ends only on a terminal status
    return outcome(last, policy)


def wait_for_run_sync(
    api: RunApi,
    run: str | StartedRun,
    *,
    policy: Policy | None = None,
    deadline: float | None = None,
    hooks: Hooks = NO_HOOKS,
    trace: Mapping[str, str] | None = None,
) -> RunStatus:
    """The blocking twin of `wait_for_run`, for sync callers (an Airflow poke, a script)."""
    return run_sync(wait_for_run(api, run, policy=policy, deadline=deadline, hooks=hooks, trace=trace))


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
