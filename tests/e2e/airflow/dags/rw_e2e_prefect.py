"""e2e: a DAG scheduled on the end of a Prefect flow run (RunEndedTrigger with the built-in `prefect` profile).

The asset watches the flow runs of one deployment on a real Prefect server, through the `runwatch_prefect`
connection (its API URL, with basic auth). The DAG returns the final statuses it was started for, read from
`triggering_asset_events`.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from airflow.sdk import Asset, AssetWatcher, dag, task

from runwatch_airflow.triggers.run_ended import RunEndedTrigger

flow_run_ended = Asset(
    "rw_e2e_prefect_ended",
    watchers=[
        AssetWatcher(
            name="rw_e2e_prefect_ended_watcher",
            trigger=RunEndedTrigger(
                conn_id="runwatch_prefect",
                profile="prefect",
                params={"deployment_id": os.environ["RW_E2E_PREFECT_DEPLOYMENT"]},
                interval=2.0,
            ),
        )
    ],
)


@dag(schedule=[flow_run_ended], start_date=datetime(2024, 1, 1), catchup=False)
def rw_e2e_on_prefect_end() -> None:
    @task
    def record(triggering_asset_events: Any = None) -> list[dict[str, Any]]:
        return [event.extra["payload"] for event in triggering_asset_events[flow_run_ended]]

    record()


rw_e2e_on_prefect_end()
