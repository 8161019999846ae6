"""Trace context: the remote's traces join the orchestrator's; a wait is one span where OpenTelemetry is.

Every status, start and cancel request carries W3C Trace Context (`traceparent`, `tracestate`;
https://www.w3.org/TR/trace-context/): the carrier given to the wait (an Airflow task's or a Prefect flow
run's), else the current OpenTelemetry context. With `opentelemetry-api` installed, a wait is one span,
`runwatch.wait`, with an event per change and the run id, outcome and request count as attributes; without
it nothing is required and nothing is done.
"""

from __future__ import annotations

import functools
import importlib
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["WaitTrace", "trace_headers"]

_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")


def trace_headers(carrier: Mapping[str, str] | None) -> dict[str, str]:
    """`traceparent` and `tracestate` from `carrier`, if well-formed; else from the current OTel context."""
    if carrier:
        parent = str(carrier.get("traceparent", "")).strip().lower()
        if _TRACEPARENT.match(parent) and not parent.startswith("ff"):
            headers = {"traceparent": parent}
            state = carrier.get("tracestate")
            if state:
                headers["tracestate"] = str(state)[:512]
            return headers
    propagate = _otel("propagate")
    if propagate is None:
        return {}
    injected: dict[str, str] = {}
    propagate.inject(injected)
    return {k: v for k, v in injected.items() if k in ("traceparent", "tracestate")}


@functools.cache
def _otel(module: str) -> Any:
    """`opentelemetry.<module>` when OpenTelemetry is installed, else None (it is optional).

    Cached: without OpenTelemetry, a failed import would search the path again at every wait's start."""
    try:
        return importlib.import_module(f"opentelemetry.{module}")
    except ImportError:
        return None


class WaitTrace:
    """The span of one wait (nothing without OpenTelemetry), and the trace headers its requests carry."""

    def __init__(self, carrier: Mapping[str, str] | None, url: str) -> None:
        self.requests = 0
        self.span: Any = None
        trace, propagate = _otel("trace"), _otel("propagate")
        if trace is None or propagate is None:
            self.headers = trace_headers(carrier)
            return
        parent = propagate.extract(dict(carrier)) if carrier else None
        self.span = trace.get_tracer("runwatch").start_span(
            "runwatch.wait", context=parent, attributes={"runwatch.status_url": url}
        )
        injected: dict[str, str] = {}
        propagate.inject(injected, context=trace.set_span_in_context(self.span))
        self.headers = {k: v for k, v in injected.items() if k in ("traceparent", "tracestate")}

    def changed(self, run_id: str, state: str) -> None:
        if self.span is not None:
            self.span.set_attribute("runwatch.run_id", run_id)
            self.span.add_event("runwatch.change", {"runwatch.status": state})

    def finish(self, outcome: str) -> None:
        """End the span with how the wait ended (a terminal state, or the exception's class name)."""
        if self.span is not None:
            self.span.set_attribute("runwatch.outcome", outcome)
            self.span.set_attribute("runwatch.requests", self.requests)
            self.span.end()
            self.span = None
