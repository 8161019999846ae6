"""Deliberate misbehaviour on GET /runs/{id}: which fault hits a request, and the rate-limit quota."""

from __future__ import annotations

import math
import time
from email.utils import formatdate

from runwatch.server._spec import ErrorFault, FaultSet, MalformedFault, QuotaSpec, RateLimitFault, Trigger

__all__ = ["FaultCounters", "Quota", "http_date_in", "pick_fault", "seconds"]

Fault = tuple[str, "Trigger | RateLimitFault | ErrorFault | MalformedFault"]

# The order in which faults are considered (the quota of `ratelimit_headers` comes before `malformed`);
# each counts only the requests that reach it.
ORDER = ("drop", "rate_limit", "errors_5xx", "malformed")


class FaultCounters:
    """How many requests reached each fault of one fault set (so `first: n` is exact)."""

    __slots__ = ("counts", "generation")

    def __init__(self, generation: int = 0) -> None:
        self.generation = generation
        self.counts = dict.fromkeys(ORDER, 0)


def _trigger_of(fault: Trigger | RateLimitFault | ErrorFault | MalformedFault) -> Trigger:
    return fault if isinstance(fault, Trigger) else fault.trigger


def pick_fault(sets: list[tuple[FaultSet, FaultCounters]], kinds: tuple[str, ...] = ORDER) -> Fault | None:
    """The first fault that hits this request, counting it against every fault it reaches."""
    for kind in kinds:
        for faults, counters in sets:
            fault: Trigger | RateLimitFault | ErrorFault | MalformedFault | None = getattr(faults, kind)
            if fault is None:
                continue
            counters.counts[kind] += 1
            if _trigger_of(fault).hits(counters.counts[kind]):
                return kind, fault
    return None


class Quota:
    """A fixed-window request quota that backs the IETF RateLimit headers with a real count."""

    __slots__ = ("spec", "used", "window_start")

    def __init__(self, spec: QuotaSpec) -> None:
        self.spec = spec
        self.window_start = -math.inf
        self.used = 0

    def take(self, now: float) -> tuple[bool, int, float]:
        """Spend one request: (allowed, remaining, seconds until the window resets)."""
        if now >= self.window_start + self.spec.window:
            self.window_start = now
            self.used = 0
        reset = self.window_start + self.spec.window - now
        if self.used >= self.spec.quota:
            return False, 0, reset
        self.used += 1
        return True, self.spec.quota - self.used, reset

    def headers(self, remaining: int, reset: float) -> dict[str, str]:
        window = seconds(self.spec.window)
        reset_text = str(max(1, math.ceil(reset))) if self.spec.window.is_integer() else seconds(reset)
        return {
            "ratelimit-policy": f'"default";q={self.spec.quota};w={window}',
            "ratelimit": f'"default";r={remaining};t={reset_text}',
        }


def seconds(value: float) -> str:
    """Seconds as HTTP wants them: an integer when whole, else a short decimal (for fast tests)."""
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.3f}".rstrip("0").rstrip(".")


def http_date_in(delay: float) -> str:
    """An HTTP-date at least `delay` seconds from now (HTTP-dates have whole-second resolution)."""
    return formatdate(math.ceil(time.time() + delay), usegmt=True)
