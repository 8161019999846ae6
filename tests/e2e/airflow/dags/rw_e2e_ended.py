"""e2e: DAGs scheduled on remote runs that end, with no task while they run (RunEndedTrigger in AssetWatchers).

Three assets watch the runs the `runwatch_events` connection lists (an Airflow-shaped API on the reference
server, profile `airflow`): two with equal watchers (one trigger row for both), one for successes only. Each
consumer DAG returns the final statuses it was started for, read from `triggering_asset_events`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import Asset, AssetWatcher, dag, task

from runwatch_airflow.triggers.run_ended import RunEndedTrigger

LISTED = {"conn_id": "runwatch_events", "params": {"dag_id": "upstream"}, "interval": 2.0}


def _watched(name: str, outcomes: str) -> Asset:
    trigger = RunEndedTrigger(outcomes=outcomes, **LISTED)  # type: ignore[arg-type]
    return Asset(name, watchers=[AssetWatcher(name=f"{name}_watcher", trigger=trigger)])


ASSETS = {
    "rw_e2e_on_end": _watched("rw_e2e_upstream_ended", "any"),
    "rw_e2e_on_end_too": _watched("rw_e2e_upstream_ended_too", "any"),
    "rw_e2e_on_success": _watched("rw_e2e_upstream_succeeded", "succeeded"),
}


def _consumer(dag_id: str, asset: Asset) -> None:
    @dag(dag_id=dag_id, schedule=[asset], start_date=datetime(2024, 1, 1), catchup=False)
    def consumer() -> None:
        @task
        def record(triggering_asset_events: Any = None) -> list[dict[str, Any]]:
            return [event.extra["payload"] for event in triggering_asset_events[asset]]

        record()

    consumer()


for _dag_id, _asset in ASSETS.items():
    _consumer(_dag_id, _asset)
