"""Deliberate misbehaviour on GET /runs/{id}: which fault hits a request, and the rate-limit quota."""

from __future__ import annotations

import math
import time
from email.utils import formatdate

from runwatch.server._spec import (
    ErrorFault,
    FaultSet,
    MalformedFault,
    OversizedFault,
    QuotaSpec,
    RateLimitFault,
    SlowFault,
    Trigger,
    TruncatedFault,
)

__all__ = ["FaultCounters", "Modes", "Quota", "http_date_in", "modes_of", "pick_fault", "seconds"]

AnyFault = (
    Trigger | RateLimitFault | ErrorFault | MalformedFault | SlowFault | TruncatedFault | OversizedFault
)
Fault = tuple[str, AnyFault]

# The order in which faults are considered (`slow` holds a request and lets it go on; the quota of
# `ratelimit_headers` comes before `malformed`); each counts only the requests that reach it.
ORDER = ("slow", "drop", "rate_limit", "errors_5xx", "malformed", "truncated", "oversized", "etag_lies")


class FaultCounters:
    """How many requests reached each fault of one fault set (so `first: n` is exact)."""

    __slots__ = ("counts", "generation")

    def __init__(self, generation: int = 0) -> None:
        self.generation = generation
        self.counts = dict.fromkeys(ORDER, 0)


def _trigger_of(fault: AnyFault) -> Trigger:
    return fault if isinstance(fault, Trigger) else fault.trigger


def pick_fault(sets: list[tuple[FaultSet, FaultCounters]], kinds: tuple[str, ...] = ORDER) -> Fault | None:
    """The first fault that hits this request, counting it against every fault it reaches."""
    for kind in kinds:
        for faults, counters in sets:
            fault: AnyFault | None = getattr(faults, kind)
            if fault is None:
                continue
            counters.counts[kind] += 1
            if _trigger_of(fault).hits(counters.counts[kind]):
                return kind, fault
    return None


class Modes:
    """What the API lacks on every answer, from every fault set that applies (per run and global)."""

    __slots__ = ("no_304", "no_etag", "omit")

    def __init__(
        self, no_etag: bool = False, no_304: bool = False, omit: frozenset[str] = frozenset()
    ) -> None:
        self.no_etag = no_etag
        self.no_304 = no_304
        self.omit = omit

    @property
    def conditional(self) -> bool:
        """Whether the API honours If-None-Match at all."""
        return not (self.no_etag or self.no_304)


def modes_of(sets: list[tuple[FaultSet, FaultCounters]]) -> Modes:
    return Modes(
        any(faults.no_etag for faults, _ in sets),
        any(faults.no_304 for faults, _ in sets),
        frozenset().union(*(faults.omit for faults, _ in sets)),
    )


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
