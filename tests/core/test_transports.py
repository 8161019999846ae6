"""One contract, every transport: each meets the reference server in every fault mode and behaves the same."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from runwatch import (
    AccessDenied,
    AiohttpTransport,
    BadStatusPayload,
    HttpxTransport,
    MockTransport,
    Policy,
    Response,
    RunApi,
    RunCancelled,
    RunFailed,
    RunNotFound,
    State,
    StatusUnavailable,
    TransientError,
    Transport,
    wait_for_run,
    watch_run,
)
from runwatch.server import ReferenceServer

pytestmark = pytest.mark.runwatch_server(retry_after=0, token="tok-contract")

FAST = Policy(interval=0.02, max_interval=0.1, unavailable_after=5)
LIFECYCLE = [{"status": "QUEUED", "for": 0.05}, {"status": "RUNNING", "for": 0.2}, {"status": "SUCCEEDED"}]


@pytest.fixture(params=["aiohttp", "httpx", "httpx-client"])
async def make(request: pytest.FixtureRequest) -> AsyncIterator[Callable[[], Transport]]:
    """Builds the transport under test; "httpx-client" is over the caller's own client, closed here as
    runwatch never closes a client it was given."""
    yours: list[httpx.AsyncClient] = []

    def build() -> Transport:
        if request.param == "aiohttp":
            return AiohttpTransport()
        if request.param == "httpx":
            return HttpxTransport()
        yours.append(httpx.AsyncClient(headers={"X-Mine": "1"}))
        return HttpxTransport(yours[-1])

    yield build
    for client in yours:
        assert not client.is_closed  # runwatch left it open
        await client.aclose()


def api_on(server: ReferenceServer, make: Callable[[], Transport], **kwargs: Any) -> RunApi:
    from runwatch import BearerAuth

    return RunApi(server.url, auth=BearerAuth("tok-contract"), transport=make(), **kwargs)


async def test_every_change_in_order_with_304s_between(
    runwatch_server: ReferenceServer, make: Callable[[], Transport]
) -> None:
    api = api_on(runwatch_server, make)
    started = await api.start_run({"script": [{"status": "QUEUED", "for": 0.5}, *LIFECYCLE[1:]]})
    seen = [s.status async for s in watch_run(api, started, policy=FAST)]
    run = {"id": started.id}
    assert seen == [State.QUEUED, State.RUNNING, State.SUCCEEDED]
    stats = runwatch_server.stats()["runs"][run["id"]]
    assert stats["304"] >= 1  # ETags sent back and honoured


@pytest.mark.parametrize(
    "faults",
    [
        {"rate_limit": {"first": 2, "retry_after": 0.2}},
        {"rate_limit": {"first": 1, "retry_after": 1, "retry_after_date": True}},
        {"errors_5xx": {"first": 3, "status": 503}},
        {"drop": {"first": 2}},
        {"malformed": {"first": 2}},
        {"malformed": {"first": 2, "shape": "wrong"}},
        {"latency": 0.05},
    ],
    ids=["429", "429-date", "5xx", "drop", "malformed", "wrong-shape", "latency"],
)
async def test_faults_are_ridden_out(
    runwatch_server: ReferenceServer, make: Callable[[], Transport], faults: dict[str, Any]
) -> None:
    run = runwatch_server.create_run(script=LIFECYCLE, faults=faults)
    final = await wait_for_run(api_on(runwatch_server, make), run["id"], policy=FAST)
    assert final.status is State.SUCCEEDED


async def test_outcomes_and_refusals_are_the_same_on_every_transport(
    runwatch_server: ReferenceServer, make: Callable[[], Transport]
) -> None:
    api = api_on(runwatch_server, make)
    failed = runwatch_server.create_run(script=[{"status": "RUNNING", "for": 0.05}, {"status": "FAILED"}])
    with pytest.raises(RunFailed):
        await wait_for_run(api, failed["id"], policy=FAST)
    with pytest.raises(RunNotFound):
        await wait_for_run(api, "r-nope", policy=FAST)
    with pytest.raises(AccessDenied):
        await wait_for_run(RunApi(runwatch_server.url, transport=make()), failed["id"], policy=FAST)
    broken = runwatch_server.create_run(script=LIFECYCLE, faults={"malformed": {"every": 1}})
    with pytest.raises(BadStatusPayload):
        await wait_for_run(api, broken["id"], policy=FAST.replace(unavailable_after=2))
    down = runwatch_server.create_run(script=LIFECYCLE, faults={"errors_5xx": {"every": 1}})
    with pytest.raises(StatusUnavailable):
        await wait_for_run(api, down["id"], policy=FAST.replace(unavailable_after=0.3))


async def test_start_long_poll_and_cancel_go_through_the_same_transport(
    runwatch_server: ReferenceServer, make: Callable[[], Transport]
) -> None:
    api = api_on(runwatch_server, make)
    body = {"script": [{"status": "RUNNING", "for": 30}, {"status": "SUCCEEDED"}]}
    started = await api.start_run(body, idempotency_key="contract-1")
    again = await api.start_run(body, idempotency_key="contract-1")
    assert again.id == started.id and again.replayed
    changes = watch_run(api, started, policy=Policy(interval=5, max_interval=10, long_poll=10))
    assert (await anext(changes)).status is State.RUNNING
    await api.cancel_run(started.id)
    rest = [s.status async for s in changes]
    assert rest[-1] is State.CANCELLED
    assert runwatch_server.stats()["runs"][started.id]["GET"] <= 5  # held polls, not 5 s polling


async def test_the_body_cap_holds_on_every_transport(
    runwatch_server: ReferenceServer, make: Callable[[], Transport]
) -> None:
    run = runwatch_server.create_run(script=LIFECYCLE)
    api = api_on(runwatch_server, make, max_body=32)
    # The tolerance bounds each request too: 2 s leaves a loaded machine time to connect.
    with pytest.raises(StatusUnavailable, match="over the limit"):
        await wait_for_run(api, run["id"], policy=FAST.replace(unavailable_after=2))


async def test_your_httpx_client_is_used_and_left_open(runwatch_server: ReferenceServer) -> None:
    seen: list[str] = []

    async def note(request: httpx.Request) -> None:
        seen.append(request.headers.get("x-mine", ""))

    client = httpx.AsyncClient(headers={"X-Mine": "yes"}, event_hooks={"request": [note]})
    run = runwatch_server.create_run(script=LIFECYCLE)
    final = await wait_for_run(
        api_on(runwatch_server, lambda: HttpxTransport(client)), run["id"], policy=FAST
    )
    assert final.status is State.SUCCEEDED
    assert seen and set(seen) == {"yes"}
    assert not client.is_closed  # yours to close
    await client.aclose()


async def test_a_mock_transport_serves_unit_tests() -> None:
    states = iter(["QUEUED", "RUNNING", "RUNNING", "CANCELLED"])

    def answer(request: Any) -> Response:
        if request.url.endswith("/runs/r-9"):
            return Response.of_json({"id": "r-9", "status": next(states)})
        raise TransientError("unreachable host")

    transport = MockTransport(answer)
    api = RunApi("https://jobs.test", transport=transport)
    with pytest.raises(RunCancelled):
        await wait_for_run(api, "r-9", policy=Policy(interval=0.01, max_interval=0.01))
    assert [r.url for r in transport.requests] == ["https://jobs.test/runs/r-9"] * 4
    assert transport.requests[0].headers["Accept"] == "application/json"


def test_importing_runwatch_loads_no_http_library() -> None:
    """A DAG parse, a triggerer or a flow that imports runwatch without waiting pays nothing for aiohttp or
    httpx: a transport imports its library when it first opens a channel (docs/benchmarks.md)."""
    probe = "import sys, runwatch; print(sorted({'aiohttp', 'httpx'} & set(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "[]"
