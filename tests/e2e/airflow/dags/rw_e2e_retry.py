"""e2e: a StartRunOperator whose first try dies right after starting the remote run; the retry must find
that run again (same idempotency key) instead of starting a second one."""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import Context, dag

from runwatch_airflow.operators.runwatch import StartRunOperator


class StartThenLoseTheWorker(StartRunOperator):
    """The first time it runs: start the run, then fail as a worker lost just after the start call would.

    "First time" is a marker file, not try 1: a try may also fail before it runs (a busy api server)."""

    def execute(self, context: Context) -> Any:
        marker = Path(os.environ["AIRFLOW_HOME"]) / "lost-a-worker-once"
        if not marker.exists():
            marker.touch()
            self.start(context)
            raise RuntimeError("simulated worker loss right after starting the remote run")
        return super().execute(context)


@dag(schedule="@once", start_date=datetime(2024, 1, 1), catchup=False)
def rw_e2e_retry() -> None:
    StartThenLoseTheWorker(
        task_id="start",
        conn_id="runwatch_retry",
        body={"script": [{"status": "RUNNING", "for": 3}, {"status": "SUCCEEDED"}]},
        policy={"interval": 1.0, "max_interval": 2.0},
        deferrable=True,
        retries=3,
        retry_delay=timedelta(seconds=1),
    )


rw_e2e_retry()
