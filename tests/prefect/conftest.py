"""Prefect suite: a real Prefect 3 server (prefect_test_harness) for the session, reference servers per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import prefect_harness  # first: it sets PREFECT_HOME and friends before Prefect reads them
import pytest
from opentelemetry import trace as otel_trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.util._once import Once

from prefect_runwatch import RunStatusApi
from runwatch.server import ReferenceServer


@pytest.fixture(scope="session", autouse=True)
def prefect_api() -> Iterator[str]:
    yield prefect_harness.start()
    prefect_harness.stop()


@pytest.fixture
def server(runwatch_server_factory: Callable[..., ReferenceServer]) -> ReferenceServer:
    """A reference server that asks for the canary token and answers a start with no Retry-After."""
    return runwatch_server_factory(retry_after=0, token=prefect_harness.CANARY)


@pytest.fixture
def api(server: ReferenceServer) -> RunStatusApi:
    """An unsaved block for `server`."""
    return RunStatusApi(base_url=server.url, token=prefect_harness.CANARY)


@pytest.fixture
def tracing() -> Iterator[None]:
    """Prefect's tracing on, as its docs set it up: an OpenTelemetry SDK tracer provider in the process
    (Prefect then labels each flow run with its span's traceparent). Taken down afterwards as OpenTelemetry's
    own test helpers do (`reset_trace_globals`): Prefect does more per flow run with it on, and the other
    tests keep the timing they were written for."""
    otel_trace.set_tracer_provider(TracerProvider())
    yield
    otel_trace._TRACER_PROVIDER = None
    otel_trace._TRACER_PROVIDER_SET_ONCE = Once()
