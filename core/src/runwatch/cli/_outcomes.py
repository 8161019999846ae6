"""Short labels for how a wait ended, shared by the displays and the demo: the hand-off's outcome kinds."""

from __future__ import annotations

from runwatch._handoff import Outcome, outcome_kind

__all__ = ["label", "outcome_of"]


def label(kind: Outcome) -> str:
    """A short label for an outcome: `succeeded`, `failed`, `timed out`, `not found`, ..."""
    return kind.replace("_", " ")


def outcome_of(exc: BaseException | None) -> str:
    """The label of a wait that raised `exc` (None: it succeeded)."""
    return label("succeeded" if exc is None else outcome_kind(exc))
