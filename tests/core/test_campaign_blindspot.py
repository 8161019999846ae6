"""Blind-spot campaign: a run that answers only rate limits, for longer than the tolerance.

One good read, then 429s (with every form of hint, sane and absurd) or GitHub's 403 rate limits for ever.
The wait must end with `StatusUnavailable` carrying the last status it did see and since when, at about the
tolerance whatever the hint says (no deadline is set: the tolerance alone must end it), and the CLI must exit
7, the code of "could not tell", never 1, 5 or 9.

Figures: docs/reliability.md ("Core: blind spot"). Reproduce with
`./dev pytest core tests/core/test_campaign_blindspot.py -q`.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from runwatch import Policy, RunApi, State, StatusUnavailable, load_profile, wait_for_run
from runwatch.cli import main
from runwatch.server import ReferenceServer

pytestmark = pytest.mark.runwatch_server(retry_after=0)

TOLERANCE = 1.5
NO_HANG = 60.0  # far above the tolerance: only a wait that ignores its tolerance gets near it
SCRIPT = [{"status": "RUNNING", "for": 3600}, {"status": "SUCCEEDED"}]
FOREVER_9999 = "Fri, 31 Dec 9999 23:59:59 GMT"

# (id, faults, the API speaks rate limits as 403 too)
BLIND_SPOTS: list[tuple[str, dict[str, Any], bool]] = [
    ("429-seconds", {"rate_limit": {"after": 1, "retry_after": 0.3}}, False),
    ("429-date", {"rate_limit": {"after": 1, "hint": "date", "retry_after": 1}}, False),
    ("429-ms", {"rate_limit": {"after": 1, "hint": "ms", "retry_after": 0.3}}, False),
    ("429-no-hint", {"rate_limit": {"after": 1, "hint": "none"}}, False),
    ("429-an-hour", {"rate_limit": {"after": 1, "retry_after": 3600}}, False),
    ("429-year-9999", {"rate_limit": {"after": 1, "retry_after_text": FOREVER_9999}}, False),
    ("429-infinity", {"rate_limit": {"after": 1, "retry_after_text": "Infinity"}}, False),
    ("429-negative", {"rate_limit": {"after": 1, "retry_after_text": "-5"}}, False),
    ("quota-spent-for-an-hour", {"ratelimit_headers": {"quota": 1, "window": 3600}}, False),
    ("403-primary", {"rate_limit": {"after": 1, "status": 403, "hint": "reset", "retry_after": 1}}, True),
    (
        "403-primary-an-hour",
        {"rate_limit": {"after": 1, "status": 403, "hint": "reset", "retry_after": 3600}},
        True,
    ),
    ("403-secondary", {"rate_limit": {"after": 1, "status": 403, "retry_after": 0.3}}, True),
    ("403-secondary-an-hour", {"rate_limit": {"after": 1, "status": 403, "retry_after": 3600}}, True),
]
IDS = [case[0] for case in BLIND_SPOTS]


def github_like() -> dict[str, Any]:
    """The standard profile, for an API that also says "rate limited" with 403 (as GitHub does)."""
    return {
        **load_profile("standard").to_dict(),
        "name": "standard-403",
        "rate_limit": {"statuses": [429, 403]},
    }


@pytest.mark.parametrize(("name", "faults", "by_403"), BLIND_SPOTS, ids=IDS)
async def test_only_rate_limits_end_as_status_unavailable_with_the_last_status(
    runwatch_server: ReferenceServer, name: str, faults: dict[str, Any], by_403: bool
) -> None:
    run = runwatch_server.create_run(script=SCRIPT, faults=faults)
    api = RunApi(runwatch_server.url, github_like() if by_403 else "standard")
    policy = Policy(interval=0.05, max_interval=0.2, unavailable_after=TOLERANCE)
    started = time.monotonic()
    with pytest.raises(StatusUnavailable) as caught:
        await asyncio.wait_for(wait_for_run(api, run["id"], policy=policy), NO_HANG)
    elapsed = time.monotonic() - started
    last = caught.value.status
    assert last is not None and (last.id, last.status, last.version) == (run["id"], State.RUNNING, 1)
    assert caught.value.since is not None
    assert elapsed >= TOLERANCE
    counts = runwatch_server.stats()["runs"][run["id"]]
    # One good read; every request after it was refused as rate limited (or, the quota spent, not sent).
    assert counts["GET"] - counts["429"] - counts["403"] == 1


@pytest.mark.parametrize(
    ("name", "faults", "by_403"),
    [
        case
        for case in BLIND_SPOTS
        if case[0] in ("429-seconds", "429-an-hour", "403-primary", "403-secondary")
    ],
    ids=["429-seconds", "429-an-hour", "403-primary", "403-secondary"],
)
def test_the_cli_exits_7_on_a_blind_spot(
    runwatch_server: ReferenceServer,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    name: str,
    faults: dict[str, Any],
    by_403: bool,
) -> None:
    run = runwatch_server.create_run(script=SCRIPT, faults=faults)
    profile = tmp_path / "github-like.json"
    profile.write_text(json.dumps(github_like()))
    argv = ["watch", run["url"], "--interval", "0.05", "--max-interval", "0.2"]
    argv += ["--unavailable-after", str(TOLERANCE), "--json"]
    if by_403:
        argv += ["--profile", str(profile)]
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 7, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("runwatch: ") and "RUNNING" in lines[0], err
    assert [json.loads(line)["status"] for line in out.splitlines()] == ["RUNNING"]
