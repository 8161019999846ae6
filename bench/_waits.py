"""Many waits on one API, in a process of its own: requests per run, detection latency, a 429 storm.

Run by run.py as `python bench/_waits.py` with a JSON spec on stdin; prints one JSON result on stdout.
Every pattern runs at the same time in one event loop, as triggers share a triggerer's loop; requests are
counted by the server, per run.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from _measure import LoopProbe, percentile, pin_to_cpu
from _patterns import PATTERNS, Outcome, Pattern
from _server import create_runs, run_counters, set_faults

STORM_PATTERNS = ("naive-1s", "airflow-http-sensor", "airflow-databricks", "runwatch-1s", "runwatch")


def _run_id(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[1]


async def _start(
    patterns: list[Pattern], urls: dict[str, list[str]]
) -> dict[str, list[asyncio.Task[Outcome]]]:
    """Start every wait; a pattern's waits start spread over one second, so their phases against the runs'
    changes are spread too (as with runs that were not all started at the same instant)."""
    for pattern in patterns:
        await pattern.open()
    loop = asyncio.get_running_loop()

    async def staggered(pattern: Pattern, url: str, delay: float) -> Outcome:
        await asyncio.sleep(delay)
        return await pattern.wait(url)

    return {
        p.name: [
            loop.create_task(staggered(p, url, i / len(urls[p.name]))) for i, url in enumerate(urls[p.name])
        ]
        for p in patterns
    }


async def _stop(patterns: list[Pattern], tasks: dict[str, list[asyncio.Task[Outcome]]]) -> None:
    every = [task for group in tasks.values() for task in group]
    for task in every:
        task.cancel()
    await asyncio.gather(*every, return_exceptions=True)
    for pattern in patterns:
        await pattern.close()


def _failure(task: asyncio.Task[Outcome]) -> str | None:
    if not task.done() or task.cancelled():
        return None
    exc = task.exception()
    return None if exc is None else f"{type(exc).__name__}: {exc}"[:160]


async def lifecycle(spec: dict[str, Any]) -> dict[str, Any]:
    """Runs of a fixed length, every pattern on its own runs: requests per run and detection latency."""
    server, length, per = spec["server"], spec["run_length"], spec["runs_per_pattern"]
    script = [
        {"status": "QUEUED", "for": 1.0},
        {"status": "RUNNING", "for": length - 1.0},
        {"status": "SUCCEEDED"},
    ]
    patterns = [cls() for cls in PATTERNS.values()]
    body = {"script": script}
    urls = {p.name: await asyncio.to_thread(create_runs, server, per, body) for p in patterns}
    tasks = await _start(patterns, urls)
    every = [task for group in tasks.values() for task in group]
    await asyncio.wait(every, timeout=spec["deadline"])
    counters = await asyncio.to_thread(run_counters, server)
    results = {}
    for pattern in patterns:
        group = tasks[pattern.name]
        outcomes = [t.result() for t in group if t.done() and not t.cancelled() and t.exception() is None]
        latencies = [o.detected_at - o.ended_at for o in outcomes if o.ended_at is not None]
        requests = [counters[_run_id(url)]["GET"] for url in urls[pattern.name]]
        results[pattern.name] = {
            "title": pattern.title,
            "waits": len(group),
            "detected": len(outcomes),
            "failures": [f for f in map(_failure, group) if f],
            "requests_per_run": sum(requests) / len(requests),
            "latency_p50_ms": percentile(latencies, 50) * 1000,
            "latency_max_ms": max(latencies, default=float("nan")) * 1000,
        }
    await _stop(patterns, tasks)
    return {"run_length_s": length, "runs_per_pattern": per, "patterns": results}


async def storm(spec: dict[str, Any]) -> dict[str, Any]:
    """Long runs; after a warm-up the server answers every GET with 429 + Retry-After for `storm` seconds."""
    server, per = spec["server"], spec["runs_per_pattern"]
    warm, length, after, retry_after = spec["warm_up"], spec["storm"], spec["after"], spec["retry_after"]
    patterns = [PATTERNS[name]() for name in STORM_PATTERNS]
    body = {"script": [{"status": "RUNNING", "for": 3600}, {"status": "SUCCEEDED"}]}
    urls = {p.name: await asyncio.to_thread(create_runs, server, per, body) for p in patterns}
    probe = LoopProbe()
    tasks = await _start(patterns, urls)
    await asyncio.sleep(warm)
    before = await asyncio.to_thread(run_counters, server)
    await asyncio.to_thread(set_faults, server, {"rate_limit": {"every": 1, "retry_after": retry_after}})
    probe.start()
    await asyncio.sleep(length)
    await asyncio.to_thread(set_faults, server, None)
    during = await asyncio.to_thread(run_counters, server)
    await probe.stop()
    await asyncio.sleep(after)
    later = await asyncio.to_thread(run_counters, server)
    results = {}
    for pattern in patterns:
        ids = [_run_id(url) for url in urls[pattern.name]]
        sent = sum(during[i]["GET"] - before[i]["GET"] for i in ids)
        rejected = sum(during[i]["429"] - before[i]["429"] for i in ids)
        resumed = sum(later[i]["GET"] > during[i]["GET"] for i in ids)
        failures = [f for f in map(_failure, tasks[pattern.name]) if f]
        results[pattern.name] = {
            "title": pattern.title,
            "waits": per,
            "requests_per_wait": sent / per,
            "rejected_per_wait": rejected / per,
            "failed": len(failures),
            "failure": failures[0] if failures else None,
            "resumed": resumed,
        }
    await _stop(patterns, tasks)
    return {
        "storm_s": length,
        "retry_after_s": retry_after,
        "runs_per_pattern": per,
        "lag_p99_ms": probe.lag_ms(99),
        "lag_max_ms": probe.lag_ms(),
        "patterns": results,
    }


async def main_async(spec: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "lifecycle" in spec["phases"]:
        out["lifecycle"] = await lifecycle({**spec, **spec["lifecycle"]})
    if "storm" in spec["phases"]:
        out["storm"] = await storm({**spec, **spec["storm"]})
    return out


def main() -> None:
    spec = json.load(sys.stdin)
    pin_to_cpu(spec.get("cpu"))
    json.dump(asyncio.run(main_async(spec)), sys.stdout)


if __name__ == "__main__":
    main()
