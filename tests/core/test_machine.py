"""The forward-only state machine, with properties over any order of observations."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runwatch import RunMachine, RunStatus, State, Verdict

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
NON_TERMINAL = [s for s in State if not s.is_terminal]
TERMINAL = [s for s in State if s.is_terminal]


def obs(state: State, version: int | None = None, *, at: int | None = None) -> RunStatus:
    return RunStatus(
        id="r",
        status=state,
        version=version,
        updated_at=None if at is None else T0 + timedelta(seconds=at),
    )


def test_forward_moves_apply_and_repeats_do_not() -> None:
    m = RunMachine()
    assert m.observe(obs(State.QUEUED, 1)) is Verdict.APPLIED
    assert m.observe(obs(State.QUEUED, 1)) is Verdict.UNCHANGED
    assert m.observe(obs(State.RUNNING, 2)) is Verdict.APPLIED
    assert m.observe(obs(State.SUCCEEDED, 3)) is Verdict.APPLIED
    assert m.current is not None and m.current.status is State.SUCCEEDED


def test_terminal_is_absorbing_and_regressions_are_anomalies() -> None:
    m = RunMachine()
    m.observe(obs(State.FAILED, 5))
    assert m.observe(obs(State.RUNNING, 6)) is Verdict.ILLEGAL
    assert m.observe(obs(State.SUCCEEDED, 7)) is Verdict.ILLEGAL
    assert m.current is not None and m.current.status is State.FAILED
    assert [a.observed.status for a in m.anomalies] == [State.RUNNING, State.SUCCEEDED]
    assert "FAILED -> RUNNING" in str(m.anomalies[0])


def test_phase_regression_before_terminal_is_refused() -> None:
    m = RunMachine()
    m.observe(obs(State.RUNNING, 2))
    assert m.observe(obs(State.QUEUED, 3)) is Verdict.ILLEGAL
    assert m.observe(obs(State.CANCELLING, 4)) is Verdict.APPLIED  # same phase: a legal move


def test_late_observations_are_dropped_by_version_or_time() -> None:
    m = RunMachine()
    m.observe(obs(State.RUNNING, 4))
    assert m.observe(obs(State.QUEUED, 2)) is Verdict.STALE
    t = RunMachine()
    t.observe(obs(State.RUNNING, at=10))
    assert t.observe(obs(State.PENDING, at=5)) is Verdict.STALE
    assert t.anomalies == []


def test_duplicate_deliveries_are_dropped() -> None:
    m = RunMachine()
    assert m.observe(obs(State.RUNNING, 1), "d1") is Verdict.APPLIED
    assert m.observe(obs(State.SUCCEEDED, 2), "d1") is Verdict.DUPLICATE
    assert m.current is not None and m.current.status is State.RUNNING


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[State, list[tuple[RunStatus, str]]]:
    """A true lifecycle with illegal regressions in it, then shuffled and partly duplicated."""
    pending = draw(st.lists(st.sampled_from([State.QUEUED, State.PENDING, State.SCHEDULED]), max_size=3))
    active = draw(st.lists(st.sampled_from([State.RUNNING, State.CANCELLING]), max_size=4))
    final = draw(st.sampled_from(TERMINAL))
    timeline = [*pending, *active, final]
    # The remote misbehaves: states of an earlier phase reported later, even after the end.
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(1, len(timeline)))
        earlier = [s for s in timeline[:at] if not s.is_terminal] or [State.QUEUED]
        timeline.insert(at, draw(st.sampled_from(earlier)))
    use_versions = draw(st.booleans())
    items = [
        (obs(state, v) if use_versions else obs(state, at=v), f"d{v}") for v, state in enumerate(timeline, 1)
    ]
    items += draw(st.lists(st.sampled_from(items), max_size=6))  # redeliveries
    return final, draw(st.permutations(items))


@given(deliveries())
def test_any_order_never_moves_back_and_ends_in_the_true_terminal(
    case: tuple[State, list[tuple[RunStatus, str]]],
) -> None:
    final, items = case
    m = RunMachine()
    applied = []
    for status, delivery_id in items:
        if m.observe(status, delivery_id) is Verdict.APPLIED:
            applied.append(status)
    ranks = [s.phase.rank for s in applied]
    assert ranks == sorted(ranks)
    assert sum(s.is_terminal for s in applied) <= 1
    assert m.current is not None and m.current.status is final


@given(st.lists(st.sampled_from(list(State)), min_size=1, max_size=12))
def test_whatever_is_reported_the_applied_phases_never_decrease(states: list[State]) -> None:
    m = RunMachine()
    seen = []
    for i, state in enumerate(states):
        if m.observe(obs(state, i)) is Verdict.APPLIED:
            seen.append(state.phase.rank)
    assert seen == sorted(seen)
    assert len(seen) + len(m.anomalies) <= len(states)


def test_delivery_memory_holds_exactly_the_last_256_ids() -> None:
    m = RunMachine()
    m.observe(obs(State.RUNNING), "d0")
    for n in range(1, 256):  # 255 other deliveries: d0 is still remembered
        m.observe(obs(State.RUNNING), f"d{n}")
    assert m.observe(obs(State.RUNNING), "d0") is Verdict.DUPLICATE
    m.observe(obs(State.RUNNING), "d256")  # the 257th id pushes the oldest out
    assert m.observe(obs(State.RUNNING), "d0") is Verdict.UNCHANGED
    assert m.observe(obs(State.RUNNING), "d2") is Verdict.DUPLICATE  # d0 came back and pushed d1 out


def test_an_older_move_within_the_same_phase_is_stale() -> None:
    m = RunMachine()
    m.observe(obs(State.RUNNING, 4))
    assert m.observe(obs(State.CANCELLING, 2)) is Verdict.STALE
    t = RunMachine()
    t.observe(obs(State.RUNNING, at=10))
    assert t.observe(obs(State.CANCELLING, at=9)) is Verdict.STALE
    assert t.observe(obs(State.CANCELLING, at=10)) is Verdict.APPLIED  # same time is not older


def test_age_is_compared_only_when_both_sides_carry_it() -> None:
    m = RunMachine()
    m.observe(obs(State.RUNNING))  # neither version nor time
    assert m.observe(obs(State.CANCELLING)) is Verdict.APPLIED
    v = RunMachine()
    v.observe(obs(State.RUNNING, at=10))
    assert v.observe(obs(State.CANCELLING, 1, at=20)) is Verdict.APPLIED  # only one side has a version
    t = RunMachine()
    t.observe(obs(State.RUNNING, 1))
    assert t.observe(obs(State.CANCELLING, 1, at=5)) is Verdict.APPLIED  # equal versions: not older
    u = RunMachine()
    u.observe(obs(State.RUNNING))
    assert u.observe(obs(State.CANCELLING, at=5)) is Verdict.APPLIED  # only one side has a time


def test_progress_is_reported_without_counting_as_a_change_of_outcome() -> None:
    m = RunMachine()
    m.observe(obs(State.RUNNING, 1))
    ahead = RunStatus(id="r", status=State.RUNNING, version=2, progress={"percent": 50})
    assert m.observe(ahead) is Verdict.PROGRESSED
    erred = RunStatus.model_validate(
        ahead.model_dump() | {"version": 3, "errors": [{"message": "disk full"}]}
    )
    assert m.observe(erred) is Verdict.APPLIED
    beat = RunStatus.model_validate(erred.model_dump() | {"version": 4, "heartbeat_at": T0})
    assert m.observe(beat) is Verdict.UNCHANGED
    assert m.current == beat  # liveness is kept for zombie detection


def test_an_illegal_move_is_logged_with_what_was_refused(caplog: pytest.LogCaptureFixture) -> None:
    m = RunMachine()
    m.observe(obs(State.FAILED, 1))
    with caplog.at_level(logging.WARNING, logger="runwatch"):
        m.observe(obs(State.RUNNING, 2))
    assert caplog.messages == [f"ignored an illegal transition: {m.anomalies[0]}"]
