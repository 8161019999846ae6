"""e2e: waits that lose their triggerer. Runs that succeed and runs that fail, on three connections (a bearer
token, basic auth, a URL with userinfo); sensors started from the triggerer and sensors deferred from a
worker; one wait whose own deadline passes after the triggerer died. None retries: one try each."""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from airflow.sdk import dag, task

from runwatch_airflow.hooks.runwatch import RunStatusHook
from runwatch_airflow.sensors.runwatch import RunStatusSensor

RUN_SECONDS = float(os.environ["RW_E2E_RESTART_RUN_SECONDS"])
DEADLINE_SECONDS = float(os.environ["RW_E2E_RESTART_DEADLINE_SECONDS"])
CONNS = ("runwatch_default", "runwatch_basic", "runwatch_userinfo")
POLICY = {"interval": 1.0, "max_interval": 3.0}
# (task id, connection, how the run ends, started from the triggerer?)
WAITS = [
    (f"wait_{conn.removeprefix('runwatch_')}_{end.lower()}", conn, end, end == "SUCCEEDED")
    for conn in CONNS
    for end in ("SUCCEEDED", "FAILED")
]


@dag(schedule="@once", start_date=datetime(2024, 1, 1), catchup=False)
def rw_e2e_restart() -> None:
    @task(retries=2)
    def start_runs() -> dict[str, str]:
        """One remote run per wait (idempotency keys: a retried start starts no extra run)."""
        runs = {}
        for task_id, conn, end, _ in WAITS:
            final: dict[str, Any] = {"status": end}
            if end == "FAILED":
                final["errors"] = [{"message": f"{task_id}: out of memory"}]
            script = [{"status": "RUNNING", "for": RUN_SECONDS}, final]
            runs[task_id] = RunStatusHook(conn).start_run({"script": script}, idempotency_key=task_id).id
        long_run = [{"status": "RUNNING", "for": 3600}, {"status": "SUCCEEDED"}]
        runs["wait_deadline"] = RunStatusHook().start_run({"script": long_run}, idempotency_key="deadline").id
        return runs

    runs = start_runs()
    for task_id, conn, _, from_trigger in [*WAITS, ("wait_deadline", CONNS[0], "", False)]:
        sensor = RunStatusSensor(
            task_id=task_id,
            conn_id=conn,
            run=f"{{{{ ti.xcom_pull(task_ids='start_runs', map_indexes=-1)['{task_id}'] }}}}",
            deferrable=True,
            start_from_trigger=from_trigger,
            policy=POLICY,
            timeout=DEADLINE_SECONDS if task_id == "wait_deadline" else 900,
        )
        runs >> sensor


rw_e2e_restart()
