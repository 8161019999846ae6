"""Policy pacing and the parsing of server hints."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict

from runwatch import Policy
from runwatch._http import MAX_HINT, _ratelimit, retry_after
from runwatch._profile import RateLimitSpec


@given(
    interval=st.floats(0.01, 10),
    factor=st.floats(1, 50),
    backoff=st.floats(1, 4),
    quiet=st.integers(0, 500),
)
def test_delay_is_capped_and_never_faster_than_the_policy_allows(
    interval: float, factor: float, backoff: float, quiet: int
) -> None:
    policy = Policy(interval=interval, max_interval=interval * factor, backoff=backoff)
    delay = policy.delay(quiet)
    assert min(interval / 2, policy.max_interval) <= delay <= policy.max_interval


def test_delay_grows_while_quiet_without_jitter() -> None:
    policy = Policy(interval=1, max_interval=10, backoff=2, jitter=False)
    assert [policy.delay(n) for n in range(6)] == [1, 2, 4, 8, 10, 10]


def test_a_shared_draw_places_the_jittered_pause_between_its_floor_and_ceiling() -> None:
    policy = Policy(
        interval=10, max_interval=100
    )  # floor interval / 2 = 5 s, ceiling 10 s after no quiet poll
    assert [policy.delay(0, draw=d) for d in (0.0, 0.5, 0.75)] == [5.0, 7.5, 8.75]
    assert policy.delay(2, draw=0.5) == pytest.approx(5 + 0.5 * (min(100, 10 * policy.backoff**2) - 5))


def test_policy_round_trips_and_rejects_nonsense() -> None:
    policy = Policy(interval=0.5, timeout=30, partial_success="fail")
    assert Policy.from_dict(json.loads(json.dumps(policy.to_dict()))) == policy
    assert policy.replace(timeout=5).timeout == 5
    with pytest.raises(ValueError, match="max_interval"):
        Policy(interval=10, max_interval=1)
    with pytest.raises(ValueError):
        Policy(partial_success="maybe")  # type: ignore[arg-type]


def test_policies_combine_and_the_right_side_wins_where_it_speaks() -> None:
    base = Policy(interval=5, max_interval=120, partial_success="fail")
    combined = base + Policy(timeout=3600) + Policy(heartbeat_timeout=300, partial_success="succeed")
    assert combined == Policy(
        interval=5, max_interval=120, timeout=3600, heartbeat_timeout=300, partial_success="succeed"
    )
    assert (Policy(timeout=10) + Policy()).timeout == 10  # defaults are not spoken
    with pytest.raises(ValueError, match="max_interval"):
        Policy(interval=1, max_interval=2) + Policy(interval=10)  # the combination is validated too


def test_retry_after_in_seconds_decimals_dates_and_milliseconds() -> None:
    assert retry_after(CIMultiDict({"Retry-After": "120"})) == 120
    assert retry_after(CIMultiDict({"retry-after": "0.25"})) == 0.25
    assert retry_after(CIMultiDict({"Retry-After-Ms": "1500"})) == 1.5
    assert retry_after(CIMultiDict({"x-ms-retry-after-ms": "20"})) == 0.02
    later = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    assert 28 <= (retry_after(CIMultiDict({"Retry-After": later})) or 0) <= 30
    past = format_datetime(datetime.now(timezone.utc) - timedelta(seconds=30), usegmt=True)
    assert retry_after(CIMultiDict({"Retry-After": past})) == 0
    assert retry_after(CIMultiDict({"Retry-After": "soon"})) is None
    assert retry_after(CIMultiDict()) is None


def test_ratelimit_fields_current_and_draft_spellings() -> None:
    spec = RateLimitSpec()
    assert _ratelimit(CIMultiDict({"RateLimit": '"default";r=0;t=12'}), spec) == (0, 12.0)
    assert _ratelimit(CIMultiDict({"RateLimit-Remaining": "5", "RateLimit-Reset": "3"}), spec) == (5, 3.0)
    assert _ratelimit(CIMultiDict({"RateLimit-Remaining": "x"}), spec) == (None, None)
    assert _ratelimit(CIMultiDict(), spec) == (None, None)


def test_ratelimit_resets_as_unix_times_and_as_seconds() -> None:
    reset = time.time() + 40
    github = CIMultiDict({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": f"{reset:.0f}"})
    remaining, seconds = _ratelimit(github, RateLimitSpec())
    assert remaining == 0 and seconds is not None and 38 <= seconds <= 41
    delta = RateLimitSpec(remaining_header="x-left", reset_header="x-wait", reset="delta_s")
    assert _ratelimit(CIMultiDict({"X-Left": "3", "X-Wait": "7"}), delta) == (3, 7.0)
    # A UNIX time is read as one even where the draft says seconds (GitLab sends RateLimit-Reset as one).
    _, seconds = _ratelimit(
        CIMultiDict({"RateLimit-Remaining": "0", "RateLimit-Reset": f"{reset:.0f}"}), delta
    )
    assert seconds is not None and 38 <= seconds <= 41


@pytest.mark.parametrize(
    "value", ["Infinity", "1e308", "Fri, 31 Dec 9999 23:59:59 GMT", "99999999999999999999"]
)
def test_unbounded_hints_are_capped(value: str) -> None:
    assert retry_after(CIMultiDict({"Retry-After": value})) == MAX_HINT
    assert retry_after(CIMultiDict({"Retry-After": "NaN"})) is None
    far = CIMultiDict({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "99999999999999"})
    assert _ratelimit(far, RateLimitSpec()) == (0, MAX_HINT)
