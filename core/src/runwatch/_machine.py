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

    APPLIED = "applied"  # the watch moved on
    UNCHANGED = "unchanged"  # same state, same data: nothing to report
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
        if _same(status, current):
            return Verdict.UNCHANGED
        self.current = status
        return Verdict.APPLIED


def _is_older(new: RunStatus, cur: RunStatus) -> bool:
    if new.version is not None and cur.version is not None:
        return new.version < cur.version
    if new.updated_at is not None and cur.updated_at is not None:
        return new.updated_at < cur.updated_at
    return False


_NOT_A_CHANGE = frozenset({"observed_at", "etag"})  # they change on every read, not with the run


def _same(a: RunStatus, b: RunStatus) -> bool:
    mine, theirs = a.__dict__, b.__dict__
    return all(mine[k] == theirs[k] for k in mine if k not in _NOT_A_CHANGE)
