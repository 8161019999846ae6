"""`outcome()`: which terminal statuses count as success, and the exact typed error of every other one."""

from __future__ import annotations

import threading

import pytest

from runwatch import (
    MockTransport,
    Policy,
    Request,
    Response,
    RunApi,
    RunCancelled,
    RunFailed,
    RunPartiallySucceeded,
    RunStatus,
    RunTimedOut,
    State,
    WaitTimeout,
    outcome,
    run_sync,
    wait_for_run,
)
from runwatch.testing import FakeClock


def status(state: State, message: str | None = None, raw: str | None = None) -> RunStatus:
    errors = [{"message": message}] if message else []
    return RunStatus.model_validate({"id": "r-1", "status": state, "raw_status": raw, "errors": errors})


def test_success_is_returned_as_it_is() -> None:
    done = status(State.SUCCEEDED)
    assert outcome(done) is done
    assert outcome(done, Policy(partial_success="fail")) is done


def test_partial_success_without_a_policy_is_not_success() -> None:
    with pytest.raises(RunPartiallySucceeded) as info:
        outcome(status(State.PARTIAL_SUCCESS))
    assert str(info.value) == "run r-1 partly succeeded"
    assert info.value.status == status(State.PARTIAL_SUCCESS)
    with pytest.raises(RunPartiallySucceeded):
        outcome(status(State.PARTIAL_SUCCESS), Policy(interval=1))  # a policy silent on it: the same


def test_partial_success_follows_the_policy() -> None:
    partial = status(State.PARTIAL_SUCCESS, "2 of 9 tasks failed")
    assert outcome(partial, Policy(partial_success="succeed")) is partial
    with pytest.raises(RunFailed) as failed:
        outcome(partial, Policy(partial_success="fail"))
    assert type(failed.value) is RunFailed and failed.value.status == partial
    assert str(failed.value) == "run r-1 only partly succeeded: 2 of 9 tasks failed"
    with pytest.raises(RunPartiallySucceeded) as partly:
        outcome(partial, Policy(partial_success="partial"))
    assert str(partly.value) == "run r-1 partly succeeded: 2 of 9 tasks failed"


@pytest.mark.parametrize(
    ("state", "error", "plain", "detailed"),
    [
        (State.FAILED, RunFailed, "run r-1 failed (INTERNAL_ERROR)", "run r-1 failed: out of memory"),
        (State.CANCELLED, RunCancelled, "run r-1 was cancelled", "run r-1 was cancelled: out of memory"),
        (
            State.TIMED_OUT,
            RunTimedOut,
            "run r-1 was timed out by the remote",
            "run r-1 was timed out by the remote: out of memory",
        ),
    ],
)
def test_each_unsuccessful_end_raises_its_own_error(
    state: State, error: type[Exception], plain: str, detailed: str
) -> None:
    for message, text in ((None, plain), ("out of memory", detailed)):
        ended = status(state, message, raw="INTERNAL_ERROR")
        with pytest.raises(error) as info:
            outcome(ended)
        assert type(info.value) is error
        assert str(info.value) == text
        assert info.value.status == ended  # type: ignore[attr-defined]


def test_the_remote_words_are_made_inert() -> None:
    hostile = status(State.FAILED, "boom\x1b[2J\nnext line")
    with pytest.raises(RunFailed) as info:
        outcome(hostile)
    assert "\x1b" not in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("state", [s for s in State if not s.is_terminal])
def test_a_status_that_is_not_terminal_is_a_usage_error(state: State) -> None:
    with pytest.raises(ValueError) as info:
        outcome(status(state))
    assert str(info.value) == f"run r-1 is not terminal ({state.value})"


async def _where() -> str:
    return threading.current_thread().name


def test_run_sync_runs_a_coroutine_from_plain_code() -> None:
    assert run_sync(_where()) == threading.current_thread().name


async def test_run_sync_inside_a_running_loop_blocks_in_a_thread_of_its_own() -> None:
    assert run_sync(_where()).startswith("runwatch")  # not this loop's thread


def _api(states: list[str]) -> tuple[RunApi, MockTransport, FakeClock]:
    clock = FakeClock()

    def answer(request: Request) -> Response:
        return Response.of_json({"id": "r", "status": states[min(len(transport.requests), len(states)) - 1]})

    transport = MockTransport(answer)
    return RunApi("https://jobs.test", transport=transport, clock=clock), transport, clock


async def test_wait_for_run_judges_the_end_by_its_policy_and_passes_deadline_and_trace_on() -> None:
    api, transport, clock = _api(["RUNNING", "RUNNING", "PARTIAL_SUCCESS"])
    trace = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    policy = Policy(interval=1, jitter=False, partial_success="succeed")
    final = await wait_for_run(api, "r", policy=policy, trace=trace)
    assert final.status is State.PARTIAL_SUCCESS
    assert all(
        r.headers["traceparent"].split("-")[1] == "0af7651916cd43dd8448eb211c80319c"
        for r in transport.requests
    )
    api, _, clock = _api(["RUNNING"])
    with pytest.raises(WaitTimeout):
        # the policy's own limit, far later, bounds the test should the deadline be lost on the way
        policy = Policy(interval=1, jitter=False, timeout=1000)
        await wait_for_run(api, "r", policy=policy, deadline=clock.time() + 10)
    assert clock.monotonic() == 10


def test_the_blocking_twin_passes_everything_on() -> None:
    from runwatch import Hooks, wait_for_run_sync

    api, transport, clock = _api(["RUNNING", "PARTIAL_SUCCESS"])
    trace = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    slept: list[float] = []
    policy = Policy(interval=3, jitter=False, partial_success="succeed", timeout=1000)
    final = wait_for_run_sync(api, "r", policy=policy, hooks=Hooks(before_sleep=slept.append), trace=trace)
    assert final.status is State.PARTIAL_SUCCESS and slept == [3]
    assert all("0af7651916cd43dd8448eb211c80319c" in r.headers["traceparent"] for r in transport.requests)
    api, _, clock = _api(["RUNNING"])
    with pytest.raises(WaitTimeout):
        wait_for_run_sync(api, "r", policy=policy, deadline=clock.time() + 7)
    assert clock.monotonic() == 7
