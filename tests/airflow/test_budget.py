"""The request budget from a `runwatch` connection: a Redis connection of its own, applied where the trigger
builds its API (in the triggerer), its password never in trigger kwargs, events or logs.

A real redis-server with a password (tests/redis_server.py) and the reference server, which counts reads.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import Connection
from airflow.sdk.log import redact
from airflow.triggers.base import TriggerEvent
from redis import Redis

import runwatch
from runwatch.server import ReferenceServer
from runwatch_airflow._budget import budget_settings, redis_url
from runwatch_airflow.hooks.runwatch import RunStatusHook
from runwatch_airflow.triggers.runwatch import RunStatusTrigger

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the Redis server the suites share
from redis_server import RedisServer

PASSWORD = "redis-pw-3b9e+/1"  # quoted in the URL: both spellings must stay out of sight
FAST = {"interval": 0.05, "max_interval": 0.05, "jitter": False, "unavailable_after": 30}


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer(password=PASSWORD) as server:
        yield server


@pytest.fixture
def budgeted(
    redis_server: RedisServer,
    runwatch_server: ReferenceServer,
    connection: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
) -> Redis:
    """`runwatch_default` with a budget of 2 requests/s, burst 2 (as the form stores them: text), on the
    Redis connection `budget_redis`; returns a client of that (emptied) Redis."""
    store = {"conn_type": "redis", "host": "127.0.0.1", "port": redis_server.port, "password": PASSWORD}
    monkeypatch.setenv("AIRFLOW_CONN_BUDGET_REDIS", json.dumps({**store, "extra": {"db": 0}}))
    extra = {"budget_conn_id": "budget_redis", "budget_rate": "2", "budget_burst": "2"}
    connection(host=runwatch_server.url, extra=json.dumps(extra))
    client = Redis(host="127.0.0.1", port=redis_server.port, password=PASSWORD)
    client.flushdb()
    return client


async def test_triggers_share_the_connections_budget_and_never_show_the_store_password(
    budgeted: Redis, runwatch_server: ReferenceServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Two triggers polling every 50 ms for about 1.5 s would read about 60 times; the budget of
    2 requests/s with a burst of 2 allows at most 2 + 2/s over the whole wait, for both together."""
    runs = [
        runwatch_server.create_run(script=[{"status": "RUNNING", "for": 1.5}, {"status": "SUCCEEDED"}])
        for _ in range(2)
    ]
    triggers = [RunStatusTrigger(run=run["id"], policy=FAST) for run in runs]
    caplog.set_level(logging.DEBUG)
    begun = time.monotonic()
    events = await asyncio.wait_for(asyncio.gather(*(_events(trigger) for trigger in triggers)), 60)
    elapsed = time.monotonic() - begun
    assert [[e.payload["status"] for e in each] for each in events] == [["success"], ["success"]]
    reads = sum(runwatch_server.stats()["runs"][run["id"]]["GET"] for run in runs)
    assert 4 <= reads <= 2 + 2 * elapsed + 1  # each run read at least twice (RUNNING, then its end)
    key = f"runwatch:budget:{runwatch_server.url}"
    assert budgeted.exists(key) == 1  # the shared bucket, in the store the Redis connection names

    api = await RunStatusHook().aget_api()
    assert api.budget is runwatch.RedisBudget.shared(api.budget.url, rate=2, burst=2)  # one per process
    url = api.budget.url
    seen = [
        json.dumps(trigger.serialize()) for trigger in triggers
    ] + [  # what Airflow stores for the triggerer, the events, what was logged, and how the API shows
        json.dumps([[e.payload for e in each] for each in events]),
        caplog.text,
        repr(api),
        repr(api.budget),
        json.dumps(api.to_dict()),
    ]
    for text in seen:
        assert PASSWORD not in text and url not in text
    assert PASSWORD not in redact(f"store {url}")  # Airflow's masker knows the URL (its password quoted)


def test_sync_callers_get_the_same_budget(budgeted: Redis) -> None:
    """A poke or an operator (`get_api`) builds its API with the very budget the triggers use."""
    api = RunStatusHook().get_api()
    assert api.budget is not None
    assert api.budget is runwatch.RedisBudget.shared(api.budget.url, rate=2, burst=2)
    assert api.budget.store == f"redis://127.0.0.1:{budgeted.connection_pool.connection_kwargs['port']}/0"


async def test_a_bad_budget_ends_the_trigger_with_one_clear_error_event(
    runwatch_server: ReferenceServer, connection: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_NOT_REDIS", json.dumps({"conn_type": "postgres", "host": "db"}))
    extra = {"budget_conn_id": "not_redis", "budget_rate": 5}
    connection(host=runwatch_server.url, extra=json.dumps(extra))
    [event] = await _events(RunStatusTrigger(run="r-1", policy=FAST))
    assert event.payload == {
        "status": "error",
        "result": {
            "outcome": "error",
            "message": "connection 'not_redis' is of type 'postgres': the request budget needs a redis connection",
            "status": None,
        },
    }


async def _events(trigger: RunStatusTrigger) -> list[TriggerEvent]:
    return [event async for event in trigger.run()]


def _conn(**fields: Any) -> Connection:
    return Connection(
        conn_id=fields.pop("conn_id", "c"), conn_type=fields.pop("conn_type", "redis"), **fields
    )


@pytest.mark.parametrize(
    ("fields", "extra", "url"),
    [
        ({"host": "r", "password": "p w/+"}, {}, "redis://:p%20w%2F%2B@r:6379/0"),
        ({"host": "r", "port": 6380, "login": "acl", "password": "p"}, {"db": 3}, "redis://acl:p@r:6380/3"),
        ({"host": "r", "schema": "2"}, {}, "redis://r:6379/2"),  # an AIRFLOW_CONN_ URI's /2
        (
            {"host": "r"},
            {"ssl": "true", "ssl_cert_reqs": "required", "ssl_ca_certs": "/ca.pem"},
            "rediss://r:6379/0?ssl_cert_reqs=required&ssl_ca_certs=%2Fca.pem",
        ),
        (
            {"host": "r", "conn_type": "rediss"},
            {"ssl_cert_reqs": "none"},
            "rediss://r:6379/0?ssl_cert_reqs=none",
        ),
        ({"host": "r"}, {"ssl_cert_reqs": "none"}, "redis://r:6379/0"),  # TLS options without TLS: none
    ],
)
def test_the_redis_connection_is_read_as_the_redis_provider_reads_it(
    fields: dict[str, Any], extra: dict[str, Any], url: str
) -> None:
    assert redis_url(_conn(**fields), extra) == url


@pytest.mark.parametrize(
    ("fields", "extra", "message"),
    [
        ({}, {}, "connection 'c' has no host: the request budget needs the Redis server's host"),
        (
            {"host": "r"},
            {"cluster": True},
            "connection 'c' is a Redis Cluster: the request budget needs one Redis server",
        ),
    ],
)
def test_a_redis_connection_that_cannot_hold_the_budget_is_refused(
    fields: dict[str, Any], extra: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError) as caught:
        redis_url(_conn(**fields), extra)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            {"budget_rate": 5},
            "connection 'rw': budget_rate and budget_burst need budget_conn_id (the id of a redis connection that holds the shared budget)",
        ),
        (
            {"budget_conn_id": "r"},
            "connection 'rw': budget_conn_id needs budget_rate (requests per second, > 0)",
        ),
    ],
)
def test_half_a_budget_is_refused(extra: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as caught:
        budget_settings(_conn(conn_id="rw", conn_type="runwatch"), extra)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("rate", "burst", "message"),
    [
        ("0", "1", "connection 'rw': budget rate must be a number of requests per second > 0 (got 0)"),
        ("ten", "1", "connection 'rw': budget rate must be a number of requests per second > 0 (got 'ten')"),
        ("5", "2.5", "connection 'rw': budget burst must be a whole number of requests >= 1 (got 2.5)"),
    ],
)
def test_a_bad_rate_or_burst_names_the_connection(rate: str, burst: str, message: str) -> None:
    extra = {"extra__runwatch__budget_conn_id": "r", "budget_rate": rate, "budget_burst": burst}
    settings = budget_settings(_conn(conn_id="rw", conn_type="runwatch"), extra)
    assert settings is not None and settings.redis_conn_id == "r"
    with pytest.raises(ValueError) as caught:
        settings.budget("redis://127.0.0.1:1/0")
    assert str(caught.value) == message


def test_without_budget_fields_there_is_no_budget(
    runwatch_server: ReferenceServer, connection: Callable[..., str]
) -> None:
    connection(host=runwatch_server.url)
    assert RunStatusHook().get_api().budget is None
