"""One OS process of the shared-budget tests and bench: waits on runs through one `RedisBudget`.

`python _budget_child.py`: prints `ready` once imported, then for each line on stdin (a JSON object: the
`config` of the round and the status `urls` to wait on) waits on all of those runs at once and prints a JSON
list of outcomes in the same order (the terminal state's name, or the exception's class name). A process
serves many rounds, so the tests pay for starting Python once. A rate of 0 means no budget.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from runwatch import Policy, RedisBudget, RunApi, WaitOutcome, wait_for_run


async def wait_all(config: dict[str, Any], urls: list[str]) -> list[str]:
    rate = float(config["rate"])
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


def main() -> None:
    print("ready", flush=True)
    for line in sys.stdin:
        round_ = json.loads(line)
        print(json.dumps(asyncio.run(wait_all(round_["config"], round_["urls"]))), flush=True)


if __name__ == "__main__":
    main()
