"""The trace context of a Prefect flow run, so that the remote's traces join the flow run's own.

With OpenTelemetry set up, Prefect 3 starts a span per flow run and keeps its W3C `traceparent` in the flow
run's labels (`__OTEL_TRACEPARENT`, `prefect.telemetry.run_telemetry.LABELS_TRACEPARENT_KEY`). The tasks
send it with every start, status and cancel request; the suspend-mode watcher reads it from the suspended
flow run, so its requests join that trace too. A trace id is not a secret.
"""

from __future__ import annotations

from prefect.client.schemas.objects import FlowRun
from prefect.context import FlowRunContext
from prefect.telemetry.run_telemetry import LABELS_TRACEPARENT_KEY

__all__ = ["flow_run_carrier"]


def flow_run_carrier(flow_run: FlowRun | None = None) -> dict[str, str] | None:
    """`{"traceparent": ...}` from `flow_run`'s labels (default: the current flow run's), or None."""
    if flow_run is None:
        context = FlowRunContext.get()
        flow_run = context.flow_run if context else None
    parent = flow_run.labels.get(LABELS_TRACEPARENT_KEY) if flow_run is not None else None
    return {"traceparent": parent} if isinstance(parent, str) else None
