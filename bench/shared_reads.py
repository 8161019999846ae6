"""Shared and batched reads (issue 10), side by side with single reads in the same run.

`.venv/core/bin/python bench/shared_reads.py [--section one-run,many,moonshot] [--waits 10000] ...`

Sections:
  one-run   200 waits on one run: requests of the shared read, of one wait alone, and of 200 waits that
            each read on their own (RunApi(reads="own"): how every wait read before).
  many      N waits on N runs of one API in one loop at a fixed pace (default 10,000 at 5 s), batched
            (RunApi(reads="batched"), the standard profile's `GET /runs?ids=`, 100 a page) then single reads
            (default 1,000 waits: 10,000 single reads at 5 s would measure the server, not the client):
            requests per pace interval, client CPU per watched run-minute, loop lag, peak RSS.
  moonshot  100,000 batched waits in one process at a 30 s pace: CPU share of one core, peak RSS, lag.

The reference server runs in another process (bench/_serve.py), so client CPU is the client's alone. Every
wait is bounded (the runs end, or the window closes and the waits are cancelled). Prints one JSON object per
section, then a Markdown table; the figures go to docs/shared-reads.md by hand, with the load average.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import Any

from _measure import LoopProbe, cpu_seconds, raise_fd_limit, runqueue_wait_s
from _report import load_average
from _server import BenchServer, _call, create_runs

from runwatch import Policy, RunApi, wait_for_run


def _stats(base: str) -> dict[str, Any]:
    stats: dict[str, Any] = _call(base, "GET", "/_control/stats")
    return stats


def _requests(base: str) -> tuple[int, int, int]:
    """(all requests served, batch requests among them, runs read: one a single read, each listed run of a
    batch), control calls excluded."""
    stats = _stats(base)
    batch = stats["batch"]
    singles = int(stats["requests_total"]) - int(batch["requests"])
    return int(stats["requests_total"]), int(batch["requests"]), singles + int(batch["runs"])


def _ids(urls: list[str]) -> list[str]:
    return [url.rstrip("/").rsplit("/", 1)[1] for url in urls]


# ------------------------------------------------------------------------------------------------ one run


def one_run(base: str, waits: int, seconds: float, pace: float) -> dict[str, Any]:
    """`waits` waits on one run for `seconds`, shared; one wait alone; `waits` waits reading on their own."""
    script = {"script": [{"status": "RUNNING", "for": seconds}, {"status": "SUCCEEDED"}]}
    policy = Policy(interval=pace, max_interval=pace * 4)  # the default jittered backoff, at a bench's pace

    shared_run, alone_run, own_run = _ids(create_runs(base, 3, script))

    async def main() -> dict[str, int]:
        shared, own = RunApi(base), RunApi(base, reads="own")
        await asyncio.gather(
            *(wait_for_run(shared, shared_run, policy=policy) for _ in range(waits)),
            wait_for_run(own, alone_run, policy=policy),
            *(wait_for_run(own, own_run, policy=policy) for _ in range(waits)),
        )
        runs = _stats(base)["runs"]
        return {
            "shared": runs[shared_run]["GET"],
            "one wait": runs[alone_run]["GET"],
            "own reads": runs[own_run]["GET"],
        }

    requests = asyncio.run(main())
    return {"section": "one-run", "waits": waits, "seconds": seconds, "pace": pace, "requests": requests}


# ---------------------------------------------------------------------------------------------- many runs


async def _watch_many(
    base: str, run_ids: list[str], reads: str, pace: float, warmup: float, window: float
) -> dict[str, Any]:
    """Wait on every run; measure the window after the warmup: requests, CPU, lag, RSS; then cancel."""
    api = RunApi(base, reads=reads, max_connections=100)  # type: ignore[arg-type]
    policy = Policy(interval=pace, max_interval=pace, jitter=False, request_timeout=60)
    probe = LoopProbe()
    probe.start()
    loop = asyncio.get_running_loop()
    tasks = []
    for i, run_id in enumerate(run_ids):
        tasks.append(loop.create_task(wait_for_run(api, run_id, policy=policy)))
        if i % 1000 == 999:
            await asyncio.sleep(0)  # let the first ones start: a triggerer does not get all at once
    await asyncio.sleep(warmup)
    requests0, batch0, reads0 = await loop.run_in_executor(None, _requests, base)
    ended0 = sum(task.done() for task in tasks)
    cpu0, queued0, began = cpu_seconds(), runqueue_wait_s(), loop.time()
    await asyncio.sleep(window)
    cpu1, queued1, ended = cpu_seconds(), runqueue_wait_s(), loop.time()
    requests1, batch1, reads1 = await loop.run_in_executor(None, _requests, base)
    ended1 = sum(task.done() for task in tasks)
    failed = [t for t in tasks if t.done() and t.exception() is not None]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await probe.stop()
    intervals = (ended - began) / pace
    cpu = cpu1 - cpu0
    run_minutes = len(run_ids) * (ended - began) / 60
    return {
        "reads": reads,
        "waits": len(run_ids),
        "requests per interval": round((requests1 - requests0) / intervals, 1),
        "batch requests per interval": round((batch1 - batch0) / intervals, 1),
        "runs ended per interval": round((ended1 - ended0) / intervals, 1),
        "client CPU s": round(cpu, 2),
        "CPU share of a core": round(cpu / (ended - began), 3),
        "CPU us per run-minute": round(cpu / run_minutes * 1e6, 1),
        "run reads per interval": round((reads1 - reads0) / intervals, 1),
        "CPU us per run read": round(cpu / max(1, reads1 - reads0) * 1e6, 1),
        "run queue wait s": round(queued1 - queued0, 2),
        "lag p99 ms": round(probe.lag_ms(99, began, ended), 1),
        "lag max ms": round(probe.lag_ms(None, began, ended), 1),
        "peak RSS MB": round(probe.peak_rss_kb / 1024, 1),
        "failed": [f"{type(t.exception()).__name__}: {t.exception()}"[:120] for t in failed[:3]],
    }


def _runs(base: str, count: int, pace: float, warmup: float, window: float, ending: float) -> list[str]:
    """`count` runs that run past the window, but for a share `ending` that end inside it."""
    long = {"script": [{"status": "RUNNING", "for": warmup + window + 600}, {"status": "SUCCEEDED"}]}
    ends = int(count * ending)
    urls = create_runs(base, count - ends, long, concurrency=32)
    for i in range(ends):  # spread over the window
        at = warmup + window * (i + 0.5) / max(1, ends)
        urls += create_runs(base, 1, {"script": [{"status": "RUNNING", "for": at}, {"status": "SUCCEEDED"}]})
    return _ids(urls)


def many(base: str, batched: int, single: int, pace: float, warmup: float, window: float) -> dict[str, Any]:
    out: dict[str, Any] = {"section": "many", "pace": pace, "window": window, "load": load_average()}
    for reads, count in (("batched", batched), ("own", single)):
        run_ids = _runs(base, count, pace, warmup, window, ending=0.01)
        out[reads] = asyncio.run(_watch_many(base, run_ids, reads, pace, warmup, window))
        out[reads]["load"] = load_average()
        _call(base, "POST", "/_control/reset")
    for figure in ("CPU us per run-minute", "CPU us per run read"):
        b, s = out["batched"][figure], out["own"][figure]
        out[f"ratio of {figure} (single / batched)"] = round(s / b, 1) if b else None
    return out


def moonshot(base: str, waits: int, pace: float, warmup: float, window: float) -> dict[str, Any]:
    run_ids = _runs(base, waits, pace, warmup, window, ending=0.001)
    result = asyncio.run(_watch_many(base, run_ids, "batched", pace, warmup, window))
    return {"section": "moonshot", "pace": pace, "window": window, "load": load_average(), **result}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--section", default="one-run,many", help="of one-run,many,moonshot")
    parser.add_argument("--waits", type=int, default=10_000, help="batched waits in 'many'")
    parser.add_argument("--single", type=int, default=1_000, help="single-read waits in 'many'")
    parser.add_argument("--pace", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=15.0, help="seconds before the measured window")
    parser.add_argument("--window", type=float, default=30.0, help="measured seconds in 'many'")
    parser.add_argument("--moonshot-waits", type=int, default=100_000)
    parser.add_argument("--moonshot-window", type=float, default=90.0)
    args = parser.parse_args(argv)
    raise_fd_limit(65536)
    sections = args.section.split(",")
    with BenchServer("reference") as server:
        if "one-run" in sections:
            print(json.dumps(one_run(server.url, 200, 10.0, 1.0)), flush=True)
            _call(server.url, "POST", "/_control/reset")
        if "many" in sections:
            print(
                json.dumps(many(server.url, args.waits, args.single, args.pace, args.warmup, args.window)),
                flush=True,
            )
            _call(server.url, "POST", "/_control/reset")
        if "moonshot" in sections:
            result = moonshot(server.url, args.moonshot_waits, 30.0, 60.0, args.moonshot_window)
            print(json.dumps(result), flush=True)
    print(f"pid {os.getpid()} done at {time.strftime('%H:%M:%S')}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
