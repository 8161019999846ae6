"""The trace context of an Airflow task, so that the remote's traces join the task's own.

Airflow 3 gives every task instance a W3C Trace Context carrier (`TaskInstance.context_carrier`, a child of
its DAG run's), whether or not its OpenTelemetry tracing is on; with it on, the task's and the trigger's spans
hang from it. Only `traceparent` and `tracestate` are taken: trace ids, not secrets.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["task_carrier"]


def task_carrier(ti: object) -> dict[str, str] | None:
    """`ti.context_carrier`'s `traceparent` (and `tracestate`), or None when the task instance has none."""
    carrier = getattr(ti, "context_carrier", None)
    if not isinstance(carrier, Mapping) or not isinstance(carrier.get("traceparent"), str):
        return None
    return {key: carrier[key] for key in ("traceparent", "tracestate") if isinstance(carrier.get(key), str)}
