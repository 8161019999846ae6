"""Requests that say who asks: W3C trace context on every request, a span per wait, an honest User-Agent."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import runwatch
from runwatch import MockTransport, Policy, Request, Response, RunApi, State, wait_for_run
from runwatch.server import ReferenceServer
from runwatch.testing import FakeClock

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
# The timeout: a wait that should have ended fails within seconds instead of polling until pytest's timeout.
FAST = Policy(interval=0.01, max_interval=0.01, timeout=10)

_exporter = InMemorySpanExporter()
_provider = TracerProvider()
_provider.add_span_processor(SimpleSpanProcessor(_exporter))
trace.set_tracer_provider(_provider)  # once per process: OpenTelemetry allows no second provider


def recorder(states: list[str]) -> tuple[MockTransport, list[Request]]:
    sent: list[Request] = []
    left = iter(states)

    def answer(request: Request) -> Response:
        sent.append(request)
        if request.method == "POST":
            return Response.of_json({"id": "r-1", "status": "QUEUED"}, 201, {"Location": "/runs/r-1"})
        return Response.of_json({"id": "r-1", "status": next(left, states[-1])})

    return MockTransport(answer), sent


async def test_every_request_of_a_wait_carries_the_callers_trace_context() -> None:
    _exporter.clear()
    transport, sent = recorder(["RUNNING", "RUNNING", "SUCCEEDED"])
    api = RunApi("https://jobs.test", transport=transport, product="runwatch-airflow/9.9")
    carrier = {"traceparent": PARENT, "tracestate": "vendor=1"}
    started = await api.start_run({"job": "x"}, idempotency_key="k", trace=carrier)
    final = await wait_for_run(api, started, policy=FAST, trace=carrier)
    await api.cancel_run("r-1", trace=carrier)
    assert final.status is State.SUCCEEDED
    trace_ids = {r.headers["traceparent"].split("-")[1] for r in sent}
    assert trace_ids == {PARENT.split("-")[1]}  # one trace: the caller's
    assert all(
        r.headers["User-Agent"] == f"runwatch/{runwatch.__version__} runwatch-airflow/9.9" for r in sent
    )
    [span] = [s for s in _exporter.get_finished_spans() if s.name == "runwatch.wait"]
    assert format(span.context.trace_id, "032x") == PARENT.split("-")[1]
    attributes: dict[str, Any] = dict(span.attributes or {})
    assert attributes["runwatch.outcome"] == "SUCCEEDED" and attributes["runwatch.run_id"] == "r-1"
    assert attributes["runwatch.requests"] == 3
    assert attributes["runwatch.status_url"] == "https://jobs.test/runs/r-1"
    # one event per change the wait saw: the second RUNNING was no news
    assert [(e.name, dict(e.attributes or {})) for e in span.events] == [
        ("runwatch.change", {"runwatch.status": "RUNNING"}),
        ("runwatch.change", {"runwatch.status": "SUCCEEDED"}),
    ]
    status_requests = [r for r in sent if r.method == "GET"]
    span_id = format(span.context.span_id, "016x")
    assert {r.headers["traceparent"].split("-")[2] for r in status_requests} == {
        span_id
    }  # children of the span


@pytest.mark.parametrize("bad", ["", "junk", "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"])
async def test_a_malformed_carrier_is_ignored_and_the_wait_goes_on(bad: str) -> None:
    _exporter.clear()
    transport, sent = recorder(["SUCCEEDED"])
    final = await wait_for_run(
        RunApi("https://jobs.test", transport=transport), "r-1", policy=FAST, trace={"traceparent": bad}
    )
    assert final.status is State.SUCCEEDED
    [span] = _exporter.get_finished_spans()
    assert sent[0].headers["traceparent"].split("-")[1] == format(
        span.context.trace_id, "032x"
    )  # a new trace


async def test_a_wait_that_ends_without_success_says_how_in_its_span() -> None:
    _exporter.clear()
    transport, _ = recorder(["RUNNING", "FAILED"])
    with pytest.raises(runwatch.RunFailed):
        await wait_for_run(RunApi("https://jobs.test", transport=transport), "r-1", policy=FAST)
    [span] = _exporter.get_finished_spans()
    assert dict(span.attributes or {})["runwatch.outcome"] == "FAILED"


async def test_the_reference_server_sees_the_callers_trace_on_every_request_about_the_run(
    runwatch_server: ReferenceServer,
) -> None:
    _exporter.clear()
    carrier = {"traceparent": PARENT}
    api = RunApi(runwatch_server.url)
    script = [{"status": "RUNNING", "for": 0.2}, {"status": "SUCCEEDED"}]
    started = await api.start_run({"script": script}, idempotency_key="traced", trace=carrier)
    assert (await api.get_status(started.id, trace=carrier)).id == started.id
    final = await wait_for_run(api, started, policy=FAST, trace=carrier)
    await api.cancel_run(started.id, trace=carrier)
    assert final.status is State.SUCCEEDED
    stats = runwatch_server.stats()
    seen = stats["traceparents"][started.id]
    [span] = [s for s in _exporter.get_finished_spans() if s.name == "runwatch.wait"]
    in_the_wait = f"00-{PARENT.split('-')[1]}-{format(span.context.span_id, '016x')}-01"
    # the start, the one read and the cancel carry the caller's; the wait's reads its span, in that trace
    assert set(seen) == {PARENT, in_the_wait}
    assert seen[PARENT] == 3 and seen[in_the_wait] == stats["runs"][started.id]["GET"] - 1


async def test_a_wait_that_cannot_see_the_end_says_why_in_its_span() -> None:
    _exporter.clear()
    transport, _ = recorder(["RUNNING"])
    api = RunApi("https://jobs.test", transport=transport, clock=FakeClock())
    with pytest.raises(runwatch.WaitTimeout):
        await wait_for_run(api, "r-1", policy=Policy(interval=1, jitter=False, timeout=5))
    [span] = _exporter.get_finished_spans()
    attributes = dict(span.attributes or {})
    assert attributes["runwatch.outcome"] == "WaitTimeout"
    assert attributes["runwatch.requests"] == 3  # reads at 0, 1 and 3; the deadline at 5


@pytest.mark.timeout(10)  # milliseconds; the pushes wait in real time, so a broken loop would spin for ever
async def test_a_change_that_came_by_push_is_an_event_of_the_span_too() -> None:
    _exporter.clear()
    secret = runwatch.webhooks.generate_secret()
    inbox = runwatch.WebhookInbox(secret)
    body = json.dumps({"id": "r-1", "status": "SUCCEEDED"}).encode()
    now = int(time.time())
    headers = {
        "webhook-id": "m1",
        "webhook-timestamp": str(now),
        "webhook-signature": runwatch.webhooks.sign(secret, "m1", now, body),
    }
    assert inbox.deliver(headers, body) == 204  # kept until the wait subscribes
    transport, sent = recorder(["RUNNING"])
    api = RunApi("https://jobs.test", transport=transport, clock=FakeClock())
    final = await wait_for_run(api, "r-1", policy=Policy(interval=1, timeout=100), inbox=inbox)
    assert final.status is State.SUCCEEDED and len(sent) == 1
    [span] = _exporter.get_finished_spans()
    assert [dict(e.attributes or {}) for e in span.events] == [
        {"runwatch.status": "RUNNING"},
        {"runwatch.status": "SUCCEEDED"},
    ]
    attributes = dict(span.attributes or {})
    assert attributes["runwatch.outcome"] == "SUCCEEDED" and attributes["runwatch.run_id"] == "r-1"
