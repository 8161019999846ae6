"""RunEndedTrigger against the reference server's Airflow-shaped API: kwargs, sharing, one event per end."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from airflow.sdk.serde import deserialize, serialize
from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from runwatch.server import ReferenceServer
from runwatch_airflow.exceptions import RunwatchArgumentError
from runwatch_airflow.triggers import run_ended
from runwatch_airflow.triggers.run_ended import RunEndedTrigger

CLASSPATH = "runwatch_airflow.triggers.run_ended.RunEndedTrigger"


@pytest.fixture
def vendor_airflow(
    runwatch_server_factory: Callable[..., ReferenceServer], connection: Callable[..., str], canary: str
) -> ReferenceServer:
    """A reference server speaking Airflow's REST API (it needs the canary token), as `runwatch_default`."""
    server = runwatch_server_factory(token=canary)
    connection(host=f"{server.url}/vendors/airflow", password=canary, extra={"profile": "airflow"})
    return server


@pytest.fixture
def no_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run_ended, "PERSIST_GRACE", 0.0)  # nothing to wait for outside a triggerer


def test_kwargs_are_plain_json_without_secrets_and_equal_filters_share(
    connection: Callable[..., str], canary: str
) -> None:
    connection(host="http://127.0.0.1:9", password=canary)
    trigger = RunEndedTrigger(params={"dag_id": "load"}, outcomes="succeeded", interval=5)
    classpath, kwargs = trigger.serialize()
    assert classpath == CLASSPATH
    assert kwargs == {
        "conn_id": "runwatch_default",
        "profile": None,
        "params": {"dag_id": "load"},
        "outcomes": "succeeded",
        "interval": 5.0,
    }
    assert RunEndedTrigger(**kwargs).serialize() == (classpath, kwargs)
    assert deserialize(serialize(kwargs)) == kwargs
    assert canary not in json.dumps(kwargs) and canary not in repr(trigger)
    # Equal kwargs: one trigger row for every asset (Airflow's hash). Another `outcomes`: its own row and
    # cursor, but the same poll; another filter: another poll.
    same = RunEndedTrigger(**kwargs)
    assert BaseEventTrigger.hash(classpath, kwargs) == BaseEventTrigger.hash(*same.serialize())
    every = RunEndedTrigger(params={"dag_id": "load"}, outcomes="any", interval=5)
    other = RunEndedTrigger(params={"dag_id": "other"}, outcomes="succeeded", interval=5)
    assert every.shared_stream_key() == trigger.shared_stream_key() != other.shared_stream_key()
    assert len({trigger.cursor_key, every.cursor_key, other.cursor_key}) == 3
    assert trigger.cursor_key == same.cursor_key and trigger.cursor_key.startswith("runwatch.ended.")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"outcomes": "failed"}, "outcomes must be one of succeeded, any, not 'failed'"),
        ({"interval": 0}, "interval must be a positive number of seconds, not 0"),
        ({"interval": "5"}, "interval must be a positive number of seconds, not '5'"),
    ],
)
def test_bad_options_are_refused_in_one_line(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(RunwatchArgumentError, match=f"^{message}$"):
        RunEndedTrigger(**kwargs)


async def _first(trigger: RunEndedTrigger, count: int) -> list[dict[str, Any]]:
    stream: AsyncIterator[TriggerEvent] = trigger.run()
    try:
        return [(await anext(stream)).payload for _ in range(count)]
    finally:
        await stream.aclose()  # type: ignore[attr-defined]  # an async generator


async def test_one_event_per_run_that_ends_with_its_final_status_never_for_the_past(
    vendor_airflow: ReferenceServer, canary: str, no_grace: None
) -> None:
    server = vendor_airflow
    server.create_vendor_run("airflow", [{"state": "success"}])  # ended before the watch: history
    ok = server.create_vendor_run("airflow", [{"state": "running", "for": 0.8}, {"state": "success"}])["id"]
    bad = server.create_vendor_run("airflow", [{"state": "running", "for": 0.8}, {"state": "failed"}])["id"]
    fast = {"params": {"dag_id": "upstream"}, "interval": 0.1}
    every, succeeded = await asyncio.wait_for(
        asyncio.gather(
            _first(RunEndedTrigger(outcomes="any", **fast), 2),
            _first(RunEndedTrigger(outcomes="succeeded", **fast), 1),
        ),
        60,
    )
    assert sorted((e["id"], e["status"], e["raw_status"]) for e in every) == sorted(
        [(ok, "SUCCEEDED", "success"), (bad, "FAILED", "failed")]
    )
    assert [(e["id"], e["status"]) for e in succeeded] == [(ok, "SUCCEEDED")]
    for event in every:
        assert "observed_at" not in event  # HA duplicates of one event compare equal
        assert event["url"].startswith(f"{server.url}/vendors/airflow/")
        assert canary not in json.dumps(event)


async def test_a_run_that_stays_ended_fires_once_and_a_read_that_fails_fires_nothing(
    vendor_airflow: ReferenceServer, no_grace: None, caplog: pytest.LogCaptureFixture
) -> None:
    server = vendor_airflow
    first = server.create_vendor_run("airflow", [{"state": "running", "for": 0.5}, {"state": "success"}])
    trigger = RunEndedTrigger(params={"dag_id": "upstream"}, interval=0.1)
    stream = trigger.run()
    try:
        [event] = [(await asyncio.wait_for(anext(stream), 30)).payload]
        assert event["id"] == first["id"]
        # Many more reads see it succeeded still: nothing more until another run ends.
        second = server.create_vendor_run("airflow", [{"state": "running", "for": 1.0}, {"state": "failed"}])
        nxt = await asyncio.wait_for(anext(stream), 30)
        assert (nxt.payload["id"], nxt.payload["status"]) == (second["id"], "FAILED")
    finally:
        await stream.aclose()
