"""Canonical run states and the phases they belong to."""

from __future__ import annotations

from enum import Enum

__all__ = ["Phase", "State"]


class Phase(str, Enum):
    """Where a run is in its life. Phases only move forward: PENDING < ACTIVE < TERMINAL."""

    PENDING = "PENDING"
    ACTIVE = "ACTIVE"
    TERMINAL = "TERMINAL"

    def __str__(self) -> str:  # `ACTIVE`, not `Phase.ACTIVE`, in logs and f-strings
        return self.value

    @property
    def rank(self) -> int:
        return _PHASE_RANK[self]


_PHASE_RANK = {Phase.PENDING: 0, Phase.ACTIVE: 1, Phase.TERMINAL: 2}


class State(str, Enum):
    """The canonical states every remote vocabulary is mapped onto."""

    QUEUED = "QUEUED"
    PENDING = "PENDING"
    SCHEDULED = "SCHEDULED"
    RUNNING = "RUNNING"
    CANCELLING = "CANCELLING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMED_OUT = "TIMED_OUT"
    PARTIAL_SUCCESS = "PARTIAL_SUCCESS"

    def __str__(self) -> str:  # `QUEUED` in logs and f-strings, not `State.QUEUED`
        return self.value

    @property
    def phase(self) -> Phase:
        return _PHASE_OF[self]

    @property
    def is_terminal(self) -> bool:
        return _PHASE_OF[self] is Phase.TERMINAL

    @classmethod
    def parse(cls, value: str) -> State:
        """Read a canonical name in any case; `IN_PROGRESS` is an alias of `RUNNING`."""
        name = value.strip().upper()
        if name == "IN_PROGRESS":
            return cls.RUNNING
        return cls(name)


_PHASE_OF = {
    State.QUEUED: Phase.PENDING,
    State.PENDING: Phase.PENDING,
    State.SCHEDULED: Phase.PENDING,
    State.RUNNING: Phase.ACTIVE,
    State.CANCELLING: Phase.ACTIVE,
    State.SUCCEEDED: Phase.TERMINAL,
    State.FAILED: Phase.TERMINAL,
    State.CANCELLED: Phase.TERMINAL,
    State.TIMED_OUT: Phase.TERMINAL,
    State.PARTIAL_SUCCESS: Phase.TERMINAL,
}
