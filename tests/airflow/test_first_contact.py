"""A first read that no wait can change ends the task at once, in a readable way (issue 15)."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from airflow.dag_processing.dagbag import DagBag
from airflow.sdk.exceptions import AirflowSkipException, TaskDeferred

from runwatch.server import ReferenceServer
from runwatch_airflow import exceptions
from runwatch_airflow.sensors.runwatch import RunStatusSensor

CONTEXT: Any = {}  # the task runner's context; these paths need none of it (links are best effort)
RUNNING = [{"status": "RUNNING", "for": 60}, {"status": "SUCCEEDED"}]


def sensor(**kwargs: Any) -> RunStatusSensor:
    return RunStatusSensor(**{"task_id": "wait", "run": "r-1", "deferrable": True, **kwargs})


def test_a_refused_token_ends_the_task_without_deferring(
    runwatch_server_factory: Callable[..., ReferenceServer], connection: Callable[..., str], canary: str
) -> None:
    server = runwatch_server_factory(token=canary, retry_after=0)
    run = server.create_run(script=RUNNING)
    connection(host=server.url, password="not-the-token")
    with pytest.raises(exceptions.RemoteAccessDenied, match="HTTP 401") as caught:
        sensor(run=run["id"]).execute(CONTEXT)
    assert canary not in str(caught.value) and "not-the-token" not in str(caught.value)
    assert server.stats()["requests_total"] == 1  # one read, then the end: no trigger, no retries


def test_a_run_that_does_not_exist_ends_the_task_without_deferring(
    runwatch_server: ReferenceServer, connection: Callable[..., str]
) -> None:
    connection(host=runwatch_server.url)
    with pytest.raises(exceptions.RemoteRunNotFound, match=r"no such run at .*/runs/r-nope \(HTTP 404"):
        sensor(run="r-nope").execute(CONTEXT)
    with pytest.raises(AirflowSkipException):
        sensor(run="r-nope", soft_fail=True).execute(CONTEXT)


@pytest.mark.parametrize(
    ("conn", "task", "raised", "says"),
    [
        ({}, {"profile": "no_such_profile"}, exceptions.RemoteProfileError, "no_such_profile"),
        ({"host": "http://127.0.0.1:99999"}, {}, exceptions.RemoteConfigurationError, "has a bad port"),
        (  # no wait can change it: the credentials never go to another origin (runwatch.first_look)
            {"password": "t0k"},
            {"run": "http://127.0.0.2:9/runs/r-1"},
            exceptions.RemoteConfigurationError,
            "origin",
        ),
        (
            {},
            {"run": ""},
            exceptions.RunwatchArgumentError,  # refused by the task's argument check, naming `run`
            "^run is empty$",
        ),  # a template that rendered ''
    ],
)
def test_a_bad_profile_or_url_ends_the_task_without_deferring(
    runwatch_server: ReferenceServer,
    connection: Callable[..., str],
    conn: dict[str, Any],
    task: dict[str, Any],
    raised: type[Exception],
    says: str,
) -> None:
    connection(**{"host": runwatch_server.url, **conn})
    with pytest.raises(raised, match=says):
        sensor(**task).execute(CONTEXT)


def test_passing_trouble_on_the_first_read_is_left_to_the_trigger(
    runwatch_server: ReferenceServer, connection: Callable[..., str]
) -> None:
    connection(host=runwatch_server.url)
    run = runwatch_server.create_run(script=RUNNING, faults={"errors_5xx": {"first": 1, "status": 503}})
    with pytest.raises(TaskDeferred):
        sensor(run=run["id"]).execute(CONTEXT)


def test_a_sync_error_opens_with_our_exception_not_the_event_loop(
    runwatch_server: ReferenceServer, connection: Callable[..., str]
) -> None:
    connection(host=runwatch_server.url)
    with pytest.raises(exceptions.RemoteRunNotFound) as caught:
        sensor(run="r-nope", deferrable=False, mode="poke").execute(CONTEXT)
    printed = "".join(traceback.format_exception(caught.value))
    assert "no running event loop" not in printed
    assert printed.startswith("Traceback") and "runwatch._errors.RunNotFound: no such run at" in printed


FAILING_DAG = """
from datetime import datetime

from airflow.sdk import dag

from runwatch_airflow.sensors.runwatch import RunStatusSensor


@dag(schedule=None, start_date=datetime(2025, 1, 1), catchup=False)
def rw_first_contact():
    RunStatusSensor(task_id="missing", run="r-nope")


rw_first_contact()
"""


@pytest.mark.slow
@pytest.mark.usefixtures("airflow_db")
def test_a_failed_try_logs_no_xcom_not_found(
    runwatch_server: ReferenceServer,
    connection: Callable[..., str],
    dag_file: Callable[[str, str], Path],
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    connection(host=runwatch_server.url)
    dag = DagBag(dag_folder=str(dag_file("rw_first_contact.py", FAILING_DAG))).get_dag("rw_first_contact")
    assert dag is not None
    run = dag.test()
    assert run.state == "failed"
    printed = capfd.readouterr()
    logged = printed.out + printed.err + caplog.text
    assert "RemoteRunNotFound" in logged  # the logs were captured
    assert "XCom not found" not in logged
