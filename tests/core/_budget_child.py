"""One OS process of the shared-budget tests and bench: waits on runs through one `RedisBudget`.

`python _budget_child.py '<config JSON>'`: prints `ready` once imported, then reads one line from stdin (the
go signal: a JSON list of status URLs), waits on all of them at once and prints a JSON list of outcomes in
the same order (the terminal state's name, or the exception's class name). A rate of 0 means no budget.
"""

from __future__ import annotations

import asyncio
import json
import sys

from runwatch import Policy, RedisBudget, RunApi, WaitOutcome, wait_for_run


async def main(config: dict[str, float | str]) -> list[str]:
    print("ready", flush=True)
    urls: list[str] = json.loads(sys.stdin.readline())
    rate = float(config["rate"])  # 0: no budget (the bench's comparison)
    budget = RedisBudget(str(config["redis"]), rate=rate, burst=int(config["burst"])) if rate else None
    api = RunApi(str(config["base_url"]), budget=budget)
    interval = float(config["interval"])
    # A fixed, fast pace: every wait would poll far above the budget if the budget did not hold it back.
    policy = Policy(
        interval=interval, max_interval=interval, jitter=False, timeout=120, unavailable_after=120
    )

    async def one(url: str) -> str:
        try:
            status = await wait_for_run(api, url, policy=policy)
        except WaitOutcome as exc:
            return type(exc).__name__
        return status.status.value

    try:
        return list(await asyncio.gather(*(one(url) for url in urls)))
    finally:
        if budget is not None:
            await budget.aclose()


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(json.loads(sys.argv[1])))), flush=True)
