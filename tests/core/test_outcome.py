"""`outcome()`: which terminal statuses count as success, and the exact typed error of every other one."""

from __future__ import annotations

import pytest

from runwatch import (
    Policy,
    RunCancelled,
    RunFailed,
    RunPartiallySucceeded,
    RunStatus,
    RunTimedOut,
    State,
    outcome,
    run_sync,
)


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
    assert type(failed.value) is RunFailed
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


async def test_run_sync_works_inside_a_running_loop() -> None:
    async def answer() -> int:
        return 42

    assert run_sync(answer()) == 42
