"""The subjects of the Airflow sections: runwatch's RunStatusTrigger and the anchors (providers' triggers).

Each subject is a trigger class (run by Airflow's TriggerRunner in `_triggerer.py`, in .venv/bench), the
connection it reads, and the API shape the reference server speaks to it:

- `http`: HttpSensorTrigger (apache-airflow-providers-http) fires on the first non-404 answer, so a run it
  waits for is a URL that answers 404 until the run ends (the server's own 404 for a run it does not know;
  in the `ends` section the run is created at the moment it ends).
- `databricks`: DatabricksExecutionTrigger (-databricks) reads the server's Databricks shape
  (`/vendors/databricks/api/2.2/jobs/runs/get`).
- `dbt-cloud`: DbtCloudRunJobTrigger (-dbt-cloud) reads the dbt Cloud shape. Its hook builds `https://` URLs
  whatever the connection says; `_triggerer.py` turns that one scheme into `http://` so that every subject
  speaks plain HTTP to 127.0.0.1 (no TLS cost for one subject only). The rest of its code runs unchanged.
- `runwatch`: RunStatusTrigger (airflow-provider-runwatch) on runwatch's standard API (ETag, long polling);
  `runwatch-databricks`: the same trigger with the built-in `databricks` profile on the Databricks shape, so
  that one row compares like with like (no ETag there).
- `runwatch-push`: the core's `wait_for_run` with a `WebhookInbox` served in the triggerer's process, the
  reference server pushing signed webhooks to it (`_push.py`; the Airflow trigger itself polls).
- `baseline`: Airflow's DateTimeTrigger set to each run's end: no requests, so its CPU is the TriggerRunner's
  own (and the bench's loop probe), which the `ends` section subtracts from every pattern.

This module runs in the bench's driver (.venv/core): it imports nothing from Airflow.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from _server import _call

__all__ = ["SUBJECTS", "Subject", "connections", "create_target"]

DBT_ACCOUNT = 7


@dataclass(frozen=True)
class Subject:
    name: str
    label: str
    classpath: str
    default_interval: float  # seconds between two polls at the trigger's (its operator's) default

    def kwargs(
        self, target: str, interval: float | None, policy: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """The trigger's kwargs to wait for `target` polling every `interval` s (None: its default)."""
        every = self.default_interval if interval is None else interval
        if self.name == "http":
            return {"endpoint": target, "http_conn_id": "bench_http", "poke_interval": every}
        if self.name == "databricks":
            return {
                "run_id": int(target),
                "databricks_conn_id": "bench_databricks",
                "polling_period_seconds": every,
            }
        if self.name == "dbt-cloud":
            return {
                "conn_id": "bench_dbt",
                "run_id": int(target),
                "account_id": DBT_ACCOUNT,
                "end_time": time.time() + 7 * 86400,
                "poll_interval": every,
            }
        if self.name == "baseline":
            return {"target_time": target}
        if self.name == "runwatch-push":
            return {"run": target, "policy": policy or {}}
        if self.name == "runwatch-databricks":
            return {"run": target, "conn_id": "bench_runwatch_databricks", "policy": policy or {}}
        return {"run": target, "conn_id": "bench_runwatch", "policy": policy or {}}


SUBJECTS = {
    "http": Subject(
        "http",
        "HttpSensorTrigger (providers-http 6.3.0)",
        "airflow.providers.http.triggers.http.HttpSensorTrigger",
        5.0,  # HttpSensorTrigger's poke_interval default
    ),
    "databricks": Subject(
        "databricks",
        "DatabricksExecutionTrigger (providers-databricks 7.23.0)",
        "airflow.providers.databricks.triggers.databricks.DatabricksExecutionTrigger",
        30.0,  # polling_period_seconds default
    ),
    "dbt-cloud": Subject(
        "dbt-cloud",
        "DbtCloudRunJobTrigger (providers-dbt-cloud 4.11.1)",
        "airflow.providers.dbt.cloud.triggers.dbt.DbtCloudRunJobTrigger",
        60.0,  # DbtCloudRunJobOperator's check_interval default, handed to the trigger as poll_interval
    ),
    "runwatch": Subject(
        "runwatch",
        "RunStatusTrigger (runwatch)",
        "runwatch_airflow.triggers.runwatch.RunStatusTrigger",
        2.0,  # Policy().interval; the policy backs off from there
    ),
    "baseline": Subject(
        "baseline",
        "DateTimeTrigger at the run's end (no requests: the runner's own cost)",
        "airflow.providers.standard.triggers.temporal.DateTimeTrigger",
        0.0,
    ),
    "runwatch-databricks": Subject(
        "runwatch-databricks",
        "RunStatusTrigger (runwatch), Databricks profile on the Databricks shape",
        "runwatch_airflow.triggers.runwatch.RunStatusTrigger",
        2.0,
    ),
    "runwatch-push": Subject(
        "runwatch-push",
        "runwatch webhook push: the core's wait with a WebhookInbox served in the triggerer (_push.py)",
        "_push.PushedRunTrigger",
        2.0,
    ),
}


def connections(base: str) -> dict[str, str]:
    """AIRFLOW_CONN_* variables for every subject's connection (Airflow reads them before anything else)."""
    hostport = base.removeprefix("http://")
    conns = {
        "bench_http": {
            "conn_type": "http",
            "host": hostport.split(":")[0],
            "port": int(hostport.split(":")[1]),
            "schema": "http",
        },
        # The Databricks hook keeps a host without a scheme as it is, port and path included.
        "bench_databricks": {
            "conn_type": "databricks",
            "host": f"{hostport}/vendors/databricks",
            "schema": "http",
            "password": "dapi-bench",
        },
        "bench_dbt": {
            "conn_type": "dbt_cloud",
            "host": f"{hostport}/vendors/dbt-cloud",
            "login": str(DBT_ACCOUNT),
            "password": "dbt-bench",
        },
        "bench_runwatch": {"conn_type": "runwatch", "host": base},
        "bench_runwatch_databricks": {
            "conn_type": "runwatch",
            "host": f"{base}/vendors/databricks",
            "password": "dapi-bench",
            "extra": {"profile": "databricks"},
        },
    }
    return {f"AIRFLOW_CONN_{name.upper()}": json.dumps(conn) for name, conn in conns.items()}


def create_target(base: str, subject: str, running_for: float, index: int) -> str:
    """Make the run a subject waits for, RUNNING for `running_for` s then succeeded; what its kwargs name.

    For `http` nothing is made here: its target answers 404 until `create_http_run` makes it."""
    if subject == "baseline":
        return datetime.fromtimestamp(time.time() + running_for, timezone.utc).isoformat()
    if subject == "http":
        return f"vendors/databricks/api/2.2/jobs/runs/get?run_id={http_run_id(index)}"
    if subject in ("databricks", "runwatch-databricks"):
        script = [{"state": "RUNNING", "for": running_for}, {"state": "TERMINATED/SUCCESS"}]
        return str(_call(base, "POST", "/_control/vendors/databricks/runs", {"script": script})["id"])
    if subject == "dbt-cloud":
        script = [{"state": "3", "for": running_for}, {"state": "10"}]
        return str(_call(base, "POST", "/_control/vendors/dbt-cloud/runs", {"script": script})["id"])
    body = {"script": [{"status": "RUNNING", "for": running_for}, {"status": "SUCCEEDED"}]}
    return str(_call(base, "POST", "/runs", body)["id"])


def http_run_id(index: int) -> int:
    """The id of the run HttpSensorTrigger number `index` waits for (made when that run ends)."""
    return 900_000_000 + index


def create_http_run(base: str, index: int) -> None:
    """The run HttpSensorTrigger `index` waits for, made already ended: its URL stops answering 404."""
    body = {"script": [{"state": "TERMINATED/SUCCESS"}], "id": str(http_run_id(index))}
    _call(base, "POST", "/_control/vendors/databricks/runs", body)
