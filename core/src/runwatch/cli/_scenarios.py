"""The demo's scenarios: one scripted run on the reference server per lifecycle, and what it must end as."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["BASE_POLICY", "SCENARIOS", "Scenario"]

# Fast pacing so the whole demo takes seconds; each scenario may override any of it.
BASE_POLICY: dict[str, Any] = {
    "interval": 0.25,
    "max_interval": 1.0,
    "backoff": 1.5,
    "request_timeout": 5.0,
    "unavailable_after": 15.0,
    "not_found_grace": 5.0,
}


def _running(seconds: float, steps: int, message: str = "working") -> list[dict[str, Any]]:
    """RUNNING for `seconds`, reporting progress `steps` times on the way."""
    each = seconds / steps
    return [
        {"status": "RUNNING", "for": each, "progress": {"percent": 100.0 * i / steps, "message": message}}
        for i in range(steps)
    ]


def _end(status: str, message: str | None = None, output_ref: str | None = None) -> dict[str, Any]:
    """The terminal step, with an error message or a result link."""
    step: dict[str, Any] = {"status": status}
    if message:
        step["errors"] = [{"message": message}]
    if output_ref:
        step["output_ref"] = output_ref
    return step


@dataclass(frozen=True)
class Scenario:
    """One run of the demo: what it does, the body that scripts it on the server, what it must end as."""

    name: str
    shows: str
    body: dict[str, Any]
    expect: str
    policy: dict[str, Any] = field(default_factory=dict)
    cancel_after: float | None = None  # the demo cancels the run this long after starting it
    webhook: bool = False  # changes are pushed to the demo's webhook inbox


_QUEUED = {"status": "QUEUED", "for": 0.4}

SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "success",
        "queued, runs with progress, succeeds",
        {
            "script": [
                _QUEUED,
                *_running(6.0, 6, "transforming"),
                _end("SUCCEEDED", output_ref="s3://demo/out"),
            ]
        },
        "succeeded",
    ),
    Scenario(
        "failure",
        "fails with an error",
        {"script": [_QUEUED, *_running(2.0, 2), _end("FAILED", "executor ran out of memory")]},
        "failed",
    ),
    Scenario(
        "cancel",
        "the demo cancels it mid-run",
        {"script": [_QUEUED, *_running(60.0, 20, "long job"), _end("SUCCEEDED")]},
        "cancelled",
        cancel_after=3.0,
    ),
    Scenario(
        "remote timeout",
        "the remote times it out",
        {"script": [_QUEUED, *_running(2.5, 2), _end("TIMED_OUT", "exceeded its 2.5s limit")]},
        "timed out",
    ),
    Scenario(
        "zombie",
        "stops heartbeating, still says RUNNING",
        {
            "script": [_QUEUED, {"status": "RUNNING", "for": 60.0}, _end("SUCCEEDED")],
            "heartbeat_every": 0.3,
            "stop_heartbeat_after": 2.5,
        },
        "lost",
        policy={"heartbeat_timeout": 2.0},
    ),
    Scenario(
        "partial success",
        "ends PARTIAL_SUCCESS",
        {"script": [_QUEUED, *_running(3.0, 3), _end("PARTIAL_SUCCESS", "3 of 40 partitions failed")]},
        "partial",
    ),
    Scenario(
        "rate limited",
        "a 429 storm with Retry-After",
        {
            "script": [_QUEUED, *_running(3.0, 3), _end("SUCCEEDED")],
            "faults": {"rate_limit": {"first": 5, "retry_after": 0.3}},
        },
        "succeeded",
    ),
    Scenario(
        "5xx burst",
        "a burst of 503s",
        {
            "script": [_QUEUED, *_running(3.0, 3), _end("SUCCEEDED")],
            "faults": {"errors_5xx": {"first": 4, "status": 503}},
        },
        "succeeded",
    ),
    Scenario(
        "404 lag",
        "404 for a while right after the start",
        {"script": [_QUEUED, *_running(2.0, 2), _end("SUCCEEDED")], "not_found_for": 1.5},
        "succeeded",
    ),
    Scenario(
        "long poll",
        "the server holds each request until a change",
        {"script": [_QUEUED, *_running(5.0, 4), _end("SUCCEEDED")]},
        "succeeded",
        policy={"long_poll": 10.0},
    ),
    Scenario(
        "illegal regression",
        "goes back to QUEUED mid-run (ignored)",
        {
            "script": [
                _QUEUED,
                *_running(1.5, 1),
                {"status": "QUEUED", "for": 1.0},
                *_running(1.5, 1),
                _end("SUCCEEDED"),
            ]
        },
        "succeeded",
    ),
    Scenario(
        "webhook",
        "pushed out of order and twice",
        {
            "script": [_QUEUED, *_running(4.0, 4), _end("SUCCEEDED")],
            "webhook": {"out_of_order": True, "duplicate": True},
        },
        "succeeded",
        policy={"interval": 5.0, "max_interval": 10.0},
        webhook=True,
    ),
    Scenario(
        "flaky network",
        "dropped connections and garbled bodies",
        {
            "script": [_QUEUED, *_running(2.5, 2), _end("SUCCEEDED")],
            "faults": {"drop": {"first": 2}, "malformed": {"every": 4}},
        },
        "succeeded",
    ),
    Scenario(
        "our deadline",
        "outlives our 4s deadline",
        {"script": [_QUEUED, *_running(60.0, 30), _end("SUCCEEDED")]},
        "deadline",
        policy={"timeout": 4.0},
    ),
    Scenario(
        "status unavailable",
        "every read fails; we say so",
        {
            "script": [_QUEUED, *_running(2.0, 2), _end("SUCCEEDED")],
            "faults": {"errors_5xx": {"every": 1, "status": 502}},
        },
        "unavailable",
        policy={"unavailable_after": 3.0},
    ),
)
