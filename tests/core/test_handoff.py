"""The hand-off: a wait specification and its result, as JSON, and the same typed outcome on the far side."""

from __future__ import annotations

import json
from typing import Any, get_args

import pytest

import runwatch
from runwatch import (
    Outcome,
    Policy,
    RunApi,
    RunStatus,
    StartedRun,
    State,
    WaitResult,
    WaitSpec,
    first_look,
    wait_result,
)
from runwatch.server import ReferenceServer

pytestmark = pytest.mark.runwatch_server(retry_after=0)

FAST = Policy(interval=0.02, max_interval=0.1, unavailable_after=0.5)

ERRORS: dict[Outcome, BaseException] = {
    "failed": runwatch.RunFailed("run r failed: boom"),
    "cancelled": runwatch.RunCancelled("run r was cancelled"),
    "timed_out": runwatch.RunTimedOut("run r was timed out by the remote"),
    "partial": runwatch.RunPartiallySucceeded("run r partly succeeded"),
    "deadline": runwatch.WaitTimeout("gave up waiting after 3s"),
    "lost": runwatch.RunLost("heartbeat stale"),
    "unavailable": runwatch.StatusUnavailable("status unreadable for 300s"),
    "bad_payload": runwatch.BadStatusPayload("the body is not JSON"),
    "not_found": runwatch.RunNotFound("no such run"),
    "denied": runwatch.AccessDenied("access denied"),
    "illegal": runwatch.IllegalTransition("FAILED -> RUNNING"),
    "bad_profile": runwatch.ProfileError("does not map 'X'"),
    "configuration": runwatch.ConfigurationError("certificate"),
    "error": runwatch.RunwatchError("unexpected HTTP 418"),
}


def test_every_outcome_but_success_has_its_exception() -> None:
    assert set(ERRORS) == set(get_args(Outcome)) - {"succeeded"}


@pytest.mark.parametrize("kind", sorted(ERRORS))
def test_a_result_round_trips_and_raises_the_same_typed_outcome(kind: Outcome) -> None:
    last = RunStatus(id="r", status=State.RUNNING)
    result = WaitResult.of_error(ERRORS[kind], last)
    assert result.outcome == kind and not result.ok
    again = WaitResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert again == result
    with pytest.raises(type(ERRORS[kind])) as info:
        again.raise_for_outcome()
    assert str(info.value) == str(ERRORS[kind])
    if isinstance(info.value, runwatch.WaitOutcome):
        assert info.value.status == last


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("RunFailed", "failed"),
        ("WaitTimeout", "deadline"),
        ("TransientError", "unavailable"),  # a single read that kept failing
        ("InvalidURL", "configuration"),  # a subclass takes its parent's outcome
        ("RunwatchError", "error"),
        ("NoSuchError", "error"),
    ],
)
def test_a_result_written_as_a_class_name_reads_as_its_outcome(name: str, kind: Outcome) -> None:
    last = RunStatus(id="r", status=State.FAILED)
    result = WaitResult.of_error_name(name, "run r failed", last)
    assert (result.outcome, result.status, result.message) == (kind, last, "run r failed")
    assert WaitResult.of_error_name(name).message == name


@pytest.mark.parametrize("kind", sorted(ERRORS))
def test_the_class_name_of_an_outcome_reads_back_as_that_outcome(kind: Outcome) -> None:
    name = WaitResult(outcome=kind).error_name
    assert name is not None and WaitResult.of_error_name(name).outcome == kind
    assert WaitResult(outcome="succeeded").error_name is None


def test_partial_success_follows_the_policy_and_success_returns_the_status() -> None:
    partial = RunStatus(id="r", status=State.PARTIAL_SUCCESS)
    assert WaitResult.of_status(partial).outcome == "partial"  # no policy: the default raises
    assert WaitResult.of_status(partial, Policy(partial_success="fail")).outcome == "failed"
    ok = WaitResult.of_status(partial, Policy(partial_success="succeed"))
    assert ok.ok and ok.raise_for_outcome() == partial


def test_a_password_never_reaches_a_result() -> None:
    result = WaitResult.of_error(runwatch.RunwatchError("GET http://u:s3cr3t@h/x: refused"))
    assert "s3cr3t" not in json.dumps(result.to_dict())


def test_the_message_is_one_line_with_the_remote_text_as_data() -> None:
    result = WaitResult.of_error(runwatch.RunFailed("run r failed: boom\n::error::x\x1b[2J "))
    assert result.message == "run r failed: boom\\n::error::x\\x1b[2J"


def test_a_spec_round_trips_with_a_started_run_and_an_absolute_deadline() -> None:
    started = StartedRun(RunStatus(id="r-1", status=State.QUEUED), "http://127.0.0.1:9/runs/r-1", 2.0)
    spec = WaitSpec(
        run="r-1",
        api="runwatch_default",
        started=started.to_dict(),
        policy=Policy(interval=5).to_dict(),
        deadline=1_900_000_000.0,
    )
    data: dict[str, Any] = json.loads(json.dumps(spec.to_dict()))
    again = WaitSpec.from_dict(data)
    assert again == spec
    assert again.target() == started and again.wait_policy() == Policy(interval=5)
    with pytest.raises(ValueError, match="token"):
        WaitSpec.from_dict({**data, "token": "x"})  # no room for a credential


async def test_wait_result_never_raises_for_an_outcome(runwatch_server: ReferenceServer) -> None:
    api = RunApi(runwatch_server.url)
    ok = runwatch_server.create_run(script=[{"status": "RUNNING", "for": 0.1}, {"status": "SUCCEEDED"}])
    result = await wait_result(api, WaitSpec(run=ok["id"], policy=FAST.to_dict()))
    assert result.ok and result.status is not None and result.status.status is State.SUCCEEDED
    stuck = runwatch_server.create_run(script=[{"status": "RUNNING", "for": 60}, {"status": "SUCCEEDED"}])
    result = await wait_result(api, WaitSpec(run=stuck["id"], policy=FAST.to_dict(), deadline=0.0))
    assert result.outcome == "deadline"
    result = await wait_result(api, WaitSpec(run="r-nope", policy=FAST.to_dict()))
    assert (result.outcome, result.status) == ("not_found", None)


def test_policies_combine_after_replace_without_defaults_winning() -> None:
    base = Policy(interval=5, max_interval=120)
    tuned = Policy(timeout=60).replace(heartbeat_timeout=30)
    combined = base + tuned
    assert (combined.interval, combined.max_interval, combined.timeout, combined.heartbeat_timeout) == (
        5,
        120,
        60,
        30,
    )
    assert (tuned + Policy(interval=1)).timeout == 60


def test_a_profile_of_a_newer_format_is_refused_by_name() -> None:
    with pytest.raises(runwatch.ProfileError, match="format 2 is newer"):
        runwatch.load_profile({"format": 2, "name": "x", "status_url": "{base_url}/{run_id}", "states": {}})


async def test_a_first_look_raises_only_what_no_wait_can_change(runwatch_server: ReferenceServer) -> None:
    api = RunApi(runwatch_server.url)
    ended = runwatch_server.create_run(script=[{"status": "SUCCEEDED"}])
    seen = await first_look(api, ended["id"])
    assert seen is not None and seen.status is State.SUCCEEDED
    with pytest.raises(runwatch.RunNotFound):
        await first_look(api, "r-nope")
    down = runwatch_server.create_run(script=[{"status": "RUNNING"}], faults={"errors_5xx": {"every": 1}})
    assert await first_look(api, down["id"]) is None  # passing trouble: the wait rides it out
    broken = runwatch_server.create_run(script=[{"status": "RUNNING"}], faults={"malformed": {"every": 1}})
    assert await first_look(api, broken["id"]) is None
    queued = RunStatus(id="r-new", status=State.QUEUED)
    just_started = StartedRun(queued, f"{runwatch_server.url}/runs/r-new", None)
    lagging = await first_look(api, just_started)  # not shown yet: the start's own status
    assert lagging is not None and (lagging.id, lagging.status, lagging.observed_at is not None) == (
        "r-new",
        State.QUEUED,
        True,
    )
    with pytest.raises(runwatch.ConfigurationError):  # a credential never goes to another origin
        await first_look(RunApi(runwatch_server.url, auth=runwatch.BearerAuth("t")), "http://127.0.0.2:9/r")


async def test_a_first_look_is_one_request_carrying_its_trace_within_its_own_timeout(
    runwatch_server: ReferenceServer,
) -> None:
    api = RunApi(runwatch_server.url)
    trace = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    down = runwatch_server.create_run(script=[{"status": "RUNNING"}], faults={"errors_5xx": {"every": 1}})
    assert await first_look(api, down["id"], trace=trace) is None
    # One request, not retried (the wait rides the trouble out), and it carried the trace.
    assert runwatch_server.stats()["traceparents"][down["id"]] == {trace["traceparent"]: 1}
    slow = runwatch_server.create_run(script=[{"status": "RUNNING"}], faults={"latency": 5.0})
    # Its own timeout, not the read's default of 30 s: a look that took 5 s would have seen RUNNING.
    assert await first_look(api, slow["id"], request_timeout=0.5) is None


def _api(answer: Any) -> tuple[runwatch.RunApi, Any]:
    from runwatch import MockTransport
    from runwatch.testing import FakeClock

    clock = FakeClock()
    transport = MockTransport(lambda request: answer(request, clock))
    return RunApi("https://jobs.test", transport=transport, clock=clock), transport


def _states(*by_time: tuple[float, str]) -> Any:
    def answer(request: Any, clock: Any) -> runwatch.Response:
        state = next(s for t, s in reversed(by_time) if clock.monotonic() >= t)
        if state == "404":
            return runwatch.Response.of_json({"message": "no such run"}, 404)
        return runwatch.Response.of_json({"id": "r", "status": state})

    return answer


async def test_wait_result_waits_by_the_spec_policy_and_carries_its_trace() -> None:
    api, transport = _api(_states((0, "RUNNING"), (10, "PARTIAL_SUCCESS")))
    trace = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    spec = WaitSpec(run="r", policy=Policy(interval=1, partial_success="succeed").to_dict(), trace=trace)
    result = await wait_result(api, spec)
    assert (result.outcome, result.message) == ("succeeded", "run r ended PARTIAL_SUCCESS")
    # The trace goes on (a span per wait, where OpenTelemetry is set up, changes only the parent id).
    trace_id = trace["traceparent"].split("-")[1]
    assert all(r.headers.get("traceparent", "").split("-")[1] == trace_id for r in transport.requests)
    again, _ = _api(_states((0, "RUNNING"), (10, "PARTIAL_SUCCESS")))
    assert (await wait_result(again, WaitSpec(run="r"))).outcome == "partial"  # no policy: not success


async def test_wait_result_tells_the_hooks_each_change_sync_or_async() -> None:
    told: list[str] = []

    async def later(status: RunStatus) -> None:
        told.append(f"async {status.status.value}")

    for on_change in (lambda s: told.append(f"sync {s.status.value}"), later):
        api, _ = _api(_states((0, "QUEUED"), (3, "RUNNING"), (9, "SUCCEEDED")))
        hooks = runwatch.Hooks(on_change=on_change)
        assert (await wait_result(api, WaitSpec(run="r", policy={"interval": 1}), hooks=hooks)).ok
    assert told == [f"{how} {s}" for how in ("sync", "async") for s in ("QUEUED", "RUNNING", "SUCCEEDED")]


async def test_an_error_without_a_status_keeps_the_last_status_seen() -> None:
    api, _ = _api(_states((0, "RUNNING"), (5, "404")))
    result = await wait_result(api, WaitSpec(run="r", policy={"interval": 1}))
    assert result.outcome == "not_found"
    assert result.status is not None and result.status.status is State.RUNNING


def test_of_error_prefers_the_error_status_then_the_last_seen_then_the_name() -> None:
    mine = RunStatus(id="r", status=State.FAILED)
    seen = RunStatus(id="r", status=State.RUNNING)
    assert WaitResult.of_error(runwatch.RunFailed("x", mine), seen).status == mine
    assert WaitResult.of_error(runwatch.RunFailed("x"), seen).status == seen
    assert WaitResult.of_error(runwatch.RunwatchError("")).message == "RunwatchError"
    # One line: a line break in the remote's words is shown escaped (runwatch.text.inert), never kept.
    assert WaitResult.of_error(runwatch.RunwatchError("a\n  b")).message == "a\\n  b"


def test_a_success_without_its_status_is_refused_by_name() -> None:
    with pytest.raises(runwatch.RunwatchError) as info:
        WaitResult(outcome="succeeded").raise_for_outcome()
    assert str(info.value) == "a successful wait result without its status"


def test_a_result_dumps_to_json_types() -> None:
    status = RunStatus.model_validate(
        {"id": "r", "status": "SUCCEEDED", "updated_at": "2026-01-01T00:00:00Z"}
    )
    data = WaitResult.of_status(status).to_dict()
    assert data["status"]["updated_at"] == "2026-01-01T00:00:00Z" and data["status"]["status"] == "SUCCEEDED"
