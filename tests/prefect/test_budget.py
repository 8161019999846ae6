"""The request budget from a `RunStatusApi` block (budget_url, budget_rate, budget_burst): shared by the waits
of a flow, its URL (with a password) kept secret in the block, the events and the logs.

A real redis-server with a password (tests/redis_server.py) and the reference server, which counts reads.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.events.filters import EventFilter, EventNameFilter
from prefect_harness import eventually
from pydantic import ValidationError
from redis import Redis

import runwatch
from prefect_runwatch import RunStatusApi, wait_for_run
from runwatch.server import ReferenceServer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the Redis server the suites share
from redis_server import RedisServer

PASSWORD = "redis-pw-8c2d41"
FAST = {"interval": 0.05, "max_interval": 0.05, "jitter": False}


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer(password=PASSWORD) as server:
        yield server


@pytest.fixture
def store(redis_server: RedisServer) -> Iterator[Redis]:
    """A client of the (emptied) Redis."""
    with Redis.from_url(redis_server.url) as client:
        client.flushdb()
        yield client


async def _events(prefixes: list[str]) -> list[Any]:
    async with get_client() as client:
        page = await client.read_events(EventFilter(event=EventNameFilter(prefix=prefixes)), limit=50)
    return page.events


async def test_the_waits_of_a_flow_share_the_blocks_budget_and_never_show_its_url(
    server: ReferenceServer,
    redis_server: RedisServer,
    store: Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Two waits polling every 50 ms for about 2 s would read about 80 times; the budget of
    2 requests/s with a burst of 2 allows at most 2 + 2/s over the whole wait, for both together."""
    block = RunStatusApi(
        base_url=server.url,
        token="canary-7f3c9e1d2b4a4c8e9f00d1e2a3b4c5d6",
        budget_url=redis_server.url,
        budget_rate=2,
        budget_burst=2,
    )
    await block.asave("budgeted", overwrite=True)
    runs: list[dict[str, Any]] = []

    @flow
    async def two_waits() -> list[dict[str, Any]]:
        # Made here, not before the flow: a flow run may take more than their 2 s to start on a busy machine.
        script = [{"status": "RUNNING", "for": 2.0}, {"status": "SUCCEEDED"}]
        runs.extend(server.create_run(script=script) for _ in range(2))
        return list(await asyncio.gather(*(wait_for_run(run["id"], "budgeted", FAST) for run in runs)))

    caplog.set_level(logging.DEBUG)
    begun = time.monotonic()
    finals = await asyncio.wait_for(two_waits(), 120)
    elapsed = time.monotonic() - begun
    assert [final["status"] for final in finals] == ["SUCCEEDED", "SUCCEEDED"]
    reads = sum(server.stats()["runs"][run["id"]]["GET"] for run in runs)
    assert 4 <= reads <= 2 + 2 * elapsed + 1  # each run read at least twice (RUNNING, then its end)
    assert store.exists(f"runwatch:budget:{server.url}") == 1  # the shared bucket, in the block's Redis

    loaded = await RunStatusApi.aload("budgeted")
    api = loaded.get_api()
    assert api.budget is runwatch.RedisBudget.shared(redis_server.url, rate=2, burst=2)  # one per process
    async with get_client() as client:
        document = await client.read_block_document_by_name("budgeted", "runwatch-run-status-api", False)
    assert document.data["budget_url"].startswith("****")

    async def terminal() -> list[Any] | None:
        events = await _events(["runwatch.run.", "prefect.block-document."])
        ended = [e for e in events if e.event == "runwatch.run.terminal" and e.payload["status"]["id"] in
                 {run["id"] for run in runs}]  # fmt: skip
        return events if len(ended) == 2 else None

    events = await eventually(terminal, 30, "both runs' terminal events")
    seen = [
        str(document.data),
        json.dumps([e.model_dump(mode="json") for e in events]),
        caplog.text,
        repr(loaded),
        str(loaded.model_dump()),
        repr(api),
        repr(api.budget),
        json.dumps(api.to_dict()),
    ]
    for text in seen:
        assert PASSWORD not in text


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"budget_url": "redis://:pw-61ae@r:6379/0"}, "budget_url and budget_rate go together"),
        ({"budget_rate": 5}, "budget_url and budget_rate go together"),
        (
            {"budget_url": "http://:pw-61ae@r:6379/0", "budget_rate": 5},
            "must be a redis://, rediss:// or unix://",
        ),
        ({"budget_url": "redis://:pw-61ae@r:6379/0", "budget_rate": 0}, "greater than 0"),
        (
            {"budget_url": "redis://:pw-61ae@r:6379/0", "budget_rate": 5, "budget_burst": 0},
            "greater than or equal to 1",
        ),
    ],
)
def test_a_bad_budget_is_refused_without_quoting_the_url(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message) as caught:
        RunStatusApi(base_url="http://127.0.0.1:9", **fields)
    assert "pw-61ae" not in str(caught.value)


def test_without_budget_fields_there_is_no_budget() -> None:
    assert RunStatusApi(base_url="http://127.0.0.1:9").get_api().budget is None
