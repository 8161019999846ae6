"""Payload fuzzing: hypothesis-made JSON and bytes through every built-in profile and `RunApi.read_status`.

Only the documented typed errors may escape (`ProfileError` for a state the profile does not map,
`BadStatusPayload` for an answer without a readable id or state), each in one line naming what it is about.
An auxiliary field (anything but the id and the state) that does not parse never fails a parse, and never
a wait: it is left out, with one warning per watch.

Figures: docs/reliability.md ("Core: payload fuzzing"). Reproduce with
`./dev pytest core tests/core/test_campaign_fuzz.py -q --hypothesis-show-statistics`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from runwatch import (
    BadStatusPayload,
    Policy,
    ProfileError,
    RunApi,
    RunStatus,
    State,
    builtin_profiles,
    load_profile,
    wait_for_run,
)
from runwatch._http import Response

PROFILES = builtin_profiles()
EXAMPLES = 300
REQUIRED = ("id", "status", "status_detail")
PLAIN_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")

# Values taken from public bug reports and from what breaks parsers: out-of-range epochs (OverflowError,
# OSError), non-finite numbers, digits past Python's int limit, strings where numbers belong.
NASTY: list[Any] = [
    1e18,
    -1e18,
    1e300,
    float("inf"),
    float("-inf"),
    float("nan"),
    2**70,
    -1,
    "9" * 5000,
    "yesterday",
    "50%",
    "",
    "2026-13-45T99:99:99Z",
    "2026-01-01T00:00:00",
    [None, 7],
    {"percent": "50%"},
    {"percent": 1e400},
    {"items_done": -3.5, "message": ["x"]},
    {"message": None, "code": None},
    True,
    {"": None},
]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.sampled_from(range(len(NASTY))).map(NASTY.__getitem__),  # by index: keeps statistics readable
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def field_paths(name: str) -> dict[str, tuple[str, ...]]:
    """The profile's fields that are plain key paths (`data.started_at`), by field name."""
    fields = load_profile(name).fields.model_dump(exclude_none=True)
    return {key: tuple(expr.split(".")) for key, expr in fields.items() if PLAIN_PATH.fullmatch(expr)}


def put(payload: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        nested = payload.get(key)
        if not isinstance(nested, dict):
            nested = payload[key] = {}
        payload = nested
    payload[path[-1]] = value


def mapped(name: str) -> list[tuple[Any, Any, State]]:
    """(raw state, raw detail or None, canonical state) for every word the profile maps."""
    out = []
    for word, state in load_profile(name).states.items():
        raw, _, detail = word.partition("/")
        raw_value: Any = int(raw) if raw.isdigit() else raw.lower()
        out.append((raw_value, None if not detail else ("x" if detail == "*" else detail.lower()), state))
    return out


@st.composite
def shaped(draw: st.DrawFn, name: str) -> dict[str, Any]:
    """An object with the profile's fields at their places, each present or not, holding anything."""
    payload = draw(st.dictionaries(st.text(max_size=8), json_values, max_size=3))
    for path in field_paths(name).values():
        if draw(st.booleans()):
            put(payload, path, draw(json_values))
    return payload


@st.composite
def readable_with_garbage(draw: st.DrawFn, name: str) -> tuple[dict[str, Any], str, State, list[str]]:
    """A status whose id and state are fine and whose auxiliary fields hold anything at all."""
    paths = field_paths(name)
    raw, detail, state = draw(st.sampled_from(mapped(name)))
    run_id = draw(st.text(min_size=1, max_size=12) | st.integers(0, 10**12).map(str))
    payload: dict[str, Any] = {}
    put(payload, paths["id"], run_id)
    put(payload, paths["status"], raw)
    if detail is not None:
        put(payload, paths["status_detail"], detail)
    auxiliary = sorted(key for key in paths if key not in REQUIRED)
    garbled = draw(st.lists(st.sampled_from(auxiliary), unique=True, min_size=1)) if auxiliary else []
    for key in garbled:
        put(payload, paths[key], draw(json_values))
    return payload, run_id, state, garbled


def check_typed(exc: Exception, name: str) -> str:
    """A typed error, in one line, that says what it is about; returns its kind."""
    message = str(exc)
    assert message and "\n" not in message, f"not one line: {message!r}"
    if isinstance(exc, ProfileError):
        assert "status" in message, message
        return "ProfileError"
    assert isinstance(exc, BadStatusPayload), f"{type(exc).__name__} escaped: {message}"
    fields = load_profile(name).fields.model_dump(exclude_none=True)
    named = [key for key, expr in fields.items() if key in message or expr in message]
    assert named or "JSON" in message, f"names no field: {message}"
    return "BadStatusPayload"


@pytest.mark.parametrize("name", PROFILES)
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_json_parses_or_fails_typed_naming_the_field(name: str, data: st.DataObject) -> None:
    payload = data.draw(json_values | shaped(name), label="payload")
    profile = load_profile(name)
    try:
        status = profile.parse(payload)
    except Exception as exc:
        event(check_typed(exc, name))
    else:
        assert isinstance(status, RunStatus) and status.id
        event("parsed")


@pytest.mark.parametrize("name", PROFILES)
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_an_unreadable_auxiliary_field_never_fails_a_parse(name: str, data: st.DataObject) -> None:
    payload, run_id, state, garbled = data.draw(readable_with_garbage(name), label="payload")
    status = load_profile(name).parse(payload)
    assert (status.id, status.status) == (run_id, state), f"garbled {garbled}"


def _grid() -> Iterator[tuple[str, str, int]]:
    for name in PROFILES:
        for key in field_paths(name):
            for i in range(len(NASTY)):
                yield name, key, i


@pytest.mark.parametrize(("name", "key", "nasty"), list(_grid()))
def test_every_nasty_value_in_every_field(name: str, key: str, nasty: int) -> None:
    """The whole grid, so that the values public bug reports found are tried everywhere, every time."""
    paths = field_paths(name)
    raw, detail, state = mapped(name)[0]
    payload: dict[str, Any] = {}
    put(payload, paths["id"], "r-1")
    put(payload, paths["status"], raw)
    if detail is not None:
        put(payload, paths["status_detail"], detail)
    put(payload, paths[key], NASTY[nasty])
    try:
        status = load_profile(name).parse(payload)
    except Exception as exc:
        assert key in REQUIRED, f"{key} = {NASTY[nasty]!r} failed the parse: {type(exc).__name__}: {exc}"
        check_typed(exc, name)
    else:
        if key not in REQUIRED:
            assert (status.id, status.status) == ("r-1", state)


def _response(body: bytes) -> Response:
    return Response(200, CIMultiDictProxy(CIMultiDict({"content-type": "application/json"})), body)


@pytest.mark.parametrize("name", PROFILES)
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=st.binary(max_size=200)
    | json_values.map(lambda v: json.dumps(v).encode())
    | st.text(max_size=60).map(str.encode)
)
@example(body=b"[" * 100_000)  # nesting past the recursion limit
@example(body=b'{"id": "r", "status": "RUNNING", "version": Infinity}')
@example(body=b'{"id": "r", "status": "RUNNING", "version": 1e999}')
@example(body=b"\xff\xfe{}")
@example(body=b"")
def test_any_bytes_through_read_status_are_a_status_or_a_typed_error(name: str, body: bytes) -> None:
    api = RunApi("http://127.0.0.1:9", name)
    try:
        status = api.read_status(_response(body), "http://127.0.0.1:9/runs/r")
    except Exception as exc:
        event(check_typed(exc, name))
    else:
        assert isinstance(status, RunStatus) and status.id


# ------------------------------------------------------------------------------------------------ a real wait

GARBAGE = {
    "progress": {"percent": "50%"},
    "started_at": "yesterday",
    "errors": [None, {"code": 7}],
    "heartbeat_at": 1e18,
    "version": "seven",
    "duration": "a while",
}


def _bodies(run_id: str) -> Iterator[bytes]:
    for status in ("QUEUED", "RUNNING", "RUNNING", "SUCCEEDED"):
        yield json.dumps({"id": run_id, "status": status, **GARBAGE}).encode()


async def test_auxiliary_garbage_never_fails_a_wait_and_is_warned_about_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bodies = list(_bodies("r-fuzz"))
    served = 0

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        nonlocal served
        if scope["type"] != "http":
            return
        body = bodies[min(served, len(bodies) - 1)]
        served += 1
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", lifespan="off", interface="asgi3"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(500):
            if server.started:
                break
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        policy = Policy(interval=0.02, max_interval=0.05, unavailable_after=1, timeout=30)
        with caplog.at_level(logging.WARNING, logger="runwatch"):
            final = await wait_for_run(RunApi(f"http://127.0.0.1:{port}"), "r-fuzz", policy=policy)
    finally:
        server.should_exit = True
        await task
    assert (final.id, final.status, final.progress, final.started_at) == (
        "r-fuzz",
        State.SUCCEEDED,
        None,
        None,
    )
    warnings = [
        r.getMessage() for r in caplog.records if r.name == "runwatch" and r.levelno == logging.WARNING
    ]
    for key in ("progress", "started_at", "heartbeat_at", "version", "duration"):
        assert sum(key in w for w in warnings) == 1, f"{key}: {warnings}"
