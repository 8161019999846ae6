"""Many waits, one process: 200 wait_for_run tasks gathered in one async flow share one loop and one pool."""

from __future__ import annotations

import asyncio
import time

import pytest
from prefect import flow
from prefect_harness import FAST

from prefect_runwatch import RunStatusApi, wait_for_run
from runwatch.server import ReferenceServer

WAITS = 200
RUN_SECONDS = 5.0


@pytest.mark.slow
async def test_200_concurrent_waits_take_about_one_run(api: RunStatusApi, server: ReferenceServer) -> None:
    script = [{"status": "RUNNING", "for": RUN_SECONDS}, {"status": "SUCCEEDED"}]
    begun = time.monotonic()
    runs = [server.create_run(script=script)["id"] for _ in range(WAITS)]

    @flow
    async def fan_out() -> list[dict[str, object]]:
        return await asyncio.gather(*(wait_for_run(run, api, {**FAST, "max_interval": 1.0}) for run in runs))

    statuses = await fan_out()
    wall = time.monotonic() - begun
    stats = server.stats()
    print(f"\n{WAITS} waits on {RUN_SECONDS:g} s runs: {wall:.1f} s wall, {stats['connections']} connections")
    assert [s["status"] for s in statuses] == ["SUCCEEDED"] * WAITS
    assert wall < WAITS * RUN_SECONDS / 5  # serial waiting would take WAITS * RUN_SECONDS
    assert stats["connections"] < WAITS  # one shared pool, not a client per wait
