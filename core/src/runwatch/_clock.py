"""The engine's clock: wall time for deadlines, monotonic time for pacing, and how to sleep.

Injectable, as tenacity's `sleep=` is, so that pacing, deadlines, heartbeats and hints are tested with a
fake clock in milliseconds (`runwatch.testing.FakeClock`).
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

__all__ = ["SYSTEM_CLOCK", "Clock", "SystemClock"]


class Clock(Protocol):
    """What the engine asks of time."""

    def time(self) -> float:
        """UNIX seconds, for absolute deadlines."""

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps, for intervals."""

    async def sleep(self, seconds: float) -> None:
        """Pause this task for `seconds`."""


class SystemClock:
    """The real clock: `time.time()`, `time.monotonic()`, `asyncio.sleep()`."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


SYSTEM_CLOCK: Clock = SystemClock()
