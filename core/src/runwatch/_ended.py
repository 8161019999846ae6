"""Runs that end, seen through a profile's `[list_runs]` endpoint: the listing poll and the cursor that event
sources (the Airflow event trigger, the Prefect event source) share.

A poll reads the whole answer of the list endpoint (every run under the filter the profile's body or URL
names) and the cursor turns those snapshots into "this run has just ended": a run is announced once, the
first time it is seen terminal, and never again while the cursor remembers it. A state that merely stays true
("the job succeeded") is therefore never announced twice. Because each snapshot is the full answer, not a
delta, a consumer that joins late or restarts with its cursor loses nothing that is still in the answer.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any, Literal

from runwatch._api import RunApi
from runwatch._errors import BadStatusPayload, ProfileError, RunwatchError
from runwatch._profile import ListSpec
from runwatch._states import State
from runwatch._status import RunStatus
from runwatch.text import inert

__all__ = ["OUTCOMES", "EndedRuns", "Outcomes", "ended_runs", "read_run_list", "run_lists"]

log = logging.getLogger("runwatch.ended")

Outcomes = Literal["succeeded", "any"]
OUTCOMES: tuple[Outcomes, ...] = ("succeeded", "any")
KEEP = 1000  # ended run ids a cursor remembers beyond the current answer (oldest forgotten first)
MAX_BACKOFF = 300.0  # seconds: the longest pause after failed reads in a row


def fires(status: RunStatus, outcomes: Outcomes) -> bool:
    """Whether an ended run is announced under `outcomes` ("succeeded": SUCCEEDED only; "any": every end)."""
    return status.is_terminal and (outcomes == "any" or status.status is State.SUCCEEDED)


class EndedRuns:
    """The cursor: which runs under a filter are already known to have ended.

    `seen=None` is a cursor that has not looked yet: its first `update` takes the runs that already ended as
    history and announces none of them (a new watch does not replay the past). The cursor is plain JSON
    (`to_dict`/`from_dict`), so it can be kept where the orchestrator keeps state between restarts.
    """

    def __init__(self, seen: Iterable[str] | None = None, *, keep: int = KEEP) -> None:
        self.started = seen is not None
        self.keep = keep
        self._seen: dict[str, None] = dict.fromkeys(seen or ())  # insertion-ordered: oldest first

    def __contains__(self, run_id: object) -> bool:
        return run_id in self._seen

    def __repr__(self) -> str:
        return f"EndedRuns(started={self.started}, seen={len(self._seen)})"

    @property
    def seen(self) -> list[str]:
        return list(self._seen)

    def update(self, runs: Sequence[RunStatus]) -> list[RunStatus]:
        """Take one answer of the list endpoint; the runs that ended since the last one, in answer order."""
        ended = [run for run in runs if run.is_terminal]
        if not self.started:
            self.started = True
            new: list[RunStatus] = []
        else:
            new = [run for run in ended if run.id not in self._seen]
        for run in ended:
            self._seen.pop(run.id, None)  # re-insert: what is still in the answer is the newest
            self._seen[run.id] = None
        listed = {run.id for run in runs}
        surplus = len(self._seen) - max(self.keep, len(listed))
        if surplus > 0:  # forget the oldest ids that are no longer in the answer
            for run_id in [r for r in self._seen if r not in listed][:surplus]:
                del self._seen[run_id]
        return new

    def copy(self) -> EndedRuns:
        """An independent cursor that remembers the same (to try an announcement, and keep it if it went)."""
        return EndedRuns(self.seen if self.started else None, keep=self.keep)

    def merge(self, other: EndedRuns) -> None:
        """Also remember what `other` remembers (two copies of one cursor: a run either saw stays seen)."""
        if other.started:
            self.started = True
            for run_id in other.seen:
                self._seen.setdefault(run_id, None)

    def to_dict(self) -> dict[str, Any]:
        return {"seen": self.seen}

    @classmethod
    def from_dict(cls, data: Any, *, keep: int = KEEP) -> EndedRuns:
        """A cursor from `to_dict()`'s data; None (nothing stored) is a cursor that has not looked yet.

        Raises ValueError for data that is not a stored cursor.
        """
        if data is None:
            return cls(keep=keep)
        seen = data.get("seen") if isinstance(data, Mapping) else None
        if not isinstance(seen, list) or not all(isinstance(item, str) for item in seen):
            raise ValueError("a stored cursor is an object with 'seen', a list of run ids")
        return cls(seen, keep=keep)


async def read_run_list(
    api: RunApi, *, retry_for: float = 30.0, request_timeout: float = 30.0
) -> list[RunStatus]:
    """Read every run of one answer of the profile's list endpoint, with the API's parameters as the filter.

    Each run's `url` is its status URL when the API's parameters fill the profile's template. Transient
    failures are retried for up to `retry_for` seconds. Raises ProfileError when the profile has no
    `[list_runs]` under a filter (none, or one by `{run_ids}` only) or does not map a listed state,
    BadStatusPayload for an answer it cannot read, AccessDenied/RunNotFound/RunwatchError for an error
    answer, TransientError when retries ran out.
    """
    spec = _filtered_list(api)
    url = api.profile.url(spec.url, base_url=api.base_url or "", **api.params)
    body = None if spec.body is None else api.profile.render_body(spec.body, **api.params)
    response = await api._send(spec.method, url, body, {}, retry_for, request_timeout)
    api.check(response, url)
    try:
        payload = json.loads(response.body)
    except (ValueError, RecursionError):
        raise BadStatusPayload(f"{spec.method} {url}: the body is not JSON") from None
    return [
        run if run.url else run.model_copy(update={"url": _url(api, run.id)})
        for run in api.profile.parse_list(payload)
    ]


def _filtered_list(api: RunApi) -> ListSpec:
    """The profile's `[list_runs]`, when it lists runs under a filter; ProfileError when it has none, or lists
    only the runs it is given by id (`{run_ids}`, for batched reads): runs not yet known cannot be named."""
    spec = api.profile.list_runs
    if spec is None:
        raise ProfileError(f"profile {api.profile.name!r} has no [list_runs] section")
    if spec.by_ids:
        raise ProfileError(
            f"profile {api.profile.name!r} lists runs by id only ({{run_ids}}), not under a filter: "
            "it cannot find runs it has not been told of"
        )
    return spec


def _url(api: RunApi, run_id: str) -> str | None:
    """The run's own status URL, when the filter's parameters are enough to build it."""
    try:
        return api.status_url(run_id)
    except RunwatchError:
        return None


async def run_lists(api: RunApi, *, interval: float = 30.0) -> AsyncIterator[list[RunStatus]]:
    """Every answer of the list endpoint, one read per `interval` seconds, for ever.

    A read that fails (the API away, rate limited, an answer the profile cannot read) is logged on one line
    and tried again after a pause that doubles up to 5 minutes: "could not tell" never ends the stream and
    never reads as a run that ended. Sleeps on `api.clock`. Raises ProfileError at once, before any request,
    when the profile has no `[list_runs]` under a filter (a mistake no retry mends).
    """
    _filtered_list(api)
    failures = 0
    while True:
        try:
            runs = await read_run_list(api, retry_for=min(interval, 30.0))
        except (RunwatchError, OSError) as exc:
            failures += 1
            log.warning(
                "reading the run list of %s failed: %s: %s", api.base_url, type(exc).__name__, inert(str(exc))
            )
        else:
            failures = 0
            yield runs
        await api.clock.sleep(min(interval * 2 ** min(failures, 16), max(MAX_BACKOFF, interval)))


async def ended_runs(
    api: RunApi, cursor: EndedRuns, *, outcomes: Outcomes = "any", interval: float = 30.0
) -> AsyncIterator[RunStatus]:
    """Each run under the filter that ends, once, as `cursor` sees it (updated in place), for ever."""
    async for runs in run_lists(api, interval=interval):
        for status in cursor.update(runs):
            if fires(status, outcomes):
                yield status
