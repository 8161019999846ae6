"""Short labels for how a wait ended, shared by the displays and the demo: the hand-off's outcome kinds."""

from __future__ import annotations

from runwatch._handoff import outcome_kind

__all__ = ["outcome_of"]


def outcome_of(exc: BaseException | None) -> str:
    """A short label for how a wait ended: `succeeded`, `failed`, `timed out`, `not found`, ..."""
    return "succeeded" if exc is None else outcome_kind(exc).replace("_", " ")
