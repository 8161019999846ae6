"""Requests per run and detection latency for runs too long to measure in a bench: computed, not measured.

The runwatch rows replay the waiter's own pacing (`Policy.delay`, as `_Watch.next_delay` uses it without
server hints) over a run that changes once at 1 s (QUEUED -> RUNNING) and ends at `length`. Network time is
left out, so the figures are what the policy asks for.
"""

from __future__ import annotations

import math
import random
import statistics

import runwatch

__all__ = ["model_rows"]

TRIALS = 400


def _replay(policy: runwatch.Policy, length: float, change_at: float = 1.0) -> tuple[int, float]:
    """(requests, seconds from the end of the run to its detection) for one simulated wait."""
    t, quiet, requests, seen_change = 0.0, 0, 0, False
    while True:
        requests += 1
        if t >= length:
            return requests, t - length
        if t >= change_at and not seen_change:
            seen_change, quiet = True, 0
        elif requests > 1:
            quiet += 1
        t += policy.delay(quiet)


def _fixed(period: float, length: float, extra: int = 0) -> tuple[float, float]:
    """A fixed-period poller, its phase uniform against the run's end: (requests, mean latency)."""
    return length / period + 1 + extra, period / 2


def model_rows(
    lengths: tuple[float, ...] = (60.0, 600.0, 3600.0),
) -> list[tuple[str, list[tuple[float, float]]]]:
    """Per pattern, per run length: (requests per run, mean detection latency in seconds)."""
    random.seed(7)
    default = runwatch.Policy()
    rows: list[tuple[str, list[tuple[float, float]]]] = []
    rows.append(
        ("fixed 1 s (naive, HttpSensorTrigger poke 1 s, runwatch 1 s)", [_fixed(1, L) for L in lengths])
    )
    rows.append(
        ("DatabricksExecutionTrigger default (30 s, +1 GET at the end)", [_fixed(30, L, 1) for L in lengths])
    )
    cells = []
    for length in lengths:
        runs = [_replay(default, length) for _ in range(TRIALS)]
        cells.append((statistics.fmean(r for r, _ in runs), statistics.fmean(lat for _, lat in runs)))
    rows.append(("runwatch default Policy (2 s, x2, full jitter, cap 60 s)", cells))
    # Long polling: one hold until the change at 1 s, then holds of 30 s until the end, answered at once.
    rows.append(
        ("runwatch long polling (holds of 30 s)", [(1 + math.ceil((L - 1) / 30), 0.0) for L in lengths])
    )
    return rows
