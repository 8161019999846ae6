"""The sensor under Airflow's own task runner (`dag.test()`, triggers run inline): the run's link a real task
instance pushes to XCom, for each way a wait ends (first look, resume, poke, failure, no status ever read)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag

from runwatch.server import ReferenceServer

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("airflow_db")]

RUNNING = [{"status": "RUNNING", "for": 2}, {"status": "SUCCEEDED", "output_ref": "s3://out/1"}]
FAILS = [{"status": "RUNNING", "for": 2}, {"status": "FAILED", "errors": [{"message": "disk full"}]}]

DAG_SOURCE = """
from datetime import datetime

from airflow.sdk import dag

from runwatch_airflow.sensors.runwatch import RunStatusSensor

POLICY = {"interval": 0.1, "max_interval": 0.2, "unavailable_after": 1}


@dag(schedule=None, start_date=datetime(2025, 1, 1), catchup=False)
def rw_task_runs():
    for task_id, flags in {
        "ended": {},  # judged at the first look
        "resumed": {},  # judged on resume after the trigger's success event
        "poked": {"deferrable": False, "mode": "poke", "poke_interval": 0.1},
        "failed": {},  # the trigger's error event with the final status
        "unreadable": {},  # the trigger's error event with no status ever read
    }.items():
        RunStatusSensor(task_id=task_id, run="{{ dag_run.conf['%s'] }}" % task_id, policy=POLICY, **flags)


rw_task_runs()
"""


def test_every_way_a_wait_ends_pushes_the_runs_link(
    runwatch_server: ReferenceServer, dag_file: Callable[..., Path], connection: Callable[..., str]
) -> None:
    connection(host=runwatch_server.url)
    create = runwatch_server.create_run
    runs = {
        "ended": create(script=[{"status": "SUCCEEDED", "output_ref": "s3://out/0"}])["id"],
        "resumed": create(script=RUNNING)["id"],
        "poked": create(script=RUNNING)["id"],
        "failed": create(script=FAILS)["id"],
        "unreadable": create(script=RUNNING, faults={"errors_5xx": {"every": 1, "status": 503}})["id"],
    }
    dag = DagBag(dag_folder=str(dag_file("rw_task_runs.py", DAG_SOURCE))).get_dag("rw_task_runs")
    assert dag is not None
    run = dag.test(run_conf=runs)
    tis = {ti.task_id: ti for ti in run.get_task_instances()}
    states = {task_id: str(ti.state) for task_id, ti in tis.items()}
    assert states == {
        "ended": "success",
        "resumed": "success",
        "poked": "success",
        "failed": "failed",
        "unreadable": "failed",
    }
    for task_id, ti in tis.items():
        link = f"{runwatch_server.url}/runs/{runs[task_id]}"
        assert ti.xcom_pull(task_ids=task_id, key="run_url") == link, task_id
        if states[task_id] == "success":
            assert ti.xcom_pull(task_ids=task_id)["id"] == runs[task_id]
