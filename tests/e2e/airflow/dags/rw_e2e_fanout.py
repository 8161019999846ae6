"""e2e: one task starts the remote runs; a RunStatusSensor per run, started in the triggerer and ended there
(`start_from_trigger`, `end_from_trigger`): no worker runs any of them. Each sensor's `run` is a template
that the triggerer renders (an XCom pull)."""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import dag, task

from runwatch_airflow.hooks.runwatch import RunStatusHook
from runwatch_airflow.sensors.runwatch import RunStatusSensor

RUNS = int(os.environ["RW_E2E_RUNS"])
SECONDS = float(os.environ["RW_E2E_SECONDS"])
POLICY = {"interval": 2.0, "max_interval": 5.0}


@dag(schedule="@once", start_date=datetime(2024, 1, 1), catchup=False)
def rw_e2e_fanout() -> None:
    @task(retries=2, retry_delay=timedelta(seconds=1))
    def start_runs() -> list[str]:
        hook = RunStatusHook()  # idempotency keys: a retried start_runs starts no extra run
        script = [{"status": "RUNNING", "for": SECONDS}, {"status": "SUCCEEDED"}]
        return [hook.start_run({"script": script}, idempotency_key=f"fanout-{i}").id for i in range(RUNS)]

    @task(retries=2, retry_delay=timedelta(seconds=1))
    def check(final: dict[str, Any]) -> str:
        """A downstream task reads the status the triggerer pushed, as a dict."""
        assert final["status"] == "SUCCEEDED", final
        return str(final["id"])

    runs = start_runs()
    for i in range(RUNS):
        sensor = RunStatusSensor(
            task_id=f"wait_{i:02d}",
            # map_indexes: Airflow 3.3's triggerer answers single-XCom reads, not the sequence read that a
            # bare xcom_pull(task_ids=...) makes.
            run=f"{{{{ ti.xcom_pull(task_ids='start_runs', map_indexes=-1)[{i}] }}}}",
            deferrable=True,
            start_from_trigger=True,
            policy=POLICY,
            timeout=600,
        )
        runs >> sensor
        if i == 0:
            check(sensor.output)


rw_e2e_fanout()
