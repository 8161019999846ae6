"""State-machine campaign: hypothesis over whole observation streams, as polls and webhooks deliver them.

A true lifecycle is observed the way real APIs and networks report it: shuffled, duplicated (with and without
delivery ids), with illegal regressions, equal timestamps, clock skew, observations with no time of their own,
and liveness-only repeats (heartbeat_at, updated_at, version, etag, observed_at moving, nothing else). After
every observation `RunMachine` must hold: the phase never moves back, a terminal state is absorbing, and only
a change of what decides the outcome (state, errors, result link) is APPLIED, which is what resets a wait's
pacing; a newer liveness-only observation is UNCHANGED yet becomes the current status (zombie detection reads
its heartbeat from there).

Figures: docs/reliability.md ("Core: state machine"). Reproduce with
`./dev pytest core tests/core/test_campaign_machine.py -q`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from runwatch import Progress, RunError, RunMachine, RunStatus, State, Verdict

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
PENDING = [State.QUEUED, State.PENDING, State.SCHEDULED]
ACTIVE = [State.RUNNING, State.CANCELLING]
TERMINAL = [s for s in State if s.is_terminal]
DECISIVE = ("status", "raw_status", "errors", "output_ref")
LIVENESS = frozenset({"heartbeat_at", "updated_at", "version", "etag", "observed_at"})
EXAMPLES = 400


@dataclass(frozen=True)
class Stream:
    final: State
    items: list[tuple[RunStatus, str | None]]
    kinds: frozenset[str]  # what the stream was made of, for the figures


def _status(state: State, step: int, *, versions: bool, skew: int, progress: int | None = None) -> RunStatus:
    errors = (RunError(code="E1", message="it broke"),) if state is State.FAILED else ()
    return RunStatus(
        id="r-1",
        status=state,
        raw_status=state.value.lower(),
        version=step * 10 if versions else None,
        updated_at=T0 + timedelta(seconds=step * 10 + skew),
        heartbeat_at=T0 + timedelta(seconds=step * 10) if state.phase.name == "ACTIVE" else None,
        progress=None if progress is None else Progress(percent=float(progress)),
        errors=errors,
        output_ref="s3://out" if state is State.SUCCEEDED else None,
        etag=f'"v{step * 10}"',
    )


def _alive(status: RunStatus, beat: int, versions: bool) -> RunStatus:
    """The same run a moment later, with only its liveness moved (a heartbeat, a new version and ETag)."""
    changes: dict[str, Any] = {
        "updated_at": status.updated_at + timedelta(seconds=beat) if status.updated_at else None,
        "heartbeat_at": status.heartbeat_at + timedelta(seconds=beat) if status.heartbeat_at else None,
        "etag": f'{(status.etag or "")[:-1]}-{beat}"',
        "observed_at": T0 + timedelta(hours=1, seconds=beat),
    }
    if versions and status.version is not None:
        changes["version"] = status.version + beat
    return status.model_copy(update=changes)


@st.composite
def streams(draw: st.DrawFn) -> Stream:
    kinds: set[str] = set()
    versions = draw(st.booleans())
    timed = draw(st.booleans())  # without versions, observations may still carry no time at all
    states = [
        *draw(st.lists(st.sampled_from(PENDING), max_size=2)),
        *draw(st.lists(st.sampled_from(ACTIVE), min_size=1, max_size=3)),
    ]
    final = draw(st.sampled_from(TERMINAL))
    truth: list[RunStatus] = []
    for step, state in enumerate([*states, final], 1):
        skew = draw(st.sampled_from([0, 0, -15, 15])) if not versions else 0
        if skew:
            kinds.add("clock_skew")
        progress = draw(st.none() | st.integers(0, 100)) if state.phase.name == "ACTIVE" else None
        status = _status(state, step, versions=versions, skew=skew, progress=progress)
        if not versions and not timed:
            status = status.model_copy(update={"updated_at": None})
        truth.append(status)
        if progress is not None and draw(st.booleans()):  # a progress-only change: reported, not a reset
            truth.append(status.model_copy(update={"progress": Progress(percent=float(progress) + 0.5)}))
            kinds.add("progress_only")
    items: list[tuple[RunStatus, str | None]] = []
    for n, status in enumerate(truth):
        delivery = f"d{n}" if draw(st.booleans()) else None
        items.append((status, delivery))
        for beat in range(1, draw(st.integers(0, 3)) + 1):
            items.append((_alive(status, beat, versions), f"d{n}.{beat}" if delivery else None))
            kinds.add("liveness_only")
    # The remote misbehaves: an earlier phase reported later, even after the end.
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(1, len(items)))
        earlier = [s for s, _ in items[:at] if not s.is_terminal]
        if earlier:
            regressed = draw(st.sampled_from(earlier))
            later = items[at - 1][0]
            items.insert(
                at,
                (
                    regressed.model_copy(update={"version": later.version, "updated_at": later.updated_at}),
                    None,
                ),
            )
            kinds.add("regression")
    if draw(st.booleans()):  # equal timestamps: two states reported at the same instant
        a, b = draw(st.sampled_from(items))[0], draw(st.sampled_from(items))[0]
        items.append((b.model_copy(update={"updated_at": a.updated_at, "version": a.version}), None))
        kinds.add("equal_timestamps")
    duplicates = draw(st.lists(st.sampled_from(items), max_size=5))
    if duplicates:
        kinds.add("duplicates")
    items += duplicates
    if draw(st.booleans()):
        items = draw(st.permutations(items))
        kinds.add("shuffled")
    return Stream(final, items, frozenset(kinds))


def _decisive(status: RunStatus) -> tuple[Any, ...]:
    return tuple(getattr(status, key) for key in DECISIVE)


def _differs_only_in_liveness(new: RunStatus, old: RunStatus) -> bool:
    mine, theirs = new.model_dump(), old.model_dump()
    changed = {key for key in mine if mine[key] != theirs[key]}
    return bool(changed) and changed <= LIVENESS


def _older(new: RunStatus, old: RunStatus) -> bool:
    if new.version is not None and old.version is not None:
        return new.version < old.version
    if new.updated_at is not None and old.updated_at is not None:
        return new.updated_at < old.updated_at
    return False


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams())
def test_any_stream_moves_forward_only_and_ends_in_the_true_terminal(stream: Stream) -> None:
    for kind in sorted(stream.kinds):  # --hypothesis-show-statistics counts them
        event(kind)
    m = RunMachine()
    seen_ids: set[str] = set()
    refused: set[str] = set()
    for status, delivery in stream.items:
        before = m.current
        verdict = m.observe(status, delivery)
        now = m.current
        assert now is not None
        if delivery is not None and delivery in seen_ids:
            assert verdict is Verdict.DUPLICATE and now is before
        if delivery is not None:
            seen_ids.add(delivery)
        if before is None:
            continue
        assert now.phase.rank >= before.phase.rank, f"{before.status} -> {now.status}: backwards"
        if before.is_terminal:
            assert _decisive(now) == _decisive(before), "a terminal state was left"
        if verdict in (Verdict.ILLEGAL, Verdict.STALE, Verdict.DUPLICATE):
            assert now is before, f"{verdict.value}: the observation must not be taken"
            refused.add(verdict.value)
    assert m.current is not None and m.current.status is stream.final
    for verdict_name in sorted(refused):
        event(f"refused as {verdict_name}")


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams())
def test_pacing_resets_only_on_a_change_of_what_decides_the_outcome(stream: Stream) -> None:
    m = RunMachine()
    for status, delivery in stream.items:
        before = m.current
        verdict = m.observe(status, delivery)
        if before is None:
            assert verdict is Verdict.APPLIED
            continue
        if verdict is Verdict.APPLIED:
            assert _decisive(status) != _decisive(before), (
                f"APPLIED (a pacing reset) for an observation that changed nothing decisive: "
                f"{sorted(k for k, v in status.model_dump().items() if v != before.model_dump()[k])}"
            )
        elif verdict not in (Verdict.ILLEGAL, Verdict.STALE, Verdict.DUPLICATE):
            assert _decisive(status) == _decisive(before) or before.is_terminal, (
                f"{verdict.value} for a legal, newer change of {before.status.value} -> {status.status.value}"
            )


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams())
def test_liveness_only_observations_are_unchanged_but_kept_for_zombie_detection(stream: Stream) -> None:
    m = RunMachine()
    for status, delivery in stream.items:
        before = m.current
        verdict = m.observe(status, delivery)
        if before is None or delivery is not None or _older(status, before):
            continue
        if not before.is_terminal and _differs_only_in_liveness(status, before):
            assert verdict is Verdict.UNCHANGED, f"liveness only, yet {verdict.value}"
            assert m.current is status, "the newer heartbeat must become the current status"
