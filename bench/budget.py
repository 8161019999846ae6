"""Three processes sharing one request budget (RedisBudget): requests per second at the server against it.

`.venv/core/bin/python bench/budget.py [--rates 10,50,100] [--waits 10] [--seconds 5]`

Starts a Redis from the system package (as the tests do, tests/redis_server.py) and a reference server
in this process, then for each budget three OS processes (tests/core/_budget_child.py), each with `--waits`
waits polling every 100 ms, so that they ask far more than the budget allows. The rate is counted at the
server over `--seconds` once every wait polls; the first row has no budget, for comparison. Prints a
Markdown table (the figures in docs/shared-reads.md, "Request budget across processes").
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the Redis server of the tests

from redis import Redis  # noqa: E402
from redis_server import RedisServer  # noqa: E402

from runwatch.server import ReferenceServer  # noqa: E402

CHILD = ROOT / "tests" / "core" / "_budget_child.py"
PROCESSES = 3
INTERVAL = 0.1


def measure(
    server: ReferenceServer, redis_url: str, rate: float, waits: int, seconds: float
) -> dict[str, Any]:
    """Requests per second at the server while three processes poll through one budget of `rate`."""
    server.reset()
    with Redis.from_url(redis_url) as client:
        client.flushdb()
    burst = max(1, int(rate // 10))
    config = {"redis": redis_url, "base_url": server.url, "rate": rate, "burst": burst, "interval": INTERVAL}
    procs = [
        subprocess.Popen(
            [sys.executable, str(CHILD)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(PROCESSES)
    ]
    try:
        ids: list[list[str]] = []
        for proc in procs:
            assert proc.stdin is not None and proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
            runs = [
                server.create_run(script=[{"status": "RUNNING", "for": 600}, {"status": "SUCCEEDED"}])
                for _ in range(waits)
            ]
            ids.append([run["id"] for run in runs])
            proc.stdin.write(json.dumps({"config": config, "urls": [run["url"] for run in runs]}) + "\n")
            proc.stdin.flush()
        every = [run_id for own in ids for run_id in own]
        deadline = time.monotonic() + 120
        while any(server.stats()["runs"][run_id]["GET"] == 0 for run_id in every):
            if time.monotonic() > deadline:
                raise TimeoutError("the waits did not all start polling within 120 s")
            time.sleep(0.05)
        together = _rate(server, every, seconds)
        for proc in procs[1:]:  # the other two die: the survivor should get the whole budget
            proc.kill()
            proc.wait(30)
        survivor = _rate(server, ids[0], seconds)
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(30)
    return {"rate": rate, "burst": burst, "together": together, "survivor": survivor}


def _rate(server: ReferenceServer, run_ids: list[str], seconds: float) -> float:
    """GETs per second the server answered for these runs over a window of `seconds`."""

    def gets() -> int:
        runs = server.stats()["runs"]
        return sum(runs[run_id]["GET"] for run_id in run_ids)

    start, before = time.monotonic(), gets()
    time.sleep(seconds)
    return (gets() - before) / (time.monotonic() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="bench/budget.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rates", default="10,50,100", help="budgets to measure, requests/s (comma list)")
    parser.add_argument("--waits", type=int, default=10, help="waits per process (default 10)")
    parser.add_argument("--seconds", type=float, default=5.0, help="measuring window per budget (default 5)")
    args = parser.parse_args()
    rates = [0.0] + [float(r) for r in args.rates.split(",") if r.strip()]
    store = RedisServer().start()
    server = ReferenceServer().start()
    try:
        rows = [measure(server, store.url, rate, args.waits, args.seconds) for rate in rates]
    finally:
        server.stop()
        store.stop()
    asked = PROCESSES * args.waits / INTERVAL
    print(
        f"{PROCESSES} processes x {args.waits} waits polling every {INTERVAL * 1000:.0f} ms "
        f"(they ask ~{asked:,.0f} requests/s); {args.seconds:g} s windows; "
        f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs\n"
    )
    print("| budget (requests/s) | 3 processes (requests/s) | / budget | 1 survivor of 3 | / budget |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for row in rows:
        rate = row["rate"]
        name = f"{rate:g}, burst {row['burst']}" if rate else "none"
        ratios = [f"{row[k] / rate:.2f}" if rate else "-" for k in ("together", "survivor")]
        print(f"| {name} | {row['together']:.1f} | {ratios[0]} | {row['survivor']:.1f} | {ratios[1]} |")


if __name__ == "__main__":
    main()
