"""The decisions of one wait, apart from any I/O: what to ask next, how long to sleep, when to give up.

`Watch` is told what happened (an answer, a failure, a push) and the time from its clock; it never sends or
sleeps itself. The loop in `_waiter` does the I/O, so these rules are tested with a fake clock.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone

from runwatch._api import RunApi, StartedRun
from runwatch._clock import Clock
from runwatch._errors import (
    BadStatusPayload,
    IllegalTransition,
    RunLost,
    RunNotFound,
    StatusUnavailable,
    WaitTimeout,
)
from runwatch._machine import RunMachine, Verdict
from runwatch._policy import Policy
from runwatch._states import State
from runwatch._status import RunStatus
from runwatch._transport import Response, TransientError

__all__ = ["Ask", "Reading", "Watch"]

log = logging.getLogger("runwatch")

NEWS = frozenset({Verdict.APPLIED, Verdict.PROGRESSED})


@dataclass(frozen=True, slots=True)
class Ask:
    """The next status request: where, with which headers, how long it may take, how long it is held."""

    url: str
    headers: dict[str, str]
    timeout: float  # seconds, the hold included
    hold: float  # seconds the server is asked to hold it (0: a plain read)


@dataclass(frozen=True, slots=True)
class Reading:
    """What one read brought, however it was made: an answer to the status URL (`response`, which took
    `took` seconds), the run as a batch answer showed it (`listed`; None with neither set: as last seen), or
    the failure (`error`). Shared reads hand one `Reading` to every wait that shares them."""

    response: Response | None = None
    took: float = 0.0
    listed: RunStatus | None = None
    error: Exception | None = None


class Watch:
    """The state of one wait between two reads, and the rules that end it."""

    def __init__(
        self, api: RunApi, run: str | StartedRun, policy: Policy, deadline: float | None, clock: Clock
    ) -> None:
        self.api, self.policy, self.clock = api, policy, clock
        self.started = run if isinstance(run, StartedRun) else None
        self.url = run.status_url if isinstance(run, StartedRun) else api.status_url(run)
        self.run_id = run.id if isinstance(run, StartedRun) else (None if run == self.url else run)
        self.headers = api.headers_for(self.url)
        now = clock.time()
        self.begun = now
        self.deadline = (
            deadline if deadline is not None else (now + policy.timeout if policy.timeout else None)
        )
        self.long_polling = bool(policy.long_poll and api.profile.long_poll)
        self.machine = RunMachine()
        self.etag: str | None = None
        self.looked = False  # a first answer came back: from now on a long poll may be held
        self.quiet = 0  # reads in a row without a change of state
        self.unreadable_since: float | None = None
        self.problem: Exception | None = None
        self.heartbeat: tuple[datetime, float] | None = None  # (value, when we first saw it)
        self.dropped: list[str] = []
        self.warned: set[str] = set()

    @property
    def last(self) -> RunStatus | None:
        return self.machine.current

    def describe(self) -> str:
        last = self.last
        return f"run {last.id} was last {last.status.value}" if last else f"{self.url} was never read"

    # ---------------------------------------------------------------------------------------- limits

    def blind_limit(self) -> float | None:
        """When being unable to read ends the wait: the unavailable tolerance, shorter for a first read."""
        if self.unreadable_since is None:
            return None
        policy = self.policy
        tolerance = policy.unavailable_after
        if self.last is None:
            first = max(policy.first_read_after, policy.not_found_grace if self.started else 0.0)
            tolerance = min(tolerance, first)
        return self.unreadable_since + tolerance

    def limit(self) -> float | None:
        """The earliest time (UNIX seconds) at which the wait ends without news: deadline or blindness."""
        found = [t for t in (self.deadline, self.blind_limit()) if t is not None]
        return min(found) if found else None

    def check_limits(self) -> None:
        """Raise the outcome of a limit that has passed: `WaitTimeout`, else `StatusUnavailable`."""
        now = self.clock.time()
        if self.deadline is not None and now >= self.deadline:
            waited = now - self.begun
            raise WaitTimeout(f"gave up waiting after {waited:.0f}s; {self.describe()}", self.last)
        blind = self.blind_limit()
        if blind is None or now < blind:
            return
        assert self.unreadable_since is not None
        since = datetime.fromtimestamp(self.unreadable_since, timezone.utc)
        message = (
            f"status unreadable for {now - self.unreadable_since:.0f}s ({self.problem}); {self.describe()}"
        )
        if isinstance(self.problem, BadStatusPayload):
            raise BadStatusPayload(message, self.last)
        raise StatusUnavailable(message, self.last, since)

    def bound(self, delay: float) -> float:
        """`delay`, cut short so that no sleep runs past a limit or the heartbeat's expiry."""
        limit = self.limit()
        if limit is not None:
            delay = min(delay, limit - self.clock.time())
        if self.heartbeat is not None and self.policy.heartbeat_timeout is not None:
            delay = min(delay, self.heartbeat[1] + self.policy.heartbeat_timeout - self.clock.monotonic())
        return max(0.0, delay)

    # --------------------------------------------------------------------------------------- reading

    def ask(self) -> Ask:
        """The next request. The first look is never held; after it, every request is, where long-polling."""
        policy, profile = self.policy, self.api.profile
        headers = {"If-None-Match": self.etag} if self.etag else {}
        url, timeout, hold = self.url, policy.request_timeout, 0.0
        if self.long_polling and self.looked and profile.long_poll and policy.long_poll:
            hold = self.bound(min(policy.long_poll, profile.long_poll.max))
            if hold >= 1:
                if profile.long_poll.style == "query":
                    url = f"{url}{'&' if '?' in url else '?'}{profile.long_poll.param}={hold:g}"
                else:
                    headers["Prefer"] = f"wait={hold:g}"
                timeout += hold
            else:
                hold = 0.0
        return Ask(url, {**self.headers, **headers} if headers else self.headers, timeout, hold)

    def answered(self, ask: Ask, response: Response, took: float) -> tuple[RunStatus | None, bool]:
        """Take one answer that took `took` seconds: (its status, None if unchanged or unreadable; held?)

        Raises what the answer means when it ends the wait (RunNotFound, AccessDenied, ProfileError...).
        """
        held = ask.hold > 0 and took >= ask.hold / 2
        if response.status == 304:
            self.readable()
            return None, held
        try:
            status = self.api.read_status(response, self.url, self.run_id, self.dropped)
        except RunNotFound:
            if self.started is None or self.clock.time() - self.begun > self.policy.not_found_grace:
                raise
            self.unreadable(RunNotFound(f"{self.url} is not readable yet"))
            return None, False
        except BadStatusPayload as exc:
            self.unreadable(exc)
            return None, False
        self.readable()
        self.etag = response.headers.get("etag")
        if self.dropped:
            self._warn_dropped()
        return status, held

    def took_reading(self, ask: Ask, reading: Reading) -> tuple[RunStatus | None, bool, float | None]:
        """Take one reading: (its status, None if unchanged or unreadable; held?; the server's hint).

        Raises what the reading means when it ends the wait (RunNotFound, AccessDenied, ProfileError...).
        """
        error = reading.error
        if error is not None:
            if isinstance(error, TransientError):
                return None, False, self.failed(error)
            if isinstance(error, BadStatusPayload):
                self.unreadable(error)
                return None, False, None
            raise error
        if reading.response is not None:
            status, held = self.answered(ask, reading.response, reading.took)
            return status, held, None
        self.readable()
        return reading.listed, False, None

    def nothing_new(self) -> None:
        """A read that brought no status (unchanged, or unreadable): one more quiet read."""
        self.quiet += 1

    def failed(self, problem: TransientError) -> float | None:
        """Take a failed request; the server's hint (seconds), if it gave one."""
        self.unreadable(problem)
        return problem.retry_after

    def readable(self) -> None:
        self.looked = True
        self.unreadable_since, self.problem = None, None

    def unreadable(self, problem: Exception) -> None:
        """Note a failed read; the limits decide when blindness ends the wait."""
        first = self.unreadable_since is None
        if first:
            self.unreadable_since = self.clock.time()
        self.problem = problem
        log.log(logging.WARNING if first else logging.INFO, "status of %s unreadable: %s", self.url, problem)

    def _warn_dropped(self) -> None:
        for problem in self.dropped:
            name = problem.partition(":")[0]
            if name not in self.warned:
                self.warned.add(name)
                log.warning("left out an unreadable field of %s: %s", self.url, problem)
        self.dropped.clear()

    # ------------------------------------------------------------------------------------ observing

    def take(self, status: RunStatus, delivery_id: str | None = None) -> Verdict:
        """Apply one observation; the machine's verdict (APPLIED or PROGRESSED are news)."""
        verdict = self.machine.observe(status, delivery_id)
        if verdict is Verdict.ILLEGAL and self.policy.on_illegal == "raise":
            raise IllegalTransition(str(self.machine.anomalies[-1]), self.last)
        if verdict in (Verdict.APPLIED, Verdict.PROGRESSED, Verdict.UNCHANGED):
            self._track_heartbeat()
        # Only a change of state, or of what decides the outcome, resets the pacing.
        self.quiet = 0 if verdict is Verdict.APPLIED else self.quiet + 1
        return verdict

    def _track_heartbeat(self) -> None:
        last = self.last
        # Only a RUNNING run is judged by its beat (`check_heartbeat`). Kept in CANCELLING, its expiry cut
        # every pause to nothing once it passed: the wait polled without pause until the cancel ended.
        if last is None or last.status is not State.RUNNING:
            self.heartbeat = None
            return
        beat = last.heartbeat_at or last.updated_at
        if beat is None:  # a run that reports no liveness cannot be judged lost: "could not tell" is not lost
            self.heartbeat = None
            return
        if self.heartbeat is None or self.heartbeat[0] != beat:
            self.heartbeat = (beat, self.clock.monotonic())

    def check_heartbeat(self) -> None:
        # Staleness is measured on our clock from when we first saw the beat, so clock skew between us and
        # the remote cannot make a live run look lost. A beat is kept only while the run says RUNNING.
        limit, beat, last = self.policy.heartbeat_timeout, self.heartbeat, self.last
        if limit is None or beat is None or last is None:
            return
        silent = self.clock.monotonic() - beat[1]
        if silent >= limit:  # `>=`: the pause before this read ended exactly at the limit
            raise RunLost(
                f"run {last.id} says RUNNING but its heartbeat has not moved for {silent:.0f}s "
                f"(limit {limit:g}s); its process is likely gone",
                last,
            )

    # -------------------------------------------------------------------------------------- pacing

    def ask_again_at_once(self, held: bool, verdict: Verdict | None) -> bool:
        """Long polling: after a real hold or news, the next request goes out at once (and is held); a
        server that answers at once with nothing new does not hold requests, so it is paced as any other."""
        return self.long_polling and self.problem is None and (held or verdict in NEWS)

    def next_delay(self, hint: float | None, push: bool, draw: float | None = None) -> float:
        """Seconds until the next read: the policy's backoff (slow when pushes come), the server's hint if
        longer, cut short by the limits and the heartbeat's expiry. `draw` is the jitter's (see
        `Policy.delay`)."""
        delay = self.policy.max_interval if push and self.quiet else self.policy.delay(self.quiet, draw)
        if hint is not None:
            delay = max(delay, hint)
        return self.bound(delay)
