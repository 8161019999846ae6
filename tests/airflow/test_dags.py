"""Whole DAGs through `dag.test()` (real task runner, triggers run inline) against the reference server."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from airflow.dag_processing.dagbag import DagBag
from airflow.models.dagrun import DagRun

from runwatch.server import ReferenceServer

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("airflow_db")]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "airflow" / "runwatch_example_dag.py"
OK = {"script": [{"status": "RUNNING", "for": 1}, {"status": "SUCCEEDED"}]}
BAD = {
    "script": [{"status": "RUNNING", "for": 1}, {"status": "FAILED", "errors": [{"message": "disk full"}]}]
}

PATHS_DAG = f"""
from datetime import datetime

from airflow.sdk import dag

from runwatch_airflow.operators.runwatch import StartRunOperator
from runwatch_airflow.sensors.runwatch import RunStatusSensor

OK = {OK!r}
BAD = {BAD!r}
POLICY = {{"interval": 0.2, "max_interval": 0.5}}


@dag(schedule=None, start_date=datetime(2025, 1, 1), catchup=False)
def rw_paths():
    blocking = StartRunOperator(task_id="blocking", body=OK, policy=POLICY, deferrable=False)
    fails = StartRunOperator(task_id="fails", body=BAD, policy=POLICY, deferrable=True)
    poke = RunStatusSensor(
        task_id="poke",
        run="{{{{ ti.xcom_pull(task_ids='blocking', key='run_id') }}}}",
        deferrable=False,
        mode="poke",
        poke_interval=0.2,
    )
    soft = RunStatusSensor(
        task_id="soft",
        run="{{{{ ti.xcom_pull(task_ids='fails', key='run_id') }}}}",
        soft_fail=True,
        trigger_rule="all_done",
    )
    blocking >> poke
    fails >> soft


rw_paths()
"""


def dag_test(path: Path, dag_id: str) -> DagRun:
    """`dag.test()` of a DAG file in the dags folder (Airflow 3 re-reads the DAG from there)."""
    dag = DagBag(dag_folder=str(path)).get_dag(dag_id)
    assert dag is not None, f"{dag_id} did not load from {path}"
    return dag.test()


def outcome(run: DagRun) -> dict[str, tuple[str, dict[str, Any]]]:
    """task id -> (state, {XCom key: value})."""
    result = {}
    for ti in run.get_task_instances():
        keys = ("return_value", "run_id", "run_url", "_link_RemoteRunLink")
        xcoms = {key: ti.xcom_pull(task_ids=ti.task_id, key=key) for key in keys}
        result[ti.task_id] = (str(ti.state), {k: v for k, v in xcoms.items() if v is not None})
    return result


@pytest.fixture
def default_conn(runwatch_server: ReferenceServer, connection: Callable[..., str]) -> ReferenceServer:
    connection(host=runwatch_server.url)
    return runwatch_server


def test_the_example_dag_runs_end_to_end_with_dag_test(
    default_conn: ReferenceServer, dag_file: Callable[..., Path]
) -> None:
    run = dag_test(dag_file(EXAMPLE.name, EXAMPLE.read_text()), "runwatch_example")
    assert run.state == "success"
    tasks = outcome(run)
    assert {task: state for task, (state, _) in tasks.items()} == dict.fromkeys(
        ("start_and_wait", "start", "wait", "summarise"), "success"
    )
    final = tasks["start_and_wait"][1]["return_value"]
    assert (final["status"], final["output_ref"]) == ("SUCCEEDED", "s3://bucket/results/42")
    assert tasks["start_and_wait"][1]["run_id"] == final["id"]
    assert tasks["wait"][1]["return_value"]["id"] == tasks["start"][1]["run_id"]
    link = f"{default_conn.url}/runs/{final['id']}"
    assert tasks["start_and_wait"][1]["run_url"] == tasks["start_and_wait"][1]["_link_RemoteRunLink"] == link
    assert "wrote s3://bucket/results/42" in tasks["summarise"][1]["return_value"]
    assert default_conn.stats()["runs_created"] == 2


def test_blocking_poke_failure_and_soft_fail_paths(
    default_conn: ReferenceServer, dag_file: Callable[..., Path]
) -> None:
    run = dag_test(dag_file("rw_paths.py", PATHS_DAG), "rw_paths")
    tasks = outcome(run)
    assert {task: state for task, (state, _) in tasks.items()} == {
        "blocking": "success",  # waited on the worker (deferrable=False)
        "poke": "success",  # poke mode: one read per poke, judged by the core
        "fails": "failed",  # RemoteRunFailed after the trigger's error event
        "soft": "skipped",  # the same outcome under soft_fail
    }
    blocking = tasks["blocking"][1]
    assert blocking["return_value"]["status"] == "SUCCEEDED"
    assert tasks["poke"][1]["return_value"]["id"] == blocking["run_id"]
    # The default idempotency key: a start with it finds the run the task started.
    again = default_conn.create_run(idempotency_key=f"airflow:rw_paths:blocking:{run.run_id}:-1", **OK)
    assert again["id"] == blocking["run_id"]
