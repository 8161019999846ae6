"""Start remote runs and wait for them with runwatch, without holding an Airflow worker slot.

Try it against the reference run API that ships with runwatch:

    runwatch serve                       # http://127.0.0.1:8765
    export AIRFLOW_CONN_RUNWATCH_DEFAULT='{"conn_type": "runwatch", "host": "http://127.0.0.1:8765"}'

then copy this file into your dags folder and trigger `runwatch_example`. For your own API, point the
connection at it (password = token; extra {"profile": "dbt_cloud"} or your own profile) and change BODY to
its start request. A triggerer must be running (`airflow triggerer`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import dag, task

from runwatch_airflow.operators.runwatch import StartRunOperator
from runwatch_airflow.sensors.runwatch import RunStatusSensor

# The reference server runs the lifecycle you script; a real API takes its own start payload.
BODY = {
    "script": [
        {"status": "QUEUED", "for": 1},
        {"status": "RUNNING", "for": 3, "progress": {"percent": 50, "message": "half way"}},
        {"status": "SUCCEEDED", "output_ref": "s3://bucket/results/42"},
    ]
}
# Poll every 2 s at first, backing off to 30 s while nothing changes (full jitter, Retry-After honoured).
POLICY = {"interval": 2.0, "max_interval": 30.0}


@dag(
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    tags=["runwatch"],
    default_args={"retries": 2, "retry_delay": timedelta(seconds=30)},
)
def runwatch_example() -> None:
    # One task: start a run and wait for it in the triggerer. Its idempotency key (dag, task, dag run, map
    # index) makes a retry find the run it already started instead of starting a second one.
    start_and_wait = StartRunOperator(
        task_id="start_and_wait",
        body=BODY,
        policy=POLICY,
        deferrable=True,
        cancel_on_kill=True,  # mark the task failed in the UI and the remote run is cancelled too
        timeout=timedelta(hours=2),
    )

    # Two tasks: start, then watch any run by id or status URL (`run` is templated).
    start = StartRunOperator(task_id="start", body=BODY, wait_for_completion=False)
    wait = RunStatusSensor(
        task_id="wait",
        run="{{ ti.xcom_pull(task_ids='start', key='run_id') }}",
        policy=POLICY,
        deferrable=True,
        timeout=timedelta(hours=2),
    )
    start >> wait

    @task
    def summarise(first: dict[str, Any], second: dict[str, Any]) -> str:
        """The final statuses arrive as plain dicts (XCom)."""
        return f"{first['id']} took {first['duration']:.0f}s; {second['id']} wrote {second['output_ref']}"

    summarise(start_and_wait.output, wait.output)


runwatch_example()
