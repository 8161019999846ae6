"""The canonical states, phases and the status object."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from pydantic import ValidationError

from runwatch import Phase, Progress, RunError, RunStatus, State

PHASES = {
    Phase.PENDING: {"QUEUED", "PENDING", "SCHEDULED"},
    Phase.ACTIVE: {"RUNNING", "CANCELLING"},
    Phase.TERMINAL: {"SUCCEEDED", "FAILED", "CANCELLED", "TIMED_OUT", "PARTIAL_SUCCESS"},
}


@pytest.mark.parametrize("state", list(State))
def test_every_state_has_the_design_phase(state: State) -> None:
    assert state.value in PHASES[state.phase]
    assert state.is_terminal == (state.phase is Phase.TERMINAL)


def test_in_progress_is_an_alias_of_running_in_any_case() -> None:
    assert State.parse("IN_PROGRESS") is State.RUNNING
    assert State.parse(" in_progress ") is State.RUNNING
    assert State.parse("succeeded") is State.SUCCEEDED
    with pytest.raises(ValueError):
        State.parse("DONE")


def _full() -> RunStatus:
    t = datetime(2026, 5, 1, 12, 0, tzinfo=timezone.utc)
    return RunStatus(
        id="r-1",
        status=State.PARTIAL_SUCCESS,
        raw_status="done-ish",
        created_at=t,
        updated_at=t,
        started_at=t,
        ended_at=t,
        duration=12.5,
        executor="worker-3",
        progress=Progress(percent=90.0, items_done=9, items_total=10, message="almost"),
        errors=(RunError(code="E1", message="one shard failed", retriable=True, category="infrastructure"),),
        output_ref="s3://bucket/out",
        heartbeat_at=t,
        observed_at=t,
        version=7,
        etag='"7"',
        url="http://127.0.0.1/runs/r-1",
    )


def test_status_round_trips_through_json_with_every_field() -> None:
    status = _full()
    data = json.loads(json.dumps(status.to_dict()))
    assert set(data) == set(RunStatus.model_fields)
    assert data["phase"] == "TERMINAL"
    assert RunStatus.from_dict(data) == status


def test_phase_follows_the_state_whatever_the_input_says() -> None:
    status = RunStatus.from_dict({"id": "x", "status": "running", "phase": "TERMINAL"})
    assert status.phase is Phase.ACTIVE


def test_output_ref_is_shown_only_once_terminal() -> None:
    assert RunStatus(id="x", status=State.RUNNING, output_ref="s3://half").output_ref is None
    assert RunStatus(id="x", status=State.SUCCEEDED, output_ref="s3://all").output_ref == "s3://all"


def test_status_rejects_naive_times_and_unknown_fields() -> None:
    with pytest.raises(ValidationError):
        RunStatus.from_dict({"id": "x", "status": "RUNNING", "created_at": "2026-01-01T00:00:00"})
    with pytest.raises(ValidationError):
        RunStatus.from_dict({"id": "x", "status": "RUNNING", "colour": "blue"})


def test_error_message_joins_every_error() -> None:
    status = RunStatus(
        id="x", status=State.FAILED, errors=(RunError(message="a"), RunError(code="B", message="b"))
    )
    assert status.error_message == "a; b"
    assert RunStatus(id="x", status=State.FAILED).error_message is None
