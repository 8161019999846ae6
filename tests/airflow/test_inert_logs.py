"""Remote text stays inert in the trigger's log lines and in the outcome messages Airflow logs and raises."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import structlog.testing

from runwatch.server import ReferenceServer
from runwatch_airflow import exceptions
from runwatch_airflow.sensors.runwatch import RunStatusSensor
from runwatch_airflow.triggers.runwatch import RunStatusTrigger

FAST = {"interval": 0.05, "max_interval": 0.2, "unavailable_after": 10}
HOSTILE = "boom\n::error file=dag.py::pwned\x1b[2J\x07"
CONTEXT: Any = {}  # the task runner's context; this path needs none of it
SHOWN = "boom\\n::error file=dag.py::pwned\\x1b[2J\\x07"


@pytest.fixture
def server_conn(runwatch_server: ReferenceServer, connection: Callable[..., str]) -> ReferenceServer:
    connection(host=runwatch_server.url)
    return runwatch_server


async def test_the_error_event_message_shows_the_remote_text_as_data(server_conn: ReferenceServer) -> None:
    run = server_conn.create_run(
        script=[{"status": "RUNNING", "for": 0.1}, {"status": "FAILED", "errors": [{"message": HOSTILE}]}]
    )
    [event] = [e.payload async for e in RunStatusTrigger(run=run["id"], policy=FAST).run()]
    assert event["result"]["message"] == f"run {run['id']} failed: {SHOWN}"
    assert event["result"]["status"]["errors"][0]["message"] == HOSTILE  # the data itself stays exact


async def test_the_trigger_logs_a_remote_run_id_as_data(server_conn: ReferenceServer) -> None:
    # A profile that takes the run's id from a field the remote writes freely (here, its executor).
    profile: dict[str, Any] = {
        "name": "id-from-executor",
        "status_url": "{base_url}/runs/{run_id}",
        "fields": {"id": "executor", "status": "status"},
        "states": {"RUNNING": "RUNNING", "SUCCEEDED": "SUCCEEDED"},
    }
    run = server_conn.create_run(
        script=[
            {"status": "RUNNING", "for": 0.1, "executor": HOSTILE},
            {"status": "SUCCEEDED", "executor": HOSTILE},
        ]
    )
    with structlog.testing.capture_logs() as logs:  # Airflow 3's loggers are structlog's
        [event] = [
            e.payload async for e in RunStatusTrigger(run=run["id"], policy=FAST, profile=profile).run()
        ]
    assert event["status"] == "success"
    lines = [entry["event"] % entry.get("positional_args", ()) for entry in logs]
    seen = [line for line in lines if line.startswith("run boom")]
    assert seen == [f"run {SHOWN} is RUNNING", f"run {SHOWN} is SUCCEEDED"]


def test_a_poking_sensor_raises_the_remote_text_as_data(server_conn: ReferenceServer) -> None:
    bad = server_conn.create_run(script=[{"status": "FAILED", "errors": [{"message": HOSTILE}]}])
    sensor = RunStatusSensor(
        task_id="wait", run=bad["id"], deferrable=False, mode="poke", poke_interval=0.1, policy=FAST
    )
    with pytest.raises(exceptions.RemoteRunFailed) as info:
        sensor.execute(CONTEXT)
    assert str(info.value) == f"run {bad['id']} failed: {SHOWN}"
