"""Callbacks of a wait, in tenacity's manner (`before_sleep`, `after`): each optional, each given plain data.

A hook that raises ends the wait with that exception: hooks are the caller's code, not ours to swallow.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from runwatch._machine import Anomaly
from runwatch._status import RunStatus

__all__ = ["Hooks"]


@dataclass(frozen=True)
class Hooks:
    """What a wait tells its caller as it goes.

    - `on_change(status)`: news about the run (state, outcome, progress), the last one terminal; may be a
      coroutine function.
    - `on_anomaly(anomaly)`: an observation the state machine refused (a regression, a late delivery that
      would move backwards).
    - `on_request(method, url)`: just before each status request goes out.
    - `before_sleep(seconds)`: the wait is about to pause this long before its next read.
    - `on_unreadable(problem)`: a read failed (the exception says why); the wait goes on until its limits.
    """

    on_change: Callable[[RunStatus], Awaitable[None] | None] | None = None
    on_anomaly: Callable[[Anomaly], None] | None = None
    on_request: Callable[[str, str], None] | None = None
    before_sleep: Callable[[float], None] | None = None
    on_unreadable: Callable[[Exception], None] | None = None


NO_HOOKS = Hooks()
