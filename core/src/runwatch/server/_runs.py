"""Runs that follow a script, computed lazily from the clock, and the store that holds them.

A run does no work while nobody looks at it: reading it advances it to "now" (its body is cached until the
next scheduled change, so a hot GET is a clock read and a comparison). A run only gets a timer
(`loop.call_at`, never a task) while someone must hear about its changes as they happen: a long-poll waiter
or a webhook subscription.
"""

from __future__ import annotations

import asyncio
import json
import math
import secrets
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from runwatch.server._faults import FaultCounters, Quota
from runwatch.server._spec import (
    _UNSET,
    ACTIVE_STATES,
    TERMINAL_STATES,
    RunSpec,
    Step,
)

__all__ = ["DEFAULT_EXECUTOR", "Run", "RunCounters", "Snapshot"]

DEFAULT_EXECUTOR = "ref-worker-1"
RUNNING_LIKE = frozenset({"RUNNING", "IN_PROGRESS"})
INF = math.inf

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def default_script(run_id: str) -> list[Step]:
    return [
        Step("QUEUED", 0.1),
        Step("RUNNING", 1.0),
        Step("SUCCEEDED", None, output_ref=f"memory://runwatch/{run_id}/output"),
    ]


def new_run_id() -> str:
    return "r-" + secrets.token_hex(6)


class Snapshot:
    """One version of a run as served: the JSON body and its ETag.

    `news` counts the changes that are news (state, progress, errors, result...): a heartbeat moves the
    version and the ETag but not `news`, so a long poll is not answered for a heartbeat alone.
    """

    __slots__ = ("body", "etag", "news", "status", "terminal", "version")

    def __init__(self, version: int, status: str, body: bytes, news: int = 0) -> None:
        self.version = version
        self.status = status
        self.terminal = status in TERMINAL_STATES
        self.body = body
        self.etag = f'"v{version}"'
        self.news = news


class RunCounters:
    """What the control plane reports per run."""

    __slots__ = (
        *(
            "cancel",
            "drop",
            "get",
            "listed",
            "malformed",
            "not_found",
            "post",
            "s5xx",
            "s304",
            "s403",
            "s429",
        ),
        *("slow", "truncated", "oversized", "etag_lies"),
    )

    def __init__(self) -> None:
        self.get = self.post = self.cancel = self.listed = 0
        self.s304 = self.s403 = self.s429 = self.s5xx = self.not_found = self.drop = self.malformed = 0
        self.slow = self.truncated = self.oversized = self.etag_lies = 0

    def to_dict(self) -> dict[str, int]:
        return {
            "GET": self.get,
            "listed": self.listed,
            "POST": self.post,
            "cancel": self.cancel,
            "304": self.s304,
            "403": self.s403,
            "429": self.s429,
            "5xx": self.s5xx,
            "404": self.not_found,
            "drop": self.drop,
            "malformed": self.malformed,
            "slow": self.slow,
            "truncated": self.truncated,
            "oversized": self.oversized,
            "etag_lies": self.etag_lies,
        }


ChangeHook = Callable[["Run", list[Snapshot], bool], None]


class Run:
    """One scripted run. All methods run on the server's event loop; `now` is `time.monotonic()`."""

    def __init__(self, run_id: str, url: str, spec: RunSpec, now: float, on_change: ChangeHook) -> None:
        self.id = run_id
        self.url = url
        self.spec = spec
        self.counters = RunCounters()
        # traceparent -> how many requests about this run carried it ("" for none): the stats show it
        self.traceparents: Counter[str] = Counter()
        self.fault_counters = FaultCounters()
        self.global_counters = FaultCounters(-1)
        self.quota = Quota(spec.faults.ratelimit_headers) if spec.faults.ratelimit_headers else None
        self.not_found_until = now + spec.not_found_for
        self.collect = False  # webhook subscribers want every change, one by one
        self._on_change = on_change
        self._mono0 = now
        self._wall0 = time.time()
        self._steps: list[Step] = list(spec.script) if spec.script else default_script(run_id)
        self._starts: list[float] = [now]
        for step in self._steps[:-1]:
            self._starts.append(self._starts[-1] + (step.duration or 0.0))
        self._index = -1
        self._frozen = False
        self._cancelled = False
        self._hb_every = spec.heartbeat_every
        self._hb_base: float | None = None
        self._hb_n = 0
        self._hb_cutoff = INF
        # served fields
        self.status = ""
        self.version = 0
        self.news = 0  # steps applied: a heartbeat is not news
        self._updated = now
        self._started: float | None = None
        self._ended: float | None = None
        self._heartbeat: float | None = None
        self._progress: dict[str, Any] | None = None
        self._errors: tuple[dict[str, Any], ...] = ()
        self._output_ref: str | None = None
        self._executor: str | None = None
        # change notification
        self._waiters: set[asyncio.Future[None]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = INF
        self._apply_step(0, now)
        self.snapshot = self._build()
        self.next_change = self._compute_next()

    # ---------------------------------------------------------------------------------------- reading

    def view(self, now: float) -> Snapshot:
        """The run as of `now` (advancing it if a scheduled change has passed)."""
        if now >= self.next_change:
            self.advance(now)
        return self.snapshot

    def advance(self, now: float) -> None:
        changes: list[Snapshot] | None = [] if self.collect else None
        changed = False
        while True:
            t_step = self._next_step_at()
            t_hb = self._next_heartbeat_at()
            if t_hb < t_step:
                if t_hb > now:
                    break
                self._heartbeats(now, t_step, one=changes is not None)
            else:
                if t_step > now:
                    break
                self._apply_step(self._index + 1, t_step)
            changed = True
            if changes is not None:
                changes.append(self._build())
        self.next_change = self._compute_next()
        if not changed:
            return
        self.snapshot = changes[-1] if changes else self._build()
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        if changes:
            self._on_change(self, changes, self.next_change == INF)

    # ---------------------------------------------------------------------------------------- writing

    def cancel(self, now: float, delay: float) -> bool:
        """Ask the run to stop: CANCELLING for `delay` seconds, then CANCELLED. False if already terminal."""
        self.advance(now)
        if self.status in TERMINAL_STATES:
            return False
        if self._cancelled:
            return True
        self._cancelled = True
        self._frozen = False
        keep = self._index + 1
        progress = self._progress
        self._steps = [
            *self._steps[:keep],
            Step("CANCELLING", delay, progress),
            Step("CANCELLED", None, progress),
        ]
        self._starts = [*self._starts[:keep], now, now + delay]
        self.advance(now)
        self.ensure_timer()
        return True

    # ---------------------------------------------------------------------------------------- waiting

    async def wait_change(self, timeout: float) -> None:
        """Return when the run changes or after `timeout` seconds, whichever is first."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.add(waiter)
        handle = loop.call_later(timeout, _resolve, waiter)
        self.ensure_timer()
        try:
            await waiter
        finally:
            handle.cancel()
            self._waiters.discard(waiter)

    def wake_all(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self.stop_timer()

    def ensure_timer(self) -> None:
        """Make sure a timer fires at the next change while someone listens for changes."""
        if not (self._waiters or self.collect) or self.next_change == INF:
            return
        if self._timer is not None and self._timer_at == self.next_change:
            return
        self.stop_timer()
        loop = asyncio.get_running_loop()
        when = self.next_change
        self._timer_at = when
        self._timer = loop.call_at(loop.time() + max(0.0, when - time.monotonic()), self._on_timer, when)

    def stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._timer_at = INF

    def _on_timer(self, when: float) -> None:
        self._timer = None
        self._timer_at = INF
        # A timer may fire a hair early; the change it was set for is due by definition.
        self.advance(max(time.monotonic(), when))
        self.ensure_timer()

    # ---------------------------------------------------------------------------------------- timeline

    def _next_step_at(self) -> float:
        nxt = self._index + 1
        if nxt >= len(self._steps):
            return INF
        if self._frozen and self._steps[nxt].status not in RUNNING_LIKE:
            return INF  # a zombie says RUNNING for ever
        return self._starts[nxt]

    def _next_heartbeat_at(self) -> float:
        if self._hb_base is None or self._hb_every is None:
            return INF
        t = self._hb_base + (self._hb_n + 1) * self._hb_every
        return t if t < self._hb_cutoff else INF

    def _compute_next(self) -> float:
        return min(self._next_step_at(), self._next_heartbeat_at())

    def _heartbeats(self, now: float, t_step: float, *, one: bool) -> None:
        """Stamp the next heartbeat, or (`one=False`) every heartbeat due before `now` at once."""
        base, every = self._hb_base, self._hb_every
        assert base is not None and every is not None
        m = self._hb_n + 1
        if not one:
            bound = min(now, t_step, self._hb_cutoff)
            m = max(m, math.floor((bound - base) / every))

            def due(k: int) -> bool:
                t = base + k * every
                return t <= now and t < t_step and t < self._hb_cutoff

            while m > self._hb_n + 1 and not due(m):
                m -= 1
            while due(m + 1):
                m += 1
        stamp = base + m * every
        self.version += m - self._hb_n
        self._hb_n = m
        self._heartbeat = stamp
        self._updated = stamp

    def _apply_step(self, index: int, t: float) -> None:
        step = self._steps[index]
        self._index = index
        self.status = step.status
        if step.status in RUNNING_LIKE:
            if self._started is None:
                self._started = t
            if self.spec.stop_heartbeat_after is not None and self._hb_cutoff == INF:
                self._hb_cutoff = t + self.spec.stop_heartbeat_after
                if not self._cancelled:
                    self._frozen = True
        if step.status in ACTIVE_STATES and self._started is not None:
            if self._hb_base is None and self._hb_every is not None:
                self._hb_base, self._hb_n = t, 0
                if t < self._hb_cutoff:
                    self._heartbeat = t
        else:
            self._hb_base = None
        self._ended = t if step.status in TERMINAL_STATES else None
        self._progress = step.progress
        self._errors = step.errors
        self._output_ref = step.output_ref
        if step.executor is not _UNSET:
            self._executor = step.executor
        else:
            self._executor = DEFAULT_EXECUTOR if self._started is not None else None
        self.version += 1
        self.news += 1
        self._updated = t

    def _iso(self, t: float | None) -> str | None:
        if t is None:
            return None
        wall = self._wall0 + (t - self._mono0)
        return datetime.fromtimestamp(wall, timezone.utc).isoformat(timespec="microseconds")

    def _build(self) -> Snapshot:
        duration = None
        if self._ended is not None and self._started is not None:
            duration = round(self._ended - self._started, 6)
        body = {
            "id": self.id,
            "status": self.status,
            "created_at": self._iso(self._mono0),
            "updated_at": self._iso(self._updated),
            "started_at": self._iso(self._started),
            "ended_at": self._iso(self._ended),
            "duration": duration,
            "executor": self._executor,
            "progress": self._progress,
            "errors": list(self._errors),
            "output_ref": self._output_ref,
            "heartbeat_at": self._iso(self._heartbeat),
            "version": self.version,
            "url": self.url,
        }
        return Snapshot(self.version, self.status, _dumps(body).encode(), self.news)


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
