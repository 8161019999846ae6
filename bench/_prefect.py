"""The Prefect cell: N concurrent `wait_for_run` tasks in one flow run, in this process (.venv/prefect).

`python bench/_prefect.py OUT.json < spec.json`. A real Prefect server (prefect_test_harness: Prefect's
own server in a subprocess, SQLite in a temporary PREFECT_HOME) and the bench's reference server (another
process) are the two servers; this process is the flow run's. The N remote runs are made just before the
flow starts, each RUNNING for `run_length` seconds; the flow gathers N `wait_for_run` tasks (fixed polling
at `interval` s, so that the polling itself adds at most one interval). Measured: wall time of the flow
call, this process's CPU over it, peak RSS, the most threads seen (sampled every 0.1 s), requests served.
When run under py-spy (run.py does it for the profile), the figures are those of the profiled run.
"""

from __future__ import annotations

import json
import resource
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from _prefect_env import isolate

T = TypeVar("T")

isolate()  # before Prefect is imported (below, in the functions that use it)


def _threads() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return threading.active_count()


def _flow_call(call: Callable[[], T]) -> T:
    """The flow run itself: the profile's summary keeps the main thread's samples under this frame."""
    return call()


def main() -> None:
    spec = json.load(sys.stdin)
    import asyncio

    from _server import create_runs, requests_served
    from prefect import flow
    from prefect.testing.utilities import prefect_test_harness

    from prefect_runwatch import RunStatusApi, wait_for_run

    policy = {"interval": spec["interval"], "backoff": 1, "jitter": False}
    api = RunStatusApi(base_url=spec["server"])
    with prefect_test_harness(server_startup_timeout=120):

        @flow(name="bench-many-waits")
        async def many(runs: list[str]) -> list[str]:
            finals = await asyncio.gather(*(wait_for_run(run, api, policy) for run in runs))
            return [str(f["status"]) for f in finals]

        peak_threads = [_threads()]
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.1):
                peak_threads[0] = max(peak_threads[0], _threads())

        script = {"script": [{"status": "RUNNING", "for": spec["run_length"]}, {"status": "SUCCEEDED"}]}
        made = time.monotonic()
        urls = create_runs(spec["server"], spec["waits"], script)
        served0 = requests_served(spec["server"])
        threading.Thread(target=sample, daemon=True).start()
        cpu0, wall0 = time.process_time(), time.monotonic()
        statuses = _flow_call(lambda: asyncio.run(many([u.rsplit("/", 1)[1] for u in urls])))
        wall, cpu = time.monotonic() - wall0, time.process_time() - cpu0
        done.set()
        served = requests_served(spec["server"]) - served0
    result: dict[str, Any] = {
        "waits": spec["waits"],
        "run_length_s": spec["run_length"],
        "wall_s": wall,
        "since_runs_began_s": wall0 + wall - made,
        "cpu_s": cpu,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_threads": peak_threads[0],
        "served": served,
        "succeeded": statuses.count("SUCCEEDED"),
    }
    with open(sys.argv[1], "w", encoding="utf-8") as out:
        json.dump(result, out)


if __name__ == "__main__":
    main()
