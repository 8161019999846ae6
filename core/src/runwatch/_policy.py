"""How a wait behaves: pacing, deadlines, tolerances. Plain numbers, so it travels as JSON."""

from __future__ import annotations

import random
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["Policy"]


class Policy(BaseModel):
    """The rules of one wait.

    Polling backs off while nothing changes: the n-th quiet poll waits a random time in
    [0, min(max_interval, interval * backoff**n)] (full jitter), and never less than `interval / 2`, so a
    herd of waits spreads out without any of them polling faster than the policy allows. A change resets it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    interval: float = Field(2.0, gt=0)
    """Seconds between polls after a change (the base of the backoff)."""
    max_interval: float = Field(60.0, gt=0)
    """The longest pause between two polls, in seconds."""
    backoff: float = Field(2.0, ge=1)
    """Factor the pause grows by with each quiet poll."""
    jitter: bool = True
    timeout: float | None = Field(None, gt=0)
    """Seconds from the start of the wait until `WaitTimeout` (None: no deadline of ours)."""
    heartbeat_timeout: float | None = Field(None, gt=0)
    """Seconds a RUNNING run's heartbeat may stand still before `RunLost` (None: not checked)."""
    unavailable_after: float = Field(300.0, ge=0)
    """Seconds status may stay unreadable (errors, rate limits, bad bodies) before `StatusUnavailable`."""
    first_read_after: float = Field(60.0, ge=0)
    """Seconds a run never read at all (refused, unknown host) is tried before `StatusUnavailable`."""
    not_found_grace: float = Field(30.0, ge=0)
    """Seconds a run we just started may answer 404 (read-after-write lag) before `RunNotFound`."""
    long_poll: float | None = Field(None, gt=0)
    """Seconds to ask the server to hold each request, where the profile says it long-polls."""
    partial_success: Literal["succeed", "fail", "partial"] = "partial"
    on_illegal: Literal["ignore", "raise"] = "ignore"
    request_timeout: float = Field(30.0, gt=0)
    """Seconds one request may take (a long-poll hold is added to it)."""

    @model_validator(mode="after")
    def _check(self) -> Policy:
        if self.max_interval < self.interval:
            raise ValueError(f"max_interval ({self.max_interval}) is less than interval ({self.interval})")
        return self

    def delay(self, quiet_polls: int, draw: float | None = None) -> float:
        """Seconds to sleep after `quiet_polls` polls in a row saw no change.

        `draw` in [0, 1) places the jittered pause between its floor and ceiling (default: a random one).
        Waits that share reads share one draw per read, so the most demanding policy sets the pace rather
        than the luckiest of many random draws.
        """
        ceiling = min(self.max_interval, self.interval * self.backoff ** min(quiet_polls, 64))
        if not self.jitter:
            return ceiling
        floor = min(self.interval / 2, ceiling)
        return floor + (random.random() if draw is None else draw) * (ceiling - floor)

    def __add__(self, other: Policy) -> Policy:
        """Combine policies as tenacity combines strategies: every field `other` set explicitly wins.

        `Policy(interval=5, max_interval=120) + Policy(timeout=3600) + Policy(heartbeat_timeout=300)`.
        A field is explicitly set when it was given to the constructor, to `replace`, or by an earlier `+`;
        defaults never override.
        """
        if not isinstance(other, Policy):
            return NotImplemented
        return self.replace(**other.model_dump(include=other.model_fields_set))

    def replace(self, **changes: Any) -> Policy:
        """A copy with `changes` applied; the fields set here and in `changes` stay explicitly set."""
        return Policy.model_validate(self.model_dump(include=self.model_fields_set) | changes)

    def to_dict(self) -> dict[str, Any]:
        """The fields not at their defaults, JSON-ready (each is a number, a bool, a string or None)."""
        return self.model_dump(exclude_defaults=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Policy:
        return cls.model_validate(data)
