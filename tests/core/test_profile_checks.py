"""User-written profiles checked when loaded: state expressions, state words, URL templates, expressions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from runwatch import BadStatusPayload, Hooks, Policy, ProfileError, RunApi, State, load_profile, wait_for_run
from runwatch.server import ReferenceServer

pytestmark = pytest.mark.runwatch_server(retry_after=0)

FAST = Policy(interval=0.02, max_interval=0.1, unavailable_after=10, timeout=30)


def profile(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "mine",
        "status_url": "{base_url}/runs/{run_id}",
        "states": {"QUEUED": "QUEUED", "RUNNING": "RUNNING", "SUCCEEDED": "SUCCEEDED"},
    }
    return base | changes


# ---------------------------------------------------------------------------------- expressions that give lists

FILTER = {"id": "$.id", "status": "runs[?id=='x'].state"}


def test_a_one_element_list_is_read_as_its_element() -> None:
    p = load_profile(profile(fields={"id": "id", "status": FILTER["status"]}))
    status = p.parse(
        {"id": "x", "runs": [{"id": "y", "state": "SUCCEEDED"}, {"id": "x", "state": "RUNNING"}]}
    )
    assert (status.status, status.raw_status) == (State.RUNNING, "RUNNING")


def test_an_empty_list_is_no_state_yet() -> None:
    p = load_profile(profile(fields={"id": "id", "status": FILTER["status"]}))
    with pytest.raises(BadStatusPayload, match=r"no status at \"runs\[\?id=='x'\]\.state\""):
        p.parse({"id": "x", "runs": []})


@pytest.mark.parametrize(
    ("runs", "shape"),
    [
        ([{"id": "x", "state": "RUNNING"}, {"id": "x", "state": "QUEUED"}], "a list of 2 values"),
        ([{"id": "x", "state": {"phase": "RUNNING"}}], "an object"),
    ],
)
def test_anything_else_is_an_error_naming_the_field(runs: list[Any], shape: str) -> None:
    p = load_profile(profile(fields={"id": "id", "status": FILTER["status"]}))
    with pytest.raises(ProfileError) as info:
        p.parse({"id": "x", "runs": runs})
    assert str(info.value) == (
        f"profile 'mine': fields.status \"runs[?id=='x'].state\" gave {shape}, not one state word"
    )


async def test_a_wait_goes_on_while_the_expression_gives_no_state(runwatch_server: ReferenceServer) -> None:
    # The expression gives [] while the run is QUEUED: that is "no state yet", not the end of the wait.
    mine = profile(fields={"id": "id", "status": "[status][?@ != 'QUEUED']"})
    run = runwatch_server.create_run(
        script=[{"status": "QUEUED", "for": 0.3}, {"status": "RUNNING", "for": 0.2}, {"status": "SUCCEEDED"}]
    )
    seen: list[State] = []
    final = await wait_for_run(
        RunApi(runwatch_server.url, profile=mine),
        run["id"],
        policy=FAST,
        hooks=Hooks(on_change=lambda s: seen.append(s.status)),
    )
    assert final.status is State.SUCCEEDED
    assert seen == [State.RUNNING, State.SUCCEEDED]


# ------------------------------------------------------------------------------------------------ state words


@pytest.mark.parametrize(
    ("remote", "state"),
    [
        (3, State.RUNNING),
        (3.0, State.RUNNING),
        ("3", State.RUNNING),
        ("10.0", State.SUCCEEDED),
        (1e1, State.SUCCEEDED),
    ],
)
def test_numbers_compare_by_value(remote: Any, state: State) -> None:
    p = load_profile(profile(states={"3": "RUNNING", "10": "SUCCEEDED"}))
    assert p.parse({"id": "r", "status": remote}).status is state


def test_numeric_keys_equal_by_value_are_mapped_twice() -> None:
    with pytest.raises(ProfileError, match=r"states: '3\.0' is mapped twice"):
        load_profile(profile(states={"3": "RUNNING", "3.0": "SUCCEEDED"}))


def test_remote_words_are_trimmed() -> None:
    p = load_profile(
        profile(
            fields={"id": "id", "status": "status", "status_detail": "detail"},
            states={"RUNNING": "RUNNING", "completed/success": "SUCCEEDED"},
        )
    )
    running = p.parse({"id": "r", "status": "RUNNING\n"})
    assert (running.status, running.raw_status) == (State.RUNNING, "RUNNING")
    done = p.parse({"id": "r", "status": " completed ", "detail": "success\t"})
    assert (done.status, done.raw_status) == (State.SUCCEEDED, "completed/success")


@pytest.mark.parametrize("key", [" Completed ", "Completed\n", "\tRUNNING"])
def test_a_key_that_can_never_match_is_refused_at_load(key: str) -> None:
    with pytest.raises(ProfileError) as info:
        load_profile(profile(states={key: "SUCCEEDED"}))
    assert str(info.value) == (
        f"profile 'mine': states: {key!r} can never match: remote words are trimmed of surrounding whitespace"
    )


# --------------------------------------------------------------------------------- templates and expressions


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"status_url": "{base_url}/runs/{run_id}}"},
            "status_url: bad URL template '{base_url}/runs/{run_id}}': Single '}' encountered in format string "
            "(write {{ or }} for a literal brace)",
        ),
        (
            {"status_url": "{base_url}/runs/{run_id}?fields={}"},
            "status_url: bad URL template '{base_url}/runs/{run_id}?fields={}': placeholder {} must be a plain "
            "{name} such as {base_url} or {run_id}",
        ),
        (
            {"start": {"url": "{base_url}/runs/{0}"}},
            "start.url: bad URL template '{base_url}/runs/{0}': placeholder {0} must be a plain {name} such as "
            "{base_url} or {run_id}",
        ),
        (
            {"cancel": {"url": "{base_url}/runs/{run_id!r}/cancel"}},
            "cancel.url: bad URL template '{base_url}/runs/{run_id!r}/cancel': placeholder {run_id!r} must be a "
            "plain {name} such as {base_url} or {run_id}",
        ),
        ({"start": {"url": "{base_url}/runs", "run_id": "data.["}}, "start.run_id: bad JMESPath 'data.['"),
        (
            {"fields": {"status": ""}},
            "fields.status: bad JMESPath '': Invalid JMESPath expression: cannot be empty.",
        ),
        ({"fields": {"progress": "a[?"}}, "fields.progress: bad JMESPath 'a[?'"),
    ],
)
def test_every_template_and_expression_is_checked_at_load(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ProfileError) as info:
        load_profile(profile(**changes))
    assert str(info.value).startswith(f"profile 'mine': {message}")


def test_literal_braces_are_allowed() -> None:
    p = load_profile(profile(status_url="{base_url}/runs/{run_id}?q={{x}}"))
    assert p.url(p.status_url, base_url="http://h", run_id="r") == "http://h/runs/r?q={x}"


def test_the_cli_exits_64_naming_the_field_before_any_request(
    runwatch_server: ReferenceServer, tmp_path: Path
) -> None:
    bad = tmp_path / "mine.json"
    bad.write_text(json.dumps(profile(status_url="{base_url}/runs/{run_id}?fields={}")))
    run = runwatch_server.create_run(script=[{"status": "SUCCEEDED"}])
    before = runwatch_server.stats()["requests_total"]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "runwatch",
            "watch",
            run["id"],
            "--base-url",
            runwatch_server.url,
            "--profile",
            str(bad),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ),
    )
    assert proc.returncode == 64
    assert proc.stderr.splitlines() == [
        f"runwatch: profile {bad}: status_url: bad URL template '{{base_url}}/runs/{{run_id}}?fields={{}}': "
        "placeholder {} must be a plain {name} such as {base_url} or {run_id}"
    ]
    assert runwatch_server.stats()["requests_total"] == before
