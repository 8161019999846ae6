"""Airflow's own contracts in every mode (issue 16): one deadline rule and one cancel rule, `never_fail` and
`soft_fail` on every path, natively rendered templates, and what a retry does with the remote run."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from airflow.dag_processing.dagbag import DagBag
from airflow.models.dagrun import DagRun
from airflow.sdk import DAG
from airflow.sdk.exceptions import AirflowFailException, AirflowSensorTimeout, AirflowSkipException

import runwatch
from runwatch.server import ReferenceServer
from runwatch_airflow import exceptions
from runwatch_airflow.operators.runwatch import StartRunOperator
from runwatch_airflow.sensors.runwatch import RunStatusSensor
from runwatch_airflow.triggers.runwatch import RunStatusTrigger

RUNNING = [{"status": "RUNNING", "for": 120}, {"status": "SUCCEEDED"}]
FAST = {"interval": 0.05, "max_interval": 0.2}
CONTEXT: Any = {}  # the task runner's context; these paths need none of it (links are best effort)


@pytest.fixture
def server(runwatch_server: ReferenceServer, connection: Callable[..., str]) -> ReferenceServer:
    connection(host=runwatch_server.url)
    return runwatch_server


def sensor(**kwargs: Any) -> RunStatusSensor:
    return RunStatusSensor(**{"task_id": "wait", "run": "r-1", "policy": FAST, **kwargs})


def gets(server: ReferenceServer, run_id: str) -> int:
    return int(server.stats()["runs"][run_id]["GET"])


def status_soon(server: ReferenceServer, run_id: str, wanted: str) -> str:
    """The run's status once it is `wanted`, or the last one seen after 10 s (a cancel is asynchronous)."""
    status = ""
    for _ in range(50):
        status = str(server.get_run(run_id)["status"])
        if status == wanted:
            break
        time.sleep(0.2)
    return status


# Item 4: one deadline rule and one cancel rule in poke and reschedule modes.


def test_poke_mode_gives_up_at_the_policys_deadline_not_the_sensors_timeout(server: ReferenceServer) -> None:
    run = server.create_run(script=RUNNING)
    task = sensor(
        run=run["id"], deferrable=False, mode="poke", poke_interval=0.5, policy={"timeout": 2}, timeout=12
    )
    begun = time.monotonic()
    with pytest.raises(exceptions.RemoteWaitTimeout, match="after 2s"):
        task.execute(CONTEXT)
    assert time.monotonic() - begun < 11  # not the sensor's 12 s (a bound for "does not wait on")
    assert 2 <= gets(server, run["id"]) <= 6  # about one read per 0.5 s for 2 s, not 24
    assert server.get_run(run["id"])["status"] == "RUNNING"  # no cancel_on_kill: the run goes on


def test_a_long_poke_interval_still_ends_at_the_deadline(server: ReferenceServer) -> None:
    run = server.create_run(script=RUNNING)
    task = sensor(run=run["id"], deferrable=False, mode="poke", poke_interval=60, policy={"timeout": 1})
    begun = time.monotonic()
    with pytest.raises(exceptions.RemoteWaitTimeout):
        task.execute(CONTEXT)
    assert time.monotonic() - begun < 30  # the last poke is at the deadline, not a 60 s interval later
    assert gets(server, run["id"]) == 2  # the first poke and the one at the deadline


def test_the_sensors_own_timeout_in_poke_mode_cancels_with_cancel_on_kill(server: ReferenceServer) -> None:
    run = server.create_run(script=RUNNING)
    task = sensor(
        run=run["id"], deferrable=False, mode="poke", poke_interval=0.5, timeout=2, cancel_on_kill=True
    )
    with pytest.raises(exceptions.RemoteWaitTimeout):  # ours, not Airflow's bare AirflowSensorTimeout
        task.execute(CONTEXT)
    assert status_soon(server, run["id"], "CANCELLED") == "CANCELLED"


@pytest.mark.parametrize(
    ("flags", "skipped"), [({}, False), ({"soft_fail": True}, True), ({"never_fail": True}, True)]
)
def test_the_poke_deadline_follows_soft_fail_and_never_fail(
    server: ReferenceServer, flags: dict[str, bool], skipped: bool
) -> None:
    run = server.create_run(script=RUNNING)
    task = sensor(
        run=run["id"], deferrable=False, mode="poke", poke_interval=0.2, policy={"timeout": 0.5}, **flags
    )
    with pytest.raises(AirflowSkipException if skipped else exceptions.RemoteWaitTimeout):
        task.execute(CONTEXT)


def test_the_operator_waiting_on_a_worker_cancels_at_its_deadline(server: ReferenceServer) -> None:
    task = StartRunOperator(
        task_id="job", body={"script": RUNNING}, deferrable=False, timeout=1, cancel_on_kill=True, policy=FAST
    )
    started = server.create_run(script=RUNNING)  # what `start` returns, without a task instance
    with pytest.raises(exceptions.RemoteWaitTimeout):
        task._wait_here(runwatch.StartedRun(runwatch.RunStatus.from_dict(started), started["url"]))
    assert status_soon(server, started["id"], "CANCELLED") == "CANCELLED"


# Item 5: a run that had already ended when the sensor first looked.


@pytest.mark.parametrize("flag", ["never_fail", "soft_fail"])
def test_a_run_failed_at_the_first_look_skips_under_never_fail_and_soft_fail(
    server: ReferenceServer, flag: str
) -> None:
    run = server.create_run(script=[{"status": "FAILED", "errors": [{"message": "disk full"}]}])
    with pytest.raises(AirflowSkipException, match="disk full") as skipped:
        sensor(run=run["id"], **{flag: True}).execute(CONTEXT)
    assert isinstance(skipped.value.__cause__, exceptions.RemoteRunFailed)
    with pytest.raises(exceptions.RemoteRunFailed):
        sensor(run=run["id"]).execute(CONTEXT)


def test_never_fail_skips_in_poke_mode_and_on_resume_too(server: ReferenceServer) -> None:
    run = server.create_run(script=[{"status": "FAILED"}])
    with pytest.raises(AirflowSkipException):
        sensor(run=run["id"], deferrable=False, never_fail=True, poke_interval=0.1).execute(CONTEXT)
    event = {"status": "error", "error": "RunFailed", "message": "failed", "run": None}
    with pytest.raises(AirflowSkipException):
        sensor(never_fail=True).resume_execution("execute_complete", {"event": event}, CONTEXT)


# Item 6: templates rendered as native objects.


def native(task_id: str) -> DAG:
    return DAG(task_id, schedule=None, render_template_as_native_obj=True)


def test_a_run_id_rendered_as_an_int_is_taken_as_its_string(
    runwatch_server: ReferenceServer, connection: Callable[..., str]
) -> None:
    run = runwatch_server.create_run(script=[{"status": "SUCCEEDED"}])
    # The reference server's ids are not numbers: this profile reads its run whatever the id, with the
    # id in the query, so that a numeric id can go all the way to a request.
    profile = {
        **runwatch.load_profile("standard").to_dict(),
        "name": "by-ref",
        "status_url": "{base_url}/runs/{real}?ref={run_id}",
    }
    connection(host=runwatch_server.url, extra={"params": {"real": run["id"]}})
    with native("native_run"):
        task = sensor(run="{{ params.run_id }}", profile=profile)
    task.render_template_fields({"params": {"run_id": 4711}})
    assert task.run == 4711  # what Jinja's native rendering gives
    final = task.execute(CONTEXT)
    assert task.run == "4711"
    assert final["status"] == "SUCCEEDED"


@pytest.mark.parametrize(("value", "taken"), [(4711, "4711"), (47.5, "47.5"), (True, "true"), ("r-9", "r-9")])
def test_any_json_scalar_is_taken_as_its_string(value: Any, taken: str) -> None:
    task = sensor(run=value)
    task.take_arguments()
    assert task.run == taken


@pytest.mark.parametrize("value", [["r-1"], {"id": "r-1"}, None, "", "  "])
def test_anything_else_is_refused_naming_run(value: Any) -> None:
    task = sensor(run=value)
    with pytest.raises(exceptions.RunwatchArgumentError, match=r"^run (must be|is empty)"):
        task.execute(CONTEXT)


def test_every_templated_field_of_the_operator_is_checked() -> None:
    with native("native_op"):
        task = StartRunOperator(
            task_id="job",
            body="{{ params.body }}",
            conn_id="{{ params.conn }}",
            profile="{{ params.profile }}",
            idempotency_key="{{ params.key }}",
        )
    params = {"body": {"job": "x", "n": 1}, "conn": "runwatch_default", "profile": "standard", "key": 42}
    task.render_template_fields({"params": params})
    task.take_arguments()
    assert (task.body, task.conn_id, task.profile, task.idempotency_key) == (
        {"job": "x", "n": 1},
        "runwatch_default",
        "standard",
        "42",
    )
    for field, value, message in [
        ("body", ["x"], "^body must be a JSON object, got list$"),
        ("body", "not json", "^body must be a JSON object; the string is not JSON$"),
        ("conn_id", {"a": 1}, "^conn_id must be a string or a JSON scalar, got dict$"),
        ("profile", ["standard"], "^profile must be a name, a path or a JSON object, got list$"),
        ("idempotency_key", [1], "^idempotency_key must be a string or a JSON scalar, got list$"),
    ]:
        bad = StartRunOperator(task_id="job")
        setattr(bad, field, value)
        with pytest.raises(exceptions.RunwatchArgumentError, match=message):
            bad.take_arguments()


def test_a_body_rendered_as_a_json_string_is_parsed() -> None:
    task = StartRunOperator(task_id="job", body='{"job": "x"}')
    task.take_arguments()
    assert task.body == {"job": "x"}


def test_the_trigger_renders_a_numeric_id_and_refuses_an_empty_one() -> None:
    # The triggerer renders a start_from_trigger task's fields as strings, even under native rendering.
    with native("native_trigger"):
        task = sensor(run="{{ params.run_id }}", start_from_trigger=True)
    assert task.start_trigger_args is not None
    trigger = RunStatusTrigger(**task.start_trigger_args.trigger_kwargs)
    trigger.render_template_fields({"params": {"run_id": 4711}})
    assert trigger.run_ref == "4711"
    refused = RunStatusTrigger(**task.start_trigger_args.trigger_kwargs)
    with pytest.raises(exceptions.RunwatchArgumentError, match=r"^run is empty$"):
        refused.render_template_fields({"params": {"run_id": ""}})


# Whole DAGs through dag.test(): reschedule mode across reschedules, and retries of StartRunOperator.

CONTRACTS_DAG = """
from datetime import datetime, timedelta

from airflow.sdk import dag

from runwatch_airflow.operators.runwatch import StartRunOperator
from runwatch_airflow.sensors.runwatch import RunStatusSensor

POLICY = {"interval": 0.2, "max_interval": 0.5}


@dag(schedule=None, start_date=datetime(2025, 1, 1), catchup=False, params={"running": ""})
def rw_contracts():
    RunStatusSensor(
        task_id="rescheduled",
        run="{{ params.running }}",
        deferrable=False,
        mode="reschedule",
        poke_interval=1,
        policy={"timeout": 3},
        timeout=600,
        cancel_on_kill=True,
    )
    StartRunOperator(
        task_id="failed_then_new",
        body={"script": [{"status": "FAILED", "errors": [{"message": "disk full"}]}]},
        policy=POLICY,
        retries=1,
        retry_delay=timedelta(0),
    )
    StartRunOperator(
        task_id="lost_then_found",
        # The first try is killed at 4 s while the run goes on; the retry finds it and sees it end at 5 s,
        # with 3 s to spare before its own timeout, as a loaded machine may take that long between tries.
        body={"script": [{"status": "RUNNING", "for": 5}, {"status": "SUCCEEDED"}]},
        policy=POLICY,
        deferrable=False,
        execution_timeout=timedelta(seconds=4),
        retries=1,
        retry_delay=timedelta(0),
    )


rw_contracts()
"""


def test_reschedule_deadline_retries_and_the_remote_run(
    server: ReferenceServer, dag_file: Callable[..., Path], airflow_db: Path
) -> None:
    running = server.create_run(script=RUNNING)
    path = dag_file("rw_contracts.py", CONTRACTS_DAG)
    dag = DagBag(dag_folder=str(path)).get_dag("rw_contracts")
    assert dag is not None
    run: DagRun = dag.test(run_conf={"running": running["id"]})
    tis = {ti.task_id: ti for ti in run.get_task_instances()}

    # Reschedule mode: the policy's 3 s count from the first poke across reschedules, then the cancel.
    assert str(tis["rescheduled"].state) == "failed"
    assert status_soon(server, running["id"], "CANCELLED") == "CANCELLED"
    assert 2 <= gets(server, running["id"]) <= 10  # about one read a second for 3 s, not for 600

    # A retry after the remote run failed starts a new run; each try reported its own run.
    stats = server.stats()["runs"]
    assert str(tis["failed_then_new"].state) == "failed" and tis["failed_then_new"].try_number == 2
    failed = [run_id for run_id, counters in stats.items() if run_id != running["id"] and counters]
    bodies = {run_id: server.get_run(run_id) for run_id in failed}
    assert sum(1 for status in bodies.values() if status["status"] == "FAILED") == 2

    # A retry after the first try lost a live run (killed at its execution_timeout) finds that run again.
    assert str(tis["lost_then_found"].state) == "success" and tis["lost_then_found"].try_number == 2
    final = tis["lost_then_found"].xcom_pull(task_ids="lost_then_found")
    assert final["status"] == "SUCCEEDED"
    assert sum(1 for status in bodies.values() if status["status"] == "SUCCEEDED") == 1
    assert server.stats()["runs_created"] == 4  # the sensor's run, two failed ones, one found again


@pytest.mark.parametrize("flags", [{}, {"soft_fail": True}])
def test_airflows_own_trigger_timeout_cancels_with_cancel_on_kill(
    server: ReferenceServer, flags: dict[str, bool]
) -> None:
    # With start_from_trigger Airflow's trigger timeout is the deadline: it resumes the task with no event.
    kept, cancelled = (server.create_run(script=RUNNING) for _ in range(2))
    for run, cancel in ((kept, False), (cancelled, True)):
        task = sensor(run=run["id"], cancel_on_kill=cancel, **flags)
        failure = {"error": "Trigger timeout"}  # what the scheduler stores when a trigger times out
        with pytest.raises(AirflowSkipException if flags else AirflowSensorTimeout):
            task.resume_execution("__fail__", failure, CONTEXT)
    assert status_soon(server, cancelled["id"], "CANCELLED") == "CANCELLED"
    assert server.get_run(kept["id"])["status"] == "RUNNING"


def test_silent_fail_keeps_poking_past_a_failed_read_but_not_past_a_failed_run(
    server: ReferenceServer,
) -> None:
    run = server.create_run(script=[{"status": "FAILED", "errors": [{"message": "disk full"}]}])
    task = sensor(run=run["id"], deferrable=False, silent_fail=True, poke_interval=0.1, timeout=30)
    with pytest.raises(AirflowFailException, match="disk full") as failed:
        task.execute(CONTEXT)
    assert isinstance(failed.value.__cause__, exceptions.RemoteRunFailed)
    assert gets(server, run["id"]) == 1  # not re-read until the sensor's timeout


def test_a_read_that_fails_past_the_deadline_is_our_timeout_and_cancels(server: ReferenceServer) -> None:
    run = server.create_run(script=RUNNING)
    server.set_faults(errors_5xx={"every": 1, "status": 503})  # every status read fails from now on
    task = sensor(
        run=run["id"], deferrable=False, poke_interval=0.2, policy={"timeout": 1}, cancel_on_kill=True
    )
    with pytest.raises(exceptions.RemoteWaitTimeout, match="the last read failed"):
        task.execute(CONTEXT)
    server.set_faults()  # the cancel went through; now the test can read the run
    assert status_soon(server, run["id"], "CANCELLED") == "CANCELLED"
