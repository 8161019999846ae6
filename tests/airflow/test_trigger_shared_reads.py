"""Triggers in one triggerer loop on one run share its read (the core's shared reads, docs/shared-reads.md)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from runwatch.server import ReferenceServer
from runwatch_airflow.triggers.runwatch import RunStatusTrigger

PACE = {"interval": 0.1, "max_interval": 0.1, "jitter": False}


async def test_fifty_triggers_on_one_run_cost_about_the_reads_of_one(
    runwatch_server: ReferenceServer, connection: Callable[..., str]
) -> None:
    connection(host=runwatch_server.url)
    script = [{"status": "RUNNING", "for": 2.0}, {"status": "SUCCEEDED"}]
    alone, shared = (runwatch_server.create_run(script=script)["id"] for _ in range(2))

    async def final(run: str) -> str:
        events = [event async for event in RunStatusTrigger(run=run, policy=PACE).run()]
        assert len(events) == 1
        return str(events[0].payload["status"])

    outcomes = await asyncio.gather(final(alone), *(final(shared) for _ in range(50)))
    assert set(outcomes) == {"success"}
    runs = runwatch_server.stats()["runs"]
    assert runs[alone]["GET"] >= 8  # about 2 s at 0.1 s, less the triggers start-up
    # A trigger reads on its own when it is alone on its run; fifty on one run share one read a tick.
    assert runs[shared]["GET"] <= runs[alone]["GET"] + 2, (runs[alone]["GET"], runs[shared]["GET"])
