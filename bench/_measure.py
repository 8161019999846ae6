"""What the bench measures in the client process: CPU, resident memory and event-loop lag."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import resource
import time
from collections.abc import Sequence

__all__ = [
    "LoopProbe",
    "cpu_seconds",
    "percentile",
    "pin_to_cpu",
    "raise_fd_limit",
    "rss_kb",
    "runqueue_wait_s",
]


def cpu_seconds() -> float:
    """CPU time of this process (user + system, every thread)."""
    return time.process_time()


def rss_kb() -> int:
    """Resident set size of this process, in KiB (Linux /proc; ru_maxrss elsewhere)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def runqueue_wait_s() -> float:
    """Seconds this process's main thread has spent ready to run but waiting for a CPU (Linux; else 0).

    On a shared machine this is time other processes took: it shows up as loop lag that is not ours."""
    try:
        with open("/proc/self/schedstat", encoding="ascii") as stat:
            return int(stat.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def raise_fd_limit(wanted: int) -> tuple[int, int]:
    """Raise the soft open-files limit towards `wanted` (never past the hard limit): (soft, hard) after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def pin_to_cpu(cpu: int | None) -> None:
    """Keep this process on one CPU, so that client and server do not trade places (no-op if unsupported)."""
    if cpu is None or not hasattr(os, "sched_setaffinity"):
        return
    try:
        if cpu in os.sched_getaffinity(0):
            os.sched_setaffinity(0, {cpu})
    except OSError:
        pass


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by nearest rank; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered) / 100 - 1e-9))
    return ordered[min(rank, len(ordered)) - 1]


class LoopProbe:
    """A ticker task: how late each 50 ms tick fires (loop lag), and the peak RSS seen every few ticks."""

    def __init__(self, period: float = 0.05, rss_every: int = 10) -> None:
        self.period, self.rss_every = period, rss_every
        self.ticks: list[tuple[float, float]] = []  # (loop time the tick was due from, lag in seconds)
        self.peak_rss_kb = rss_kb()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._tick())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.peak_rss_kb = max(self.peak_rss_kb, rss_kb())

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        count = 0
        while True:
            before = loop.time()
            await asyncio.sleep(self.period)
            self.ticks.append((before, max(0.0, loop.time() - before - self.period)))
            count += 1
            if count % self.rss_every == 0:
                self.peak_rss_kb = max(self.peak_rss_kb, rss_kb())

    def lag_ms(self, q: float | None = None, since: float = -math.inf, until: float = math.inf) -> float:
        """Lag percentile `q` (the worst lag when q is None) in ms, of the ticks between since and until."""
        lags = [lag for when, lag in self.ticks if since <= when < until]
        if not lags:
            return math.nan
        return (max(lags) if q is None else percentile(lags, q)) * 1000
