"""RunStatusTrigger against the reference server: kwargs, one event per outcome, resumability, on_kill."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from airflow.executors.workloads.task import TaskInstanceDTO
from airflow.sdk.serde import deserialize, serialize
from airflow.triggers.base import TriggerEvent

import runwatch
from runwatch.server import ReferenceServer
from runwatch_airflow import exceptions
from runwatch_airflow.hooks.runwatch import RunStatusHook
from runwatch_airflow.triggers.runwatch import RunStatusTrigger, status_payload, success_xcoms

FAST = {"interval": 0.05, "max_interval": 0.2, "unavailable_after": 10}
CLASSPATH = "runwatch_airflow.triggers.runwatch.RunStatusTrigger"
PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def script(*steps: tuple[str, float], final: str = "SUCCEEDED", **last: Any) -> list[dict[str, Any]]:
    return [*({"status": s, "for": d} for s, d in steps), {"status": final, **last}]


async def events(trigger: RunStatusTrigger) -> list[dict[str, Any]]:
    out: list[TriggerEvent] = [event async for event in trigger.run()]
    return [event.payload for event in out]


@pytest.fixture
def server_conn(runwatch_server: ReferenceServer, connection: Callable[..., str]) -> ReferenceServer:
    connection(host=runwatch_server.url)
    return runwatch_server


def test_serialize_round_trips_as_plain_json_without_secrets(
    connection: Callable[..., str], canary: str
) -> None:
    connection(host="http://127.0.0.1:9", password=canary)
    started = runwatch.StartedRun(
        runwatch.RunStatus(id="r-1", status=runwatch.State.QUEUED), "http://127.0.0.1:9/runs/r-1", 1.0
    )
    trigger = RunStatusTrigger(
        run="r-1",
        conn_id="runwatch_default",
        started=started.to_dict(),
        policy=runwatch.Policy(interval=1, heartbeat_timeout=30).to_dict(),
        deadline=1_900_000_000.5,
        cancel_on_kill=True,
        profile={"name": "inline", "status_url": "{base_url}/runs/{run_id}"},
        trace={"traceparent": PARENT, "tracestate": "airflow/task_span_detail_level=1"},
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == CLASSPATH
    assert RunStatusTrigger(**kwargs).serialize() == (classpath, kwargs)
    assert json.loads(json.dumps(kwargs)) == kwargs  # JSON primitives only
    assert deserialize(serialize(kwargs)) == kwargs  # what Airflow 3.2+ stores (serde raises on other types)
    assert canary not in json.dumps(kwargs) and canary not in repr(trigger)


def rebuilt(trigger: RunStatusTrigger) -> RunStatusTrigger:
    """The trigger as the triggerer rebuilds it: from kwargs stored through JSON and Airflow's serde."""
    classpath, kwargs = trigger.serialize()
    assert classpath == CLASSPATH
    return RunStatusTrigger(**deserialize(serialize(json.loads(json.dumps(kwargs)))))


async def test_a_rebuilt_trigger_waits_as_the_original_would(server_conn: ReferenceServer) -> None:
    """Behaviour, not kwargs compared to themselves: the profile and the policy must both survive the trip.
    The inline profile reads the remote's FAILED as PARTIAL_SUCCESS and the policy counts partial success as
    success, so only a trigger that kept both reports success; a kept deadline ends the second wait."""
    run = server_conn.create_run(script=script(("RUNNING", 0.2), final="FAILED"))
    profile = {
        "name": "inline",
        "status_url": "{base_url}/runs/{run_id}",
        "states": {"RUNNING": "RUNNING", "FAILED": "PARTIAL_SUCCESS"},
    }
    policy = runwatch.Policy(**FAST, partial_success="succeed").to_dict()
    [event] = await events(rebuilt(RunStatusTrigger(run=run["id"], policy=policy, profile=profile)))
    final = event["result"]["status"]
    assert (event["status"], final["status"], final["raw_status"]) == ("success", "PARTIAL_SUCCESS", "FAILED")
    endless = server_conn.create_run(script=script(("RUNNING", 60)))
    late = rebuilt(RunStatusTrigger(run=endless["id"], policy=FAST, deadline=time.time() + 0.3))
    [event] = await asyncio.wait_for(events(late), 20)
    assert (event["status"], event["result"]["outcome"]) == ("error", "deadline")


async def test_success_yields_exactly_one_event_with_the_final_status(server_conn: ReferenceServer) -> None:
    run = server_conn.create_run(script=script(("QUEUED", 0.05), ("RUNNING", 0.2), output_ref="s3://out/1"))
    [event] = await events(RunStatusTrigger(run=run["id"], policy=FAST))
    assert event["status"] == "success"
    assert (
        event["result"]["status"]["id"],
        event["result"]["status"]["status"],
        event["result"]["status"]["output_ref"],
    ) == (
        run["id"],
        "SUCCEEDED",
        "s3://out/1",
    )
    assert event["result"]["status"]["observed_at"] is None  # HA duplicates of one event must compare equal


async def test_every_request_carries_the_tasks_trace_context_from_the_kwargs(
    server_conn: ReferenceServer,
) -> None:
    run = server_conn.create_run(script=script(("RUNNING", 0.2)))
    trigger = RunStatusTrigger(run=run["id"], policy=FAST, cancel_on_kill=True, trace={"traceparent": PARENT})
    [event] = await events(trigger)
    await trigger.on_kill()
    assert event["status"] == "success"
    stats = server_conn.stats()
    # Airflow's tracing is off in this process: the wait's span is a no-op that keeps the task's parent
    assert stats["traceparents"][run["id"]] == {PARENT: stats["runs"][run["id"]]["GET"] + 1}


@pytest.mark.parametrize(
    ("final", "error"), [("FAILED", "failed"), ("CANCELLED", "cancelled"), ("TIMED_OUT", "timed_out")]
)
async def test_unsuccessful_ends_are_typed_error_events_with_the_remote_message(
    server_conn: ReferenceServer, final: str, error: str
) -> None:
    errors = [{"code": "E42", "message": "disk full on node 3", "category": "infrastructure"}]
    run = server_conn.create_run(script=script(("RUNNING", 0.1), final=final, errors=errors))
    [event] = await events(RunStatusTrigger(run=run["id"], policy=FAST))
    assert (event["status"], event["result"]["outcome"]) == ("error", error)
    assert "disk full on node 3" in event["result"]["message"] and "\n" not in event["result"]["message"]
    assert (
        event["result"]["status"]["status"] == final
        and event["result"]["status"]["errors"][0]["code"] == "E42"
    )


async def test_a_run_cancelled_mid_wait_ends_in_run_cancelled(server_conn: ReferenceServer) -> None:
    run = server_conn.create_run(script=script(("RUNNING", 30)))
    task = asyncio.create_task(events(RunStatusTrigger(run=run["id"], policy=FAST)))
    await asyncio.sleep(0.3)
    await asyncio.to_thread(server_conn.cancel_run, run["id"])
    [event] = await asyncio.wait_for(task, 10)
    assert (event["result"]["outcome"], event["result"]["status"]["status"]) == ("cancelled", "CANCELLED")


async def test_a_429_storm_is_waited_out_as_retry_after_asks(server_conn: ReferenceServer) -> None:
    run = server_conn.create_run(
        script=script(("RUNNING", 0.05)), faults={"rate_limit": {"first": 4, "retry_after": 0.5}}
    )
    begun = time.monotonic()
    [event] = await events(RunStatusTrigger(run=run["id"], policy=FAST))
    assert event["status"] == "success"
    assert time.monotonic() - begun >= 4 * 0.5 * 0.9  # each 429 paused the wait for its Retry-After
    counters = server_conn.stats()["runs"][run["id"]]
    assert counters["429"] == 4 and counters["GET"] <= 4 + 3  # no hammering while rate limited


async def test_a_5xx_burst_is_ridden_out(server_conn: ReferenceServer) -> None:
    run = server_conn.create_run(script=script(("RUNNING", 0.2)), faults={"errors_5xx": {"first": 5}})
    [event] = await events(RunStatusTrigger(run=run["id"], policy=FAST))
    assert event["status"] == "success"
    assert server_conn.stats()["runs"][run["id"]]["5xx"] == 5


async def test_a_zombie_whose_heartbeat_stops_is_lost(server_conn: ReferenceServer) -> None:
    run = server_conn.create_run(
        script=script(("RUNNING", 60)), heartbeat_every=0.05, stop_heartbeat_after=0.2
    )
    [event] = await events(RunStatusTrigger(run=run["id"], policy={**FAST, "heartbeat_timeout": 0.5}))
    assert (event["result"]["outcome"], event["result"]["status"]["status"]) == ("lost", "RUNNING")
    assert "heartbeat" in event["result"]["message"]


@pytest.mark.parametrize(("rule", "outcome"), [("ignore", "succeeded"), ("raise", "illegal")])
async def test_an_illegal_regression_is_ignored_or_raised_by_policy(
    server_conn: ReferenceServer, rule: str, outcome: str
) -> None:
    run = server_conn.create_run(script=script(("RUNNING", 0.3), ("QUEUED", 0.3)))
    [event] = await events(RunStatusTrigger(run=run["id"], policy={**FAST, "on_illegal": rule}))
    assert event["result"]["outcome"] == outcome
    if rule == "ignore":
        assert event["result"]["status"]["status"] == "SUCCEEDED"


async def test_status_unreadable_too_long_is_unavailable_with_the_last_status(
    server_conn: ReferenceServer,
) -> None:
    run = server_conn.create_run(script=script(("RUNNING", 60)))
    trigger = RunStatusTrigger(run=run["id"], policy={**FAST, "unavailable_after": 0.5})
    task = asyncio.create_task(events(trigger))
    await asyncio.sleep(0.3)
    await asyncio.to_thread(server_conn.set_faults, errors_5xx={"every": 1})
    [event] = await asyncio.wait_for(task, 20)
    assert (event["result"]["outcome"], event["result"]["status"]["status"]) == ("unavailable", "RUNNING")


async def test_our_deadline_is_absolute_and_ends_in_wait_timeout(server_conn: ReferenceServer) -> None:
    run = server_conn.create_run(script=script(("RUNNING", 60)))
    [event] = await events(RunStatusTrigger(run=run["id"], policy=FAST, deadline=time.time() + 0.5))
    assert (event["result"]["outcome"], event["result"]["status"]["status"]) == ("deadline", "RUNNING")
    assert server_conn.get_run(run["id"])["status"] == "RUNNING"  # the remote run goes on


async def test_rebuilt_from_kwargs_mid_wait_it_polls_again_and_fires_once(
    server_conn: ReferenceServer,
) -> None:
    """A triggerer restart: the running trigger is cancelled, then rebuilt from its stored kwargs."""
    run = server_conn.create_run(script=script(("RUNNING", 1.5)))
    first = RunStatusTrigger(run=run["id"], policy=FAST, deadline=time.time() + 60)
    kwargs = first.serialize()[1]
    fired: list[dict[str, Any]] = []

    async def drive(trigger: RunStatusTrigger) -> None:
        fired.extend([event.payload async for event in trigger.run()])

    task = asyncio.create_task(drive(first))
    await asyncio.sleep(0.5)
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert fired == []  # a cancelled trigger fires nothing
    rebuilt = RunStatusTrigger(**json.loads(json.dumps(kwargs)))
    assert rebuilt.deadline == first.deadline  # the original absolute deadline
    await asyncio.wait_for(drive(rebuilt), 10)
    assert [event["status"] for event in fired] == ["success"]
    assert server_conn.get_run(run["id"])["status"] == "SUCCEEDED"  # not cancelled by the restart


async def test_a_wait_after_our_own_start_tolerates_read_after_write_404(
    server_conn: ReferenceServer,
) -> None:
    started = await RunStatusHook().astart_run(
        {"script": script(("RUNNING", 0.2)), "not_found_for": 1.5}
    )  # > Retry-After (1 s)
    [event] = await events(RunStatusTrigger(run=started.id, started=started.to_dict(), policy=FAST))
    assert event["status"] == "success"
    assert server_conn.stats()["runs"][started.id]["404"] >= 1


@pytest.mark.parametrize(
    ("case", "error"),
    [
        ("no such run", "not_found"),
        ("wrong token", "denied"),
        ("no such connection", "error"),
        ("unknown profile", "bad_profile"),
    ],
)
async def test_errors_before_any_status_are_error_events_never_crashes(
    runwatch_server_factory: Callable[..., ReferenceServer],
    connection: Callable[..., str],
    canary: str,
    case: str,
    error: str,
) -> None:
    server = runwatch_server_factory(token=canary)
    connection(host=server.url, password="not-the-token" if case == "wrong token" else canary)
    run = server.create_run(script=script(("RUNNING", 0.1)))
    trigger = RunStatusTrigger(
        run="r-nope" if case == "no such run" else run["id"],
        conn_id="missing" if case == "no such connection" else "runwatch_default",
        profile="no-such-profile" if case == "unknown profile" else None,
        policy=FAST,
    )
    [event] = await events(trigger)
    assert (event["status"], event["result"]["outcome"], event["result"]["status"]) == ("error", error, None)
    assert canary not in json.dumps(event)


@pytest.mark.parametrize("cancel_on_kill", [True, False])
async def test_on_kill_cancels_only_when_asked_and_cleanup_never(
    server_conn: ReferenceServer, cancel_on_kill: bool
) -> None:
    run = server_conn.create_run(script=script(("RUNNING", 60)))
    trigger = RunStatusTrigger(run=run["id"], policy=FAST, cancel_on_kill=cancel_on_kill)
    task = asyncio.create_task(events(trigger))
    await asyncio.sleep(0.3)
    task.cancel()  # how the triggerer stops a trigger, before it calls on_kill (user action) and cleanup
    with pytest.raises(asyncio.CancelledError):
        await task
    await trigger.cleanup()
    assert server_conn.get_run(run["id"])["status"] == "RUNNING"
    await trigger.on_kill()
    await asyncio.sleep(0.3)  # the server's cancel takes 0.1 s
    assert server_conn.get_run(run["id"])["status"] == ("CANCELLED" if cancel_on_kill else "RUNNING")


def test_on_kill_is_airflow_3_3_user_kill_hook() -> None:
    from airflow.triggers.base import BaseTrigger

    assert "on_kill" in vars(BaseTrigger) and RunStatusTrigger.on_kill is not BaseTrigger.on_kill
    assert RunStatusTrigger.cleanup is BaseTrigger.cleanup  # nothing remote happens on cleanup


async def test_many_triggers_share_the_loop_and_one_pool(server_conn: ReferenceServer) -> None:
    """200 waits in one loop, as a triggerer runs them: one pool, not a connection per wait or per poll.

    How long the loop stalls is measured by the benchmarks (bench/), not asserted here: on a shared machine
    a stall says more about the neighbours than about the code."""
    runs = [server_conn.create_run(script=script(("RUNNING", 1.0))) for _ in range(200)]
    connections_before = server_conn.stats()["connections"]
    results = await asyncio.gather(*(events(RunStatusTrigger(run=r["id"], policy=FAST)) for r in runs))
    assert all(event["status"] == "success" for [event] in results)
    assert server_conn.stats()["connections"] - connections_before <= 100  # one pool, not one per wait


def test_render_template_fields_renders_the_task_templates_started_from_the_triggerer() -> None:
    trigger = RunStatusTrigger(
        run="{{ params.run }}", conn_id="{{ params.conn }}", profile="{{ params.profile }}"
    )
    context: Any = {"params": {"run": "r-42", "conn": "my_api", "profile": "dbt_cloud"}}
    trigger.render_template_fields(context)
    assert (trigger.run_ref, trigger.conn_id, trigger.profile) == ("r-42", "my_api", "dbt_cloud")


async def test_end_from_trigger_outside_a_triggerer_fires_the_plain_success_event(
    server_conn: ReferenceServer,
) -> None:
    """Only a triggerer gives a trigger its task instance (to push XCom and end the task); elsewhere, as
    in dag.test(), the task resumes with the usual event."""
    run = server_conn.create_run(script=script(("RUNNING", 0.1)))
    [event] = await events(RunStatusTrigger(run=run["id"], policy=FAST, end_from_trigger=True))
    assert (event["status"], event["result"]["status"]["status"]) == ("success", "SUCCEEDED")


async def test_a_pause_asked_by_one_trigger_never_outlives_anothers_deadline(
    server_conn: ReferenceServer,
) -> None:
    """Two triggers in one loop, one origin: an hour's Retry-After for one must not hang the other."""
    quiet = server_conn.create_run(script=script(("RUNNING", 600)))
    limited = server_conn.create_run(
        script=script(("RUNNING", 600)), faults={"rate_limit": {"every": 1, "retry_after": 3600}}
    )
    deadline = time.time() + 3
    first = asyncio.create_task(events(RunStatusTrigger(run=quiet["id"], policy=FAST, deadline=deadline)))
    await asyncio.sleep(0.5)  # the quiet wait has seen its run RUNNING
    second = events(RunStatusTrigger(run=limited["id"], policy=FAST, deadline=deadline))
    [mine], [theirs] = await asyncio.wait_for(asyncio.gather(first, second), 30)
    assert (mine["result"]["outcome"], mine["result"]["status"]["status"]) == ("deadline", "RUNNING")
    assert theirs["result"]["outcome"] == "deadline" and theirs["result"]["status"] is None
    assert time.time() - deadline < 3  # ended at the deadline, not an hour later


async def test_a_heartbeat_is_not_logged_as_a_change(
    server_conn: ReferenceServer, capsys: pytest.CaptureFixture[str]
) -> None:
    run = server_conn.create_run(script=script(("RUNNING", 1.0)), heartbeat_every=0.05)
    [event] = await events(RunStatusTrigger(run=run["id"], policy=FAST))
    assert event["status"] == "success"
    logged = capsys.readouterr().out  # Airflow's structlog writes the trigger's log lines here
    said = [word for word in ("RUNNING", "SUCCEEDED") for _ in range(logged.count(f"{run['id']} is {word}"))]
    assert said == ["RUNNING", "SUCCEEDED"]  # a line per change, none per heartbeat


async def test_client_credentials_outlive_a_long_wait_with_one_token_per_lifetime(
    runwatch_server_factory: Callable[..., ReferenceServer], connection: Callable[..., str], canary: str
) -> None:
    """Ten triggers on one connection, over about four token lifetimes: tokens are renewed in time, once
    per lifetime for all of them (counted at the server), and the client secret is in no kwarg or event."""
    server = runwatch_server_factory(
        retry_after=0, client_credentials=("af-client", canary), token_lifetime=1.0
    )
    connection(
        host=server.url,
        login="af-client",
        password=canary,
        extra={"auth_style": "client_credentials", "token_url": f"{server.url}/oauth/token"},
    )
    runs = [server.create_run(script=script(("RUNNING", 3.5))) for _ in range(10)]
    triggers = [RunStatusTrigger(run=r["id"], policy=FAST) for r in runs]
    results = await asyncio.wait_for(asyncio.gather(*(events(t) for t in triggers)), 60)
    assert all(event["status"] == "success" for [event] in results)
    tokens = server.stats()["tokens"]
    assert (
        3 <= tokens["issued"] <= 6 and tokens["expired_seen"] == 0
    )  # ~one per lifetime (1 s, renewed early)
    said = json.dumps([t.serialize() for t in triggers]) + json.dumps(results)
    assert canary not in said


# The trigger's spec and event data.


def test_of_spec_keeps_every_field_and_defaults_to_neither_cancel_nor_end_in_the_trigger() -> None:
    started = runwatch.StartedRun(
        runwatch.RunStatus(id="r-7", status=runwatch.State.QUEUED), "http://x/runs/r-7"
    )
    spec = runwatch.WaitSpec(
        run="r-7",
        api=None,
        started=started.to_dict(),
        policy=FAST,
        deadline=5.0,
        trace={"traceparent": PARENT},
    )
    kwargs = RunStatusTrigger.of_spec(spec).serialize()[1]
    assert kwargs == {
        "run": "r-7",
        "conn_id": "runwatch_default",
        "started": started.to_dict(),
        "policy": FAST,
        "deadline": 5.0,
        "cancel_on_kill": False,
        "profile": None,
        "end_from_trigger": False,
        "trace": {"traceparent": PARENT},
    }
    named = RunStatusTrigger.of_spec(spec.model_copy(update={"api": "other_api"}))
    assert named.serialize()[1]["conn_id"] == "other_api"


def test_a_status_payload_leaves_out_when_it_was_observed() -> None:
    status = runwatch.RunStatus(id="r-1", status=runwatch.State.SUCCEEDED, observed_at=datetime.now(UTC))
    assert "observed_at" in status.to_dict()
    payload = status_payload(status)
    assert "observed_at" not in payload and payload == {
        k: v for k, v in status.to_dict().items() if k != "observed_at"
    }


def test_the_trigger_names_conn_id_when_it_renders_to_the_wrong_kind() -> None:
    trigger = RunStatusTrigger(run="r-1", conn_id="{{ params.conn }}")
    with pytest.raises(exceptions.RunwatchArgumentError, match=r"^conn_id is empty$"):
        trigger.render_template_fields({"params": {"conn": ""}})


def logged(out: str, line: str) -> bool:
    """Whether the trigger logged exactly `line`: Airflow's structlog writes `<time> [<level>] <line>
    [<logger>] loc=...` to stdout, which capsys reads."""
    return re.search(rf"\] {re.escape(line)} +\[", out) is not None


async def wait_for_line(capsys: pytest.CaptureFixture[str], line: str) -> str:
    """What the trigger logged up to `line` (Airflow's structlog writes to stdout); at most 10 s."""
    out = ""
    for _ in range(200):
        out += capsys.readouterr().out
        if line in out:
            return out
        await asyncio.sleep(0.05)
    raise AssertionError(f"never logged {line!r}: {out}")


async def cancelled(server: ReferenceServer, run_id: str) -> str:
    """The run's status once a cancel reached it (the server takes 0.1 s to end it); at most 10 s."""
    for _ in range(200):
        status = str(server.get_run(run_id)["status"])
        if status != "RUNNING":
            return status
        await asyncio.sleep(0.05)
    return "RUNNING"


async def test_on_kill_cancels_the_run_it_saw_by_id_when_given_its_url(
    server_conn: ReferenceServer, capsys: pytest.CaptureFixture[str]
) -> None:
    run = server_conn.create_run(script=script(("RUNNING", 60)))
    trigger = RunStatusTrigger(
        run=f"{server_conn.url}/runs/{run['id']}",
        policy=FAST,
        cancel_on_kill=True,
        trace={"traceparent": PARENT},
    )
    task = asyncio.create_task(events(trigger))
    await wait_for_line(capsys, f"run {run['id']} is RUNNING")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await trigger.on_kill()
    assert await cancelled(server_conn, run["id"]) in ("CANCELLING", "CANCELLED")
    assert logged(capsys.readouterr().out, f"asked the remote to cancel run {run['id']}")
    assert set(server_conn.stats()["traceparents"][run["id"]]) == {PARENT}  # the cancel carried it too


async def test_on_kill_cancels_the_run_the_task_started_though_the_trigger_never_read_it(
    server_conn: ReferenceServer,
) -> None:
    run = server_conn.create_run(script=script(("RUNNING", 60)))
    url = f"{server_conn.url}/runs/{run['id']}"
    started = runwatch.StartedRun(RunStatusHook().get_status(run["id"]), url)
    trigger = RunStatusTrigger(run=url, started=started.to_dict(), policy=FAST, cancel_on_kill=True)
    await trigger.on_kill()
    assert await cancelled(server_conn, run["id"]) in ("CANCELLING", "CANCELLED")


async def test_on_kill_of_a_trigger_that_never_ran_cancels_its_run_id_with_the_tasks_profile(
    runwatch_server: ReferenceServer, connection: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    # The connection's own profile cannot reach this server: only the trigger's override can.
    connection(host=runwatch_server.url, extra=json.dumps({"profile": "no-such-profile"}))
    run = runwatch_server.create_run(script=script(("RUNNING", 60)))
    trigger = RunStatusTrigger(run=run["id"], profile="standard", policy=FAST, cancel_on_kill=True)
    await trigger.on_kill()
    assert await cancelled(runwatch_server, run["id"]) in ("CANCELLING", "CANCELLED")
    assert logged(capsys.readouterr().out, f"asked the remote to cancel run {run['id']}")


async def test_on_kill_cannot_cancel_a_url_whose_run_id_it_never_saw(
    server_conn: ReferenceServer, capsys: pytest.CaptureFixture[str]
) -> None:
    run = server_conn.create_run(script=script(("RUNNING", 60)))
    url = f"{server_conn.url}/runs/{run['id']}"
    await RunStatusTrigger(run=url, policy=FAST, cancel_on_kill=True).on_kill()
    assert logged(capsys.readouterr().out, f"cannot cancel {url}: its run id was never seen")
    assert server_conn.get_run(run["id"])["status"] == "RUNNING"


def test_a_trigger_neither_cancels_on_kill_nor_ends_in_the_triggerer_unless_asked() -> None:
    kwargs = RunStatusTrigger(run="r-1").serialize()[1]
    assert (kwargs["cancel_on_kill"], kwargs["end_from_trigger"]) == (False, False)


async def test_each_change_is_logged_with_its_progress(
    server_conn: ReferenceServer, capsys: pytest.CaptureFixture[str]
) -> None:
    run = server_conn.create_run(
        script=[{"status": "RUNNING", "for": 0.3, "progress": {"percent": 42.5}}, {"status": "SUCCEEDED"}]
    )
    [event] = await events(RunStatusTrigger(run=run["id"], policy=FAST))
    assert event["status"] == "success"
    lines = [line for line in capsys.readouterr().out.splitlines() if f"run {run['id']} is " in line]
    said = [line.split(f"run {run['id']} is ", 1)[1].split(" [", 1)[0].rstrip() for line in lines]
    assert said == ["RUNNING (42.5%)", "SUCCEEDED"]


async def test_a_wait_that_could_not_start_logs_why_with_the_run(
    server_conn: ReferenceServer, capsys: pytest.CaptureFixture[str]
) -> None:
    [event] = await events(RunStatusTrigger(run="r-77", conn_id="missing", policy=FAST))
    assert event["result"]["outcome"] == "error"
    out = capsys.readouterr().out
    assert logged(out, f"waiting for r-77 failed: {event['result']['message']}")


def test_a_success_ended_in_the_triggerer_pushes_the_final_status_and_the_link(
    server_conn: ReferenceServer,
) -> None:
    run = server_conn.create_run(script=[{"status": "SUCCEEDED", "output_ref": "s3://out/9"}])
    status = RunStatusHook().get_status(run["id"])
    link = f"{server_conn.url}/runs/{run['id']}"
    payload = status_payload(status)
    assert payload["output_ref"] == "s3://out/9"
    assert success_xcoms(status, link) == {
        "return_value": payload,
        "run_url": link,
        "_link_RemoteRunLink": link,
    }
    assert success_xcoms(status, None) == {"return_value": payload}


def triggerer_ti(**fields: Any) -> TaskInstanceDTO:
    """The task instance a triggerer gives a trigger when it has no DAG to build a runtime one from."""
    return TaskInstanceDTO(
        id=uuid.uuid4(),
        task_id="wait",
        dag_id="d",
        run_id="manual",
        try_number=1,
        dag_version_id=uuid.uuid4(),
        pool_slots=1,
        priority_weight=1,
        **fields,
    )


async def test_a_push_that_fails_in_the_triggerer_resumes_the_task_on_a_worker(
    server_conn: ReferenceServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Outside a triggerer's supervisor XCom cannot be pushed: the success event resumes the task instead."""
    run = server_conn.create_run(script=script(("RUNNING", 0.1)))
    trigger = RunStatusTrigger(run=run["id"], policy=FAST, end_from_trigger=True)
    trigger.task_instance = triggerer_ti(context_carrier={"traceparent": PARENT})
    [event] = await events(trigger)
    assert (event["status"], event["result"]["status"]["status"]) == ("success", "SUCCEEDED")
    # The payload and the link were built, and XCom.aset reached: only the supervisor it needs is missing.
    assert re.search(
        r"\] could not push XCom from the triggerer \(cannot import name 'SUPERVISOR_COMMS' .*\): resuming on "
        r"a worker +\[",
        capsys.readouterr().out,
    )
    assert set(server_conn.stats()["traceparents"][run["id"]]) == {PARENT}  # the task instance's own


async def test_end_from_trigger_outside_a_triggerer_pushes_nothing_and_says_nothing_of_it(
    server_conn: ReferenceServer, capsys: pytest.CaptureFixture[str]
) -> None:
    run = server_conn.create_run(script=script(("RUNNING", 0.1)))
    [event] = await events(RunStatusTrigger(run=run["id"], policy=FAST, end_from_trigger=True))
    assert event["status"] == "success"
    assert "could not push XCom" not in capsys.readouterr().out


async def test_on_kill_cannot_cancel_an_https_url_whose_run_id_it_never_saw(
    server_conn: ReferenceServer, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"{server_conn.url.replace('http://', 'https://')}/runs/r-1"
    await RunStatusTrigger(run=url, policy=FAST, cancel_on_kill=True).on_kill()
    assert logged(capsys.readouterr().out, f"cannot cancel {url}: its run id was never seen")
