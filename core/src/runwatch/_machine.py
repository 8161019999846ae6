"""The forward-only state machine of one watched run."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from enum import Enum

from runwatch._status import RunStatus

__all__ = ["Anomaly", "RunMachine", "Verdict"]

log = logging.getLogger("runwatch")

_SEEN_DELIVERIES = 256  # enough to catch a redelivery; bounded so a long watch stays small


class Verdict(str, Enum):
    """What the machine did with an observation."""

    APPLIED = "applied"  # the state, or what decides the outcome, changed: report it, reset the pacing
    PROGRESSED = "progressed"  # something else worth reporting changed (progress, say): no pacing reset
    UNCHANGED = "unchanged"  # nothing to report; liveness (heartbeat, updated_at, version) may have moved
    STALE = "stale"  # older than what we hold: a late delivery
    DUPLICATE = "duplicate"  # a delivery id we already took
    ILLEGAL = "illegal"  # would move the phase backwards or leave a terminal state


@dataclass(frozen=True)
class Anomaly:
    """An observation the machine refused because it would break the model."""

    current: RunStatus
    observed: RunStatus

    def __str__(self) -> str:
        return (
            f"run {self.current.id}: {self.current.status.value} -> {self.observed.status.value} "
            f"({self.observed.raw_status}) is not a legal move"
        )


@dataclass
class RunMachine:
    """Holds the current status of one run and takes observations in any order.

    The phase never moves backwards and a terminal state is absorbing. Observations carry their own time
    (a version, else `updated_at`); an older one than the current is dropped, as is a repeated delivery id,
    unless it moves the phase forward: a late terminal is still the end of the run, whatever came after it.
    Liveness is not change: an observation whose only news is liveness (`heartbeat_at`, `updated_at`,
    `version`) becomes the current status, for zombie detection, but is `UNCHANGED`.
    """

    current: RunStatus | None = None
    anomalies: list[Anomaly] = field(default_factory=list)
    _deliveries: dict[str, None] = field(default_factory=dict, repr=False)

    def observe(self, status: RunStatus, delivery_id: str | None = None) -> Verdict:
        if delivery_id is not None:
            if delivery_id in self._deliveries:
                return Verdict.DUPLICATE
            self._deliveries[delivery_id] = None
            if len(self._deliveries) > _SEEN_DELIVERIES:
                del self._deliveries[next(iter(self._deliveries))]
        current = self.current
        if current is None:
            self.current = status
            return Verdict.APPLIED
        forward = status.phase.rank > current.phase.rank
        if _is_older(status, current) and not forward:
            return Verdict.STALE
        if current.is_terminal or status.phase.rank < current.phase.rank:
            if status.status is current.status:
                return Verdict.UNCHANGED
            anomaly = Anomaly(current, status)
            self.anomalies.append(anomaly)
            log.warning("ignored an illegal transition: %s", anomaly)
            return Verdict.ILLEGAL
        changed = _changed(status, current)
        self.current = status
        if not changed:
            return Verdict.UNCHANGED
        return Verdict.APPLIED if changed & _DECISIVE else Verdict.PROGRESSED


def _is_older(new: RunStatus, cur: RunStatus) -> bool:
    if new.version is not None and cur.version is not None:
        return new.version < cur.version
    if new.updated_at is not None and cur.updated_at is not None:
        return new.updated_at < cur.updated_at
    return False


# What decides the outcome, and what only says the run (or our view of it) is alive.
_DECISIVE = frozenset({"status", "raw_status", "errors", "output_ref"})
_LIVENESS = frozenset({"heartbeat_at", "updated_at", "version", "observed_at", "etag"})


def _changed(a: RunStatus, b: RunStatus) -> set[str]:
    """The fields that differ, liveness left out."""
    mine, theirs = a.__dict__, b.__dict__
    return {k for k in mine if k not in _LIVENESS and mine[k] != theirs[k]}
