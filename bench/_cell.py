"""One cell of the transport bench, in a process of its own: N concurrent waits of one subject.

Run by run.py as `python bench/_cell.py` with a JSON spec on stdin; prints one JSON result on stdout.
A fresh process per cell keeps the RSS and CPU figures of one subject free of the others' leftovers.

The window: the waits start spread evenly over one interval (as triggers arrive), settle for one more, then
CPU, GC time, requests served and loop lag are measured over `duration` seconds of steady polling. RSS is
the peak growth over the whole window. Waits still busy at the end are cancelled (`unfinished`), so a
subject that falls behind cannot stretch the bench.
"""

from __future__ import annotations

import asyncio
import cProfile
import gc
import json
import sys
import threading
import time
from typing import Any

from _clients import SUBJECTS, Subject
from _measure import LoopProbe, cpu_seconds, pin_to_cpu, raise_fd_limit, rss_kb, runqueue_wait_s
from _server import requests_served

SPAWN_STEPS = 100  # the waits start in this many batches over the first interval


class GcClock:
    """The cyclic garbage collector's cost (gc.callbacks): CPU in every pass, and each full pass's pause."""

    def __init__(self) -> None:
        self.total = 0.0  # CPU seconds, comparable with the CPU per poll
        self.full: list[float] = []  # wall seconds of each generation-2 pass: the loop stalls that long
        self._began = (0.0, 0.0)

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._began = (time.process_time(), time.perf_counter())
            return
        self.total += time.process_time() - self._began[0]
        if info.get("generation") == 2:
            self.full.append(time.perf_counter() - self._began[1])


async def _warm_up(subject: Subject, url: str) -> None:
    """One poll through a throwaway instance, so lazy imports and first-use caches are not measured."""
    warm = type(subject)()
    await warm.open()
    try:
        await warm.poll(url)
    finally:
        await warm.close()


class Mark:
    """CPU, GC time and the server's request count at one instant (the count is asked from a thread, so
    that it is taken then even when the loop is saturated)."""

    def __init__(self, server: str, gc_clock: GcClock) -> None:
        self.cpu, self.runqueue = cpu_seconds(), runqueue_wait_s()
        self.gc_total, self.gc_full = gc_clock.total, len(gc_clock.full)
        self._served: list[int] = []
        self._thread = threading.Thread(target=lambda: self._served.append(requests_served(server)))
        self._thread.start()

    @property
    def served(self) -> int:
        self._thread.join()
        return self._served[0]


async def _window(subject: Subject, urls: list[str], spec: dict[str, Any]) -> dict[str, Any]:
    """Ramp (the waits start over one interval), settle (one interval), then `duration` s measured."""
    loop = asyncio.get_running_loop()
    interval, duration, server = spec["interval"], spec["duration"], spec["server"]
    n = len(urls)
    probe, gc_clock = LoopProbe(), GcClock()
    profiler = cProfile.Profile(time.process_time) if spec.get("profile") else None
    tasks: list[asyncio.Task[None]] = []

    gc.collect()
    rss0, objects0 = rss_kb(), len(gc.get_objects())
    gc.callbacks.append(gc_clock)
    t0 = loop.time()
    steady, end = t0 + 2 * interval, t0 + 2 * interval + duration
    probe.start()
    await subject.open()

    async def spawn() -> None:
        for step in range(SPAWN_STEPS):
            for i in range(step * n // SPAWN_STEPS, (step + 1) * n // SPAWN_STEPS):
                tasks.append(loop.create_task(subject.wait(urls[i], interval, end)))
            await asyncio.sleep(interval / SPAWN_STEPS)

    spawner = loop.create_task(spawn())
    await asyncio.sleep(max(0.0, steady - loop.time()))
    if profiler is not None:
        profiler.enable()
    start = Mark(server, gc_clock)
    await asyncio.sleep(max(0.0, end - loop.time()))
    stop = Mark(server, gc_clock)
    if profiler is not None:
        profiler.disable()
    await probe.stop()
    gc.callbacks.remove(gc_clock)
    objects = len(gc.get_objects()) - objects0  # what the cyclic GC must walk, per live wait
    unfinished = sum(not task.done() for task in tasks)
    for task in [spawner, *tasks]:
        task.cancel()
    await asyncio.gather(spawner, *tasks, return_exceptions=True)
    await subject.close()
    full = gc_clock.full[start.gc_full : stop.gc_full]
    result = {
        "cpu_s": stop.cpu - start.cpu,
        "runqueue_s": stop.runqueue - start.runqueue,
        "served": stop.served - start.served,
        "asked": round(n * duration / interval),
        "rss_growth_kb": probe.peak_rss_kb - rss0,
        "rss_base_kb": rss0,
        "lag_p99_ms": probe.lag_ms(99, since=steady),
        "lag_max_ms": probe.lag_ms(since=steady),
        "ramp_lag_max_ms": probe.lag_ms(until=steady),
        "gc_s": stop.gc_total - start.gc_total,
        "gc_full_count": len(full),
        "gc_full_max_ms": max(full, default=0.0) * 1000,
        "gc_objects_per_wait": objects / n,
        "unfinished": unfinished,
    }
    if profiler is not None:
        result["profile"] = _summary(profiler)
    return result


def _where(filename: str) -> str:
    """Group a profiled function by where it lives: a runwatch module, a package, the stdlib, C builtins."""
    if filename == "~":
        return "C builtins (sockets, epoll, json, ...)"
    parts = filename.replace("\\", "/").split("/")
    if "runwatch" in parts:
        return "runwatch/" + "/".join(parts[parts.index("runwatch") + 1 :])
    if "site-packages" in parts:
        return parts[parts.index("site-packages") + 1].removesuffix(".py")
    if "bench" in parts:
        return "bench harness"
    if len(parts) > 1 and parts[-2] in ("asyncio", "json", "email", "concurrent"):
        return f"stdlib {parts[-2]}"
    return f"stdlib {parts[-1].removesuffix('.py')}"


def _summary(profiler: cProfile.Profile) -> dict[str, Any]:
    import pstats

    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    groups: dict[str, float] = {}
    functions = []
    for (filename, line, func), (_cc, calls, own, cumulative, _callers) in stats.items():
        groups[_where(filename)] = groups.get(_where(filename), 0.0) + own
        short = func if filename == "~" else f"{_where(filename)}:{line} {func}"
        functions.append((short, calls, own, cumulative))
    functions.sort(key=lambda f: f[2], reverse=True)
    return {
        "groups": sorted(groups.items(), key=lambda g: g[1], reverse=True),
        "functions": functions[:40],
    }


def main() -> None:
    spec = json.load(sys.stdin)
    pin_to_cpu(spec.get("cpu"))
    soft, hard = raise_fd_limit(len(spec["urls"]) + 1000)
    subject = SUBJECTS[spec["subject"]]()
    urls: list[str] = spec["urls"]
    asyncio.run(_warm_up(subject, urls[0]))
    result = asyncio.run(_window(subject, urls, spec))
    result.update(
        subject=subject.name,
        n=len(urls),
        errors=subject.errors,
        first_error=subject.first_error,
        fd_limit=[soft, hard],
    )
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
