"""The engine's clock: wall time for deadlines, monotonic time for pacing, and how to sleep.

Injectable, as tenacity's `sleep=` is, so that pacing, deadlines, heartbeats and hints are tested with a
fake clock in milliseconds (`runwatch.testing.FakeClock`).
"""

from __future__ import annotations

import asyncio
import time

__all__ = ["SYSTEM_CLOCK", "Clock"]


class Clock:
    """The real clock: `time.time()`, `time.monotonic()`, `asyncio.sleep()`."""

    def time(self) -> float:
        """UNIX seconds, for absolute deadlines."""
        return time.time()

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps, for intervals."""
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


SYSTEM_CLOCK = Clock()
