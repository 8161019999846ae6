"""e2e: the other paths. Mapped sensors that defer from a worker (the trigger ends them); a sensor on a
failed run (resumed on a worker, fails with RemoteRunFailed); the same with soft_fail (skipped); a run
started and waited for on a connection with OAuth client credentials whose tokens live 2 s."""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import dag, task

from runwatch_airflow.hooks.runwatch import RunStatusHook
from runwatch_airflow.operators.runwatch import StartRunOperator
from runwatch_airflow.sensors.runwatch import RunStatusSensor

POLICY = {"interval": 1.0, "max_interval": 2.0}


@dag(schedule="@once", start_date=datetime(2024, 1, 1), catchup=False)
def rw_e2e_outcomes() -> None:
    @task(retries=2, retry_delay=timedelta(seconds=1))
    def start_runs() -> list[str]:
        hook = RunStatusHook()  # idempotency keys: a retried start_runs starts no extra run
        script = [{"status": "RUNNING", "for": 15}, {"status": "SUCCEEDED"}]
        return [hook.start_run({"script": script}, idempotency_key=f"outcomes-{i}").id for i in range(3)]

    RunStatusSensor.partial(task_id="wait_mapped", deferrable=True, policy=POLICY).expand(run=start_runs())
    for task_id, soft_fail in (("wait_failed", False), ("wait_failed_soft", True)):
        RunStatusSensor(
            task_id=task_id,
            run=os.environ["RW_E2E_FAILED_RUN"],
            deferrable=True,
            start_from_trigger=True,
            soft_fail=soft_fail,
            policy=POLICY,
        )
    StartRunOperator(
        task_id="start_client_credentials",
        conn_id="runwatch_cc",
        body={
            "script": [
                {"status": "RUNNING", "for": float(os.environ["RW_E2E_CC_SECONDS"])},
                {"status": "SUCCEEDED"},
            ]
        },
        policy={"interval": 0.25, "max_interval": 0.25},  # polls far more often than tokens expire
    )


rw_e2e_outcomes()
