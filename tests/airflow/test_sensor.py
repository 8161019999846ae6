"""RunStatusSensor (and the resume path it shares with StartRunOperator), called as the task runner does."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from airflow.sdk import DAG, BaseSensorOperator, conf
from airflow.sdk.exceptions import (
    AirflowException,
    AirflowRescheduleException,
    AirflowSensorTimeout,
    AirflowSkipException,
    TaskDeferralTimeout,
    TaskDeferred,
)
from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance
from airflow.serialization.serialized_objects import OperatorSerialization

import runwatch
from runwatch.server import ReferenceServer
from runwatch_airflow import exceptions
from runwatch_airflow._waiting import _caused_by
from runwatch_airflow.links import RemoteRunLink
from runwatch_airflow.operators.runwatch import StartRunOperator
from runwatch_airflow.sensors.runwatch import RunStatusSensor
from runwatch_airflow.triggers.runwatch import RunStatusTrigger, event_result, result_event, status_payload

RUNNING = [{"status": "RUNNING", "for": 60}, {"status": "SUCCEEDED"}]
FAST = {"interval": 0.05, "max_interval": 0.2}
CONTEXT: Any = {}  # the task runner's context; these paths need none of it (links are best effort)


@pytest.fixture
def server(runwatch_server: ReferenceServer, connection: Callable[..., str]) -> ReferenceServer:
    connection(host=runwatch_server.url)
    return runwatch_server


def sensor(**kwargs: Any) -> RunStatusSensor:
    return RunStatusSensor(**{"task_id": "wait", "run": "r-1", "deferrable": True, "policy": FAST, **kwargs})


def test_a_deferrable_sensor_defers_to_the_trigger_with_an_absolute_deadline(server: ReferenceServer) -> None:
    run = server.create_run(script=RUNNING)
    task = sensor(run=run["id"], timeout=600, profile="standard", cancel_on_kill=True)
    begun = time.time()
    with pytest.raises(TaskDeferred) as deferred:
        task.execute(CONTEXT)
    trigger = deferred.value.trigger
    assert isinstance(trigger, RunStatusTrigger)
    assert deferred.value.method_name == "execute_complete"
    assert deferred.value.timeout == timedelta(seconds=660)  # Airflow's own backstop, a minute after ours
    kwargs = trigger.serialize()[1]
    assert begun + 600 <= kwargs.pop("deadline") <= time.time() + 600
    assert kwargs == {
        "run": run["id"],
        "conn_id": "runwatch_default",
        "started": None,
        "policy": FAST,
        "cancel_on_kill": True,
        "profile": "standard",
        "end_from_trigger": True,
        "trace": None,  # no task instance here: none to take (the e2e checks a real task's)
    }


def test_the_shortest_limit_is_the_deadline() -> None:
    assert sensor(timeout=600, execution_timeout=timedelta(seconds=90)).wait_seconds() == 90
    assert sensor(timeout=600, policy={"timeout": 30}).wait_seconds() == 30
    assert StartRunOperator(task_id="s").wait_seconds() is None
    assert StartRunOperator(task_id="s", timeout=timedelta(minutes=5)).wait_seconds() == 300


@pytest.mark.parametrize(("final", "error"), [("SUCCEEDED", None), ("FAILED", exceptions.RemoteRunFailed)])
def test_a_run_that_already_ended_is_judged_without_deferring(
    server: ReferenceServer, final: str, error: type[Exception] | None
) -> None:
    run = server.create_run(script=[{"status": final}])
    task = sensor(run=run["id"])
    if error is None:
        assert task.execute(CONTEXT)["status"] == "SUCCEEDED"
    else:
        with pytest.raises(error):
            task.execute(CONTEXT)


def event(outcome: str, run: dict[str, Any] | None = None) -> dict[str, Any]:
    """An error event of `RunStatusTrigger`: a `runwatch.WaitResult`."""
    status = run or {"id": "r-1", "status": "RUNNING"}
    return {
        "status": "error",
        "result": {"outcome": outcome, "message": f"{outcome}: one line", "status": status},
    }


def old_event(error: str) -> dict[str, Any]:
    """An error event as the previous version's trigger wrote it (a core class name)."""
    return {
        "status": "error",
        "error": error,
        "message": f"{error}: one line",
        "run": {"id": "r-1", "status": "RUNNING"},
    }


@pytest.mark.parametrize(
    ("outcome", "error", "raised"),
    [
        ("failed", "RunFailed", exceptions.RemoteRunFailed),
        ("cancelled", "RunCancelled", exceptions.RemoteRunCancelled),
        ("timed_out", "RunTimedOut", exceptions.RemoteRunTimedOut),
        ("partial", "RunPartiallySucceeded", exceptions.RemoteRunPartiallySucceeded),
        ("deadline", "WaitTimeout", exceptions.RemoteWaitTimeout),
        ("lost", "RunLost", exceptions.RemoteRunLost),
        ("unavailable", "StatusUnavailable", exceptions.RemoteStatusUnavailable),
        ("illegal", "IllegalTransition", exceptions.RemoteIllegalTransition),
        ("not_found", "RunNotFound", exceptions.RemoteRunNotFound),
        ("denied", "AccessDenied", exceptions.RemoteAccessDenied),
        ("bad_profile", "ProfileError", exceptions.RemoteProfileError),
        ("configuration", "ConfigurationError", exceptions.RemoteConfigurationError),
        ("bad_payload", "BadStatusPayload", exceptions.RemoteBadStatusPayload),
        ("error", "AirflowNotFoundException", exceptions.RunwatchAirflowError),
    ],
)
def test_execute_complete_raises_one_exception_per_outcome(
    outcome: str, error: str, raised: type[Exception]
) -> None:
    with pytest.raises(raised, match=f"^{outcome}: one line$") as info:
        sensor().execute_complete(CONTEXT, event(outcome))
    assert type(info.value) is raised and isinstance(info.value, exceptions.RunwatchAirflowError)
    # An event fired by the previous version's trigger before an upgrade resumes the same way after it.
    with pytest.raises(raised, match=f"^{error}: one line$") as info:
        sensor().execute_complete(CONTEXT, old_event(error))
    assert type(info.value) is raised


def test_our_deadline_is_a_sensor_timeout_so_airflow_does_not_retry_it() -> None:
    assert issubclass(exceptions.RemoteWaitTimeout, AirflowSensorTimeout)


def test_execute_complete_returns_the_final_status_and_refuses_odd_events() -> None:
    status = runwatch.RunStatus(id="r-1", status=runwatch.State.SUCCEEDED, output_ref="s3://x")
    new = result_event(runwatch.WaitResult.of_status(status))
    assert sensor().execute_complete(CONTEXT, new) == status_payload(status)
    old = {"status": "success", "run": status.to_dict()}  # the previous version's success event
    assert sensor().execute_complete(CONTEXT, old) == status_payload(status)
    odd_result = {"status": "error", "result": {"outcome": "exploded"}}
    for odd in (None, {"status": "maybe"}, "success", odd_result):
        with pytest.raises(exceptions.RunwatchAirflowError, match="unexpected event"):
            sensor().execute_complete(CONTEXT, odd)


def test_partial_success_follows_the_policy_on_resume() -> None:
    final = runwatch.RunStatus(id="r-1", status=runwatch.State.PARTIAL_SUCCESS).to_dict()
    assert sensor(policy={"partial_success": "succeed"}).execute_complete(
        CONTEXT, {"status": "success", "run": final}
    )
    with pytest.raises(exceptions.RemoteRunPartiallySucceeded):
        sensor().execute_complete(CONTEXT, {"status": "success", "run": final})


@pytest.mark.parametrize("error", ["failed", "deadline", "lost"])
def test_soft_fail_skips_through_airflows_resume_path(error: str) -> None:
    task = sensor(soft_fail=True)
    with pytest.raises(AirflowSkipException):
        task.resume_execution("execute_complete", {"event": event(error)}, CONTEXT)
    with pytest.raises(exceptions.RunwatchAirflowError):
        sensor().resume_execution("execute_complete", {"event": event(error)}, CONTEXT)


def test_a_deadline_passing_cancels_the_run_only_with_cancel_on_kill(server: ReferenceServer) -> None:
    kept, cancelled = (server.create_run(script=RUNNING) for _ in range(2))
    for run, cancel in ((kept, False), (cancelled, True)):
        with pytest.raises(exceptions.RemoteWaitTimeout):
            sensor(cancel_on_kill=cancel).execute_complete(CONTEXT, event("deadline", run))
    time.sleep(0.3)
    assert server.get_run(kept["id"])["status"] == "RUNNING"
    assert server.get_run(cancelled["id"])["status"] == "CANCELLED"


def test_poke_mode_reads_once_per_poke_and_judges_with_the_core(server: ReferenceServer) -> None:
    ok = server.create_run(script=[{"status": "RUNNING", "for": 0.5}, {"status": "SUCCEEDED"}])
    bad = server.create_run(script=[{"status": "FAILED", "errors": [{"message": "disk full"}]}])
    poking = {"deferrable": False, "mode": "poke", "poke_interval": 0.1}
    assert sensor(run=ok["id"], **poking).execute(CONTEXT)["status"] == "SUCCEEDED"
    assert 3 <= server.stats()["runs"][ok["id"]]["GET"] <= 10
    with pytest.raises(exceptions.RemoteRunFailed, match="disk full"):
        sensor(run=bad["id"], **poking).execute(CONTEXT)
    with pytest.raises(AirflowSkipException):
        sensor(run=bad["id"], soft_fail=True, **poking).execute(CONTEXT)
    with pytest.raises(exceptions.RemoteRunNotFound):
        sensor(run="r-nope", **poking).execute(CONTEXT)


def test_templated_fields_are_run_conn_id_and_profile() -> None:
    assert RunStatusSensor.template_fields == ("run", "conn_id", "profile")
    with DAG("templated", schedule=None):
        task = sensor(run="{{ params.run }}", conn_id="{{ params.conn }}", profile="{{ params.profile }}")
    task.render_template_fields({"params": {"run": "r-9", "conn": "api", "profile": "dbt_cloud"}})
    assert (task.run, task.conn_id, task.profile) == ("r-9", "api", "dbt_cloud")
    assert any(isinstance(link, RemoteRunLink) for link in RunStatusSensor.operator_extra_links)


def test_start_from_trigger_carries_the_trigger_through_dag_serialization() -> None:
    with DAG("sft", schedule=None):
        task = sensor(run="{{ params.run }}", start_from_trigger=True, timeout=120)
    args = task.start_trigger_args
    assert task.start_from_trigger and args is not None
    assert args.trigger_cls == "runwatch_airflow.triggers.runwatch.RunStatusTrigger"
    assert args.next_method == "execute_complete" and args.timeout == timedelta(seconds=120)
    assert args.trigger_kwargs == {**task.make_trigger("{{ params.run }}").serialize()[1], "deadline": None}
    assert RunStatusSensor.start_trigger_args is None  # the class default is untouched
    encoded = OperatorSerialization.serialize_operator(task)
    assert encoded["start_from_trigger"] is True
    assert encoded["start_trigger_args"]["trigger_cls"] == args.trigger_cls


def test_start_from_trigger_needs_deferral_and_a_string_run() -> None:
    with pytest.raises(ValueError, match="deferrable=True"):
        sensor(deferrable=False, start_from_trigger=True)
    with pytest.raises(ValueError, match="as a string"):
        sensor(run=["r-1"], start_from_trigger=True)


def test_deferrable_by_default_whatever_airflow_ships() -> None:
    assert conf.getboolean("operators", "default_deferrable") is False  # Airflow's shipped default
    assert RunStatusSensor(task_id="w", run="r").deferrable is True
    assert StartRunOperator(task_id="s").deferrable is True


def test_a_policy_is_checked_when_the_dag_is_parsed() -> None:
    with pytest.raises(ValueError, match="max_interval"):
        sensor(policy={"interval": 10, "max_interval": 1})
    assert sensor(policy=runwatch.Policy(interval=3)).policy == {"interval": 3.0}


@pytest.mark.parametrize("cancel_on_kill", [True, False])
def test_a_user_kill_while_poking_on_a_worker_cancels_only_with_cancel_on_kill(
    server: ReferenceServer, cancel_on_kill: bool
) -> None:
    run = server.create_run(script=RUNNING)
    task = sensor(run=run["id"], deferrable=False, cancel_on_kill=cancel_on_kill)
    assert not task.poke(CONTEXT)
    task.on_kill()
    time.sleep(0.3)
    assert server.get_run(run["id"])["status"] == ("CANCELLED" if cancel_on_kill else "RUNNING")


def cancelled_soon(server: ReferenceServer, run_id: str) -> bool:
    """Whether the run is CANCELLED within 10 s (a cancel is asynchronous)."""
    for _ in range(50):
        if server.get_run(run_id)["status"] == "CANCELLED":
            return True
        time.sleep(0.2)
    return False


def logged(out: str, line: str) -> bool:
    """Whether the task logger wrote exactly `line`: outside a task runner Airflow's structlog writes
    `<time> [<level>] <line> [<logger>] loc=...` to stdout, which capsys reads."""
    return re.search(rf"\] {re.escape(line)} +\[", out) is not None


# The first look (`peek`): a run no wait can change ends the task; passing trouble is left to the trigger.


def test_a_first_look_at_no_such_run_ends_the_task_with_its_typed_error(server: ReferenceServer) -> None:
    with pytest.raises(
        exceptions.RemoteRunNotFound,
        match=r"^no such run at http://127.0.0.1:\d+/runs/r-nope \(HTTP 404: no such run\)$",
    ) as info:
        sensor(run="r-nope").execute(CONTEXT)
    assert type(info.value) is exceptions.RemoteRunNotFound


def test_a_first_look_that_cannot_tell_defers_and_says_so(
    server: ReferenceServer, capsys: pytest.CaptureFixture[str]
) -> None:
    run = server.create_run(script=RUNNING, faults={"errors_5xx": {"first": 1, "status": 503}})
    with pytest.raises(TaskDeferred):
        sensor(run=run["id"]).execute(CONTEXT)
    assert logged(capsys.readouterr().out, f"could not read {run['id']} before deferring: the trigger will")


def test_a_run_read_still_going_at_the_first_look_defers_without_that_note(
    server: ReferenceServer, capsys: pytest.CaptureFixture[str]
) -> None:
    run = server.create_run(script=RUNNING)
    with pytest.raises(TaskDeferred):
        sensor(run=run["id"]).execute(CONTEXT)
    assert "could not read" not in capsys.readouterr().out


def test_a_success_is_logged_with_its_id_and_state(
    server: ReferenceServer, capsys: pytest.CaptureFixture[str]
) -> None:
    run = server.create_run(script=[{"status": "SUCCEEDED"}])
    assert sensor(run=run["id"]).execute(CONTEXT)["status"] == "SUCCEEDED"
    assert logged(capsys.readouterr().out, f"run {run['id']} ended SUCCEEDED")


# The deferral: what the trigger is told, and the run a later kill cancels.


def test_a_kill_after_deferring_cancels_the_run_the_task_deferred_on(
    server: ReferenceServer, capsys: pytest.CaptureFixture[str]
) -> None:
    run = server.create_run(script=RUNNING)
    task = sensor(run=run["id"], cancel_on_kill=True)
    with pytest.raises(TaskDeferred):
        task.execute(CONTEXT)
    task.on_kill()
    assert cancelled_soon(server, run["id"])
    assert logged(capsys.readouterr().out, f"task killed: cancelling run {run['id']}")


def test_the_operator_defers_on_the_run_it_started_with_or_without_a_limit(server: ReferenceServer) -> None:
    created = server.create_run(script=RUNNING)
    started = runwatch.StartedRun(runwatch.RunStatus.from_dict(created), created["url"])
    for timeout, grace in ((None, None), (30.0, 90.0)):
        task = StartRunOperator(task_id="job", conn_id="other_api", timeout=timeout, policy=FAST)
        begun = time.time()
        with pytest.raises(TaskDeferred) as deferred:
            task.defer_wait(CONTEXT, started.id, started)
        kwargs = deferred.value.trigger.serialize()[1]
        assert kwargs["started"] == started.to_dict()  # the 404 grace of our own start goes with it
        assert kwargs["conn_id"] == "other_api"
        assert (deferred.value.timeout.total_seconds() if deferred.value.timeout else None) == grace
        if timeout is None:
            assert kwargs["deadline"] is None
        else:
            assert begun + timeout <= kwargs["deadline"] <= time.time() + timeout


# The resume: events of this version and of the previous one.


def test_a_failure_event_never_cancels_even_with_cancel_on_kill(server: ReferenceServer) -> None:
    run = server.create_run(script=RUNNING)
    status = {"id": run["id"], "status": "RUNNING"}
    event = {"status": "error", "result": {"outcome": "lost", "message": "lost: one line", "status": status}}
    with pytest.raises(exceptions.RemoteRunLost, match=r"^lost: one line$"):
        sensor(run=run["id"], cancel_on_kill=True).resume_execution(
            "execute_complete", {"event": event}, CONTEXT
        )
    time.sleep(0.3)
    assert server.get_run(run["id"])["status"] == "RUNNING"


def test_a_previous_versions_deadline_event_cancels_the_run_it_names(server: ReferenceServer) -> None:
    run = server.create_run(script=RUNNING)
    event = {
        "status": "error",
        "error": "WaitTimeout",
        "message": "gave up",
        "run": {"id": run["id"], "status": "RUNNING"},
    }
    # The sensor was given the run's URL: only the event knows its id.
    task = sensor(run=f"{server.url}/runs/{run['id']}", cancel_on_kill=True)
    with pytest.raises(exceptions.RemoteWaitTimeout, match=r"^gave up$"):
        task.execute_complete(CONTEXT, event)
    assert cancelled_soon(server, run["id"])


def test_a_previous_versions_error_event_without_a_run_or_message() -> None:
    with pytest.raises(exceptions.RemoteRunFailed, match=r"^RunFailed$") as info:
        sensor().execute_complete(CONTEXT, {"status": "error", "error": "RunFailed", "run": None})
    assert type(info.value) is exceptions.RemoteRunFailed
    assert event_result({"status": "error", "error": "RunLost"}).outcome == "lost"


def test_airflows_trigger_timeout_cancels_a_run_given_by_its_url_by_its_id(server: ReferenceServer) -> None:
    run = server.create_run(script=RUNNING)
    task = sensor(run=f"{server.url}/runs/{run['id']}", cancel_on_kill=True)
    assert task.deferred_run_id(CONTEXT) == run["id"]  # the cancel endpoint takes an id: one read for it
    with pytest.raises(AirflowSensorTimeout):
        task.resume_execution("__fail__", {"error": "Trigger timeout"}, CONTEXT)
    assert cancelled_soon(server, run["id"])


def test_a_cancel_at_the_deadline_is_logged_and_one_that_fails_never_hides_the_timeout(
    server: ReferenceServer, capsys: pytest.CaptureFixture[str]
) -> None:
    run = server.create_run(script=RUNNING)
    with pytest.raises(exceptions.RemoteWaitTimeout, match=r"^deadline: one line$"):
        sensor(cancel_on_kill=True).execute_complete(CONTEXT, event("deadline", run))
    assert logged(capsys.readouterr().out, f"deadline passed: cancelling run {run['id']}")
    assert cancelled_soon(server, run["id"])
    gone = {"id": "r-gone", "status": "RUNNING"}  # the remote no longer knows it: the cancel fails
    with pytest.raises(exceptions.RemoteWaitTimeout, match=r"^deadline: one line$"):
        sensor(cancel_on_kill=True).execute_complete(CONTEXT, event("deadline", gone))
    refused = r"\] could not cancel run r-gone: no such run at http://\S+ \(HTTP 404: no such run\) +\["
    assert re.search(refused, capsys.readouterr().out)


def test_a_run_url_that_cannot_be_read_for_its_id_gives_none_and_says_why(
    server: ReferenceServer, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"{server.url}/runs/r-gone"
    assert sensor(run=url).deferred_run_id(CONTEXT) is None
    refused = f"no such run at {url} (HTTP 404: no such run)"
    assert logged(capsys.readouterr().out, f"could not read {url} for its id: {refused}")


def test_in_poke_mode_on_a_worker_execution_timeout_bounds_the_whole_wait() -> None:
    # Only reschedule mode leaves execution_timeout to Airflow (it bounds each poke there).
    poking = sensor(deferrable=False, mode="poke", timeout=600, execution_timeout=timedelta(seconds=90))
    assert poking.wait_seconds() == 90
    rescheduled = sensor(
        deferrable=False, mode="reschedule", timeout=600, execution_timeout=timedelta(seconds=90)
    )
    assert rescheduled.wait_seconds() == 600


def test_a_dag_parse_that_imports_the_sensor_loads_no_aiohttp() -> None:
    """DAG files import the sensor module at every parse: it must not pay for an HTTP transport, which is
    imported when a wait first opens a channel (in the worker or the triggerer)."""
    probe = (
        "import sys\n"
        "from airflow.sdk import DAG\n"
        "from runwatch_airflow.sensors.runwatch import RunStatusSensor\n"
        "print('aiohttp' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, check=True
    )
    assert done.stdout.strip().splitlines()[-1] == "False"


# The task instance's trace context: every request of a try carries it (the e2e reads a real worker's).

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def with_ti(task: RunStatusSensor) -> Any:
    """A task runner's context whose `ti` is Airflow's own RuntimeTaskInstance with a trace carrier. Built
    without the DAG bundle a worker loads the task from, and with no supervisor behind it: an XCom push
    raises, as a link push may, and the task carries on."""
    ti = RuntimeTaskInstance.model_construct(
        id=uuid.uuid4(),
        task_id=task.task_id,
        dag_id="d",
        run_id="manual",
        try_number=1,
        dag_version_id=uuid.uuid4(),
        map_index=-1,
        task=task,
        max_tries=0,
        start_date=datetime.now(UTC),
        context_carrier={"traceparent": PARENT, "tracestate": "rw=1"},
    )
    return {"ti": ti}


def traceparents(server: ReferenceServer, run_id: str) -> set[str]:
    return set(server.stats()["traceparents"][run_id])


def test_the_first_look_carries_the_task_instances_trace_and_a_failed_link_push_is_only_logged(
    server: ReferenceServer, capsys: pytest.CaptureFixture[str]
) -> None:
    run = server.create_run(script=[{"status": "SUCCEEDED"}])
    task = sensor(run=run["id"])
    assert task.execute(with_ti(task))["status"] == "SUCCEEDED"
    assert traceparents(server, run["id"]) == {PARENT}
    assert re.search(
        rf"\] no link to run {run['id']}: cannot import name 'SUPERVISOR_COMMS' .* +\[",
        capsys.readouterr().out,
    )


def test_a_deferral_hands_the_trace_to_the_trigger_and_a_kill_carries_it(server: ReferenceServer) -> None:
    run = server.create_run(script=RUNNING)
    task = sensor(run=run["id"], cancel_on_kill=True)
    with pytest.raises(TaskDeferred) as deferred:
        task.execute(with_ti(task))
    assert deferred.value.trigger.serialize()[1]["trace"] == {"traceparent": PARENT, "tracestate": "rw=1"}
    task.on_kill()
    assert cancelled_soon(server, run["id"])
    assert traceparents(server, run["id"]) == {PARENT}  # the first look and the cancel


def test_a_poke_and_the_read_for_a_urls_id_carry_the_trace(server: ReferenceServer) -> None:
    run = server.create_run(script=RUNNING)
    task = sensor(run=f"{server.url}/runs/{run['id']}", deferrable=False)
    context = with_ti(task)
    task.take_carrier(context)
    assert not task.poke(context)
    assert task.deferred_run_id(context) == run["id"]
    assert server.stats()["runs"][run["id"]]["GET"] == 2
    assert traceparents(server, run["id"]) == {PARENT}


def no_link(out: str, run_id: str) -> bool:
    """Whether a link push for `run_id` reached the task instance's `xcom_push` (which has no supervisor
    here) with the run's link: any other failure (no context, no run) logs another reason."""
    return (
        re.search(rf"\] no link to run {run_id}: cannot import name 'SUPERVISOR_COMMS' .* +\[", out)
        is not None
    )


def test_the_deferral_pushes_the_link_through_the_task_instance(
    server: ReferenceServer, capsys: pytest.CaptureFixture[str]
) -> None:
    run = server.create_run(script=RUNNING)
    task = sensor(run=run["id"])
    with pytest.raises(TaskDeferred):
        task.execute(with_ti(task))
    assert no_link(capsys.readouterr().out, run["id"])


def test_poke_mode_judges_with_the_task_instance_and_pushes_its_link(
    server: ReferenceServer, capsys: pytest.CaptureFixture[str]
) -> None:
    run = server.create_run(script=[{"status": "SUCCEEDED"}])
    task = sensor(run=run["id"], deferrable=False, mode="poke", poke_interval=0.1)
    assert task.execute(with_ti(task))["status"] == "SUCCEEDED"
    assert no_link(capsys.readouterr().out, run["id"])


def test_a_first_reschedule_mode_try_counts_its_deadline_from_now(server: ReferenceServer) -> None:
    """A try never rescheduled has no first reschedule date (Airflow asks its supervisor only after one)."""
    run = server.create_run(script=RUNNING)
    task = sensor(run=run["id"], deferrable=False, mode="reschedule", timeout=600)
    begun = time.time()
    with pytest.raises(AirflowRescheduleException):
        task.execute(with_ti(task))
    assert task._deadline is not None and begun + 600 <= task._deadline <= time.time() + 600


@pytest.mark.parametrize(
    ("outcome", "status"),
    [("succeeded", "SUCCEEDED"), ("failed", "FAILED"), ("unavailable", None)],
)
def test_a_resumed_try_pushes_the_link_of_the_run_it_waited_for(
    server: ReferenceServer, capsys: pytest.CaptureFixture[str], outcome: str, status: str | None
) -> None:
    run = server.create_run(script=[{"status": status or "RUNNING", "for": 60}])
    task = sensor(run=run["id"])
    final = {"id": run["id"], "status": status} if status else None
    resumed = {"status": "success" if status == "SUCCEEDED" else "error"}
    resumed["result"] = {"outcome": outcome, "message": f"{outcome}: one line", "status": final}  # type: ignore[assignment]
    if status == "SUCCEEDED":
        assert task.execute_complete(with_ti(task), resumed)["id"] == run["id"]
    else:
        with pytest.raises(exceptions.RunwatchAirflowError):
            task.execute_complete(with_ti(task), resumed)
    assert no_link(capsys.readouterr().out, run["id"])


def test_a_cancel_at_the_deadline_carries_the_trace(server: ReferenceServer) -> None:
    run = server.create_run(script=RUNNING)
    task = sensor(run=run["id"], cancel_on_kill=True)
    with pytest.raises(exceptions.RemoteWaitTimeout):
        task.execute_complete(with_ti(task), event("deadline", {"id": run["id"], "status": "RUNNING"}))
    assert cancelled_soon(server, run["id"])
    assert traceparents(server, run["id"]) == {PARENT}


def test_a_resumed_failure_is_not_a_deferral_timeout_so_nothing_is_cancelled(server: ReferenceServer) -> None:
    run = server.create_run(script=RUNNING)
    task = sensor(run=run["id"], cancel_on_kill=True)
    with pytest.raises(exceptions.RemoteRunFailed):
        task.resume_execution(
            "execute_complete", {"event": event("failed", {"id": run["id"], "status": "FAILED"})}, CONTEXT
        )
    time.sleep(0.3)  # a cancel would have ended the run by now (the server's takes 0.1 s)
    assert server.get_run(run["id"])["status"] == "RUNNING"


def test_only_a_short_cause_chain_is_searched_for_the_deferral_timeout() -> None:
    exc: BaseException = TaskDeferralTimeout()
    for _ in range(8):  # nine deep: further than Airflow ever chains (skip <- sensor timeout <- deferral)
        outer = AirflowException("wrapped")
        outer.__cause__ = exc
        exc = outer
    assert not _caused_by(exc, TaskDeferralTimeout)
    assert _caused_by(exc.__cause__, TaskDeferralTimeout)  # type: ignore[arg-type]


def test_a_zero_timeout_gives_up_at_the_first_poke_and_says_zero_seconds(server: ReferenceServer) -> None:
    run = server.create_run(script=RUNNING)
    task = sensor(run=run["id"], deferrable=False, mode="poke", timeout=0)
    message = f"gave up waiting after 0s (our deadline); run {run['id']} is RUNNING"
    with pytest.raises(exceptions.RemoteWaitTimeout, match=f"^{re.escape(message)}$"):
        task.execute(CONTEXT)


def test_with_exponential_backoff_the_pacing_is_airflows_without_a_deadline() -> None:
    task = sensor(deferrable=False, mode="poke", poke_interval=2, exponential_backoff=True)
    started = datetime(2026, 1, 1, tzinfo=UTC)
    airflows = BaseSensorOperator._get_next_poke_interval(task, started, lambda: 30.0, 5)
    assert airflows >= 16  # 2 s doubled three times, with jitter: not the plain poke_interval
    assert task._get_next_poke_interval(started, lambda: 30.0, 5) == airflows


def test_a_profile_object_is_kept_as_its_json_dict() -> None:
    profile = runwatch.load_profile("standard")
    assert sensor(profile=profile).profile == profile.to_dict()


def test_a_poke_logs_the_state_of_a_run_still_going(
    server: ReferenceServer, capsys: pytest.CaptureFixture[str]
) -> None:
    run = server.create_run(script=RUNNING)
    assert not sensor(run=run["id"], deferrable=False).poke(CONTEXT)
    assert logged(capsys.readouterr().out, f"run {run['id']} is RUNNING")


def test_any_failed_read_past_the_deadline_is_our_timeout(server: ReferenceServer) -> None:
    """Even one that no wait could change: the deadline had passed before the read was judged."""
    task = sensor(run="r-nope", deferrable=False, mode="poke", timeout=0)
    with pytest.raises(exceptions.RemoteWaitTimeout, match=r"^gave up waiting after 0s \(our deadline\); "):
        task.execute(CONTEXT)
