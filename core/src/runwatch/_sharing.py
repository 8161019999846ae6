"""Shared reads: waits in one event loop that read the same thing share the requests.

A wait reads through a feed. `Feed` sends its own requests (long polls, `RunApi(reads="own")`). The
others join a group per event loop keyed by what they read and with which credentials (a digest, never the
credential): waits on one status URL share one read (`_UrlGroup`); with `RunApi(reads="batched")`, waits on
runs of one API share batch reads of the profile's `[list_runs]` (`_ListGroup`). Every member gets every
reading and judges it with its own `Watch` (policy, deadline, heartbeat, outcome). Reads happen only when a
member asks (its pause is over) or while one is on the way, so the pace is the most demanding member's and
nothing is read once the last one has left. Members share one jitter draw per reading (`Policy.delay`), so
equal policies ask at the same moment.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import random
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from runwatch._api import RunApi
from runwatch._auth import TokenAuth
from runwatch._clock import Clock, SystemClock
from runwatch._errors import BadStatusPayload, ConfigurationError, RunLost, RunwatchError
from runwatch._http import Origin
from runwatch._status import RunStatus
from runwatch._transport import Response, TransientError
from runwatch._urls import redact
from runwatch._watch import Ask, Reading, Watch

__all__ = ["Feed", "feed_for"]

Announce = Callable[[str, str], None]  # (method, url), just before a request goes out for this wait

BATCH_GATHER = 0.05
"""Seconds a batch read waits for other members that fall due at about the same moment."""

_UNTRACED = ("traceparent", "tracestate")  # per-wait headers that do not make a read another read


def credential_id(api: RunApi, headers: dict[str, str]) -> str:
    """Equal for waits that send the same credentials; a digest, so the key never holds a secret."""
    digest = hashlib.sha256()
    for name, value in sorted(headers.items()):
        if name.lower() not in _UNTRACED:
            digest.update(f"{name.lower()}\0{value}\0".encode())
    token = api.auth if isinstance(api.auth, TokenAuth) else None  # one per credential (`TokenAuth.shared`)
    return f"{digest.hexdigest()}/{id(token) if token is not None else ''}"


class Feed:
    """How one wait gets its readings. This base sends the wait's own requests."""

    def __init__(self, api: RunApi, watch: Watch, origin: Origin, announce: Announce) -> None:
        self.api, self.watch, self.origin, self.announce = api, watch, origin, announce

    @property
    def draw(self) -> float | None:
        """The jitter draw the wait paces by (None: its own)."""
        return None

    def pending(self) -> Reading | None:
        """A reading another wait's read brought since this wait last looked, if any."""
        return None

    async def read(self, ask: Ask) -> Reading:
        """A reading now: this wait's own request."""
        self.announce("GET", ask.url)
        watch, clock = self.watch, self.api.clock
        sent = clock.monotonic()
        try:
            response = await self.api.send(
                self.origin, "GET", ask.url, headers=ask.headers, timeout=ask.timeout, deadline=watch.limit()
            )
        except TransientError as exc:
            return Reading(error=exc)
        return Reading(response, clock.monotonic() - sent)

    async def sleep(self, seconds: float) -> None:
        """Pause the wait; a shared feed ends the pause early when a reading comes."""
        await self.api.clock.sleep(seconds)


class _Member(Feed):
    """A wait in a group: readings come to it from every read the group makes."""

    def __init__(self, group: _Group, api: RunApi, watch: Watch, origin: Origin, announce: Announce) -> None:
        super().__init__(api, watch, origin, announce)
        self.group = group
        self.inbox: list[Reading] = []
        self.waker: asyncio.Future[None] | None = None
        self.read_at = -1e18  # monotonic time of the last reading this wait took
        self.floor = watch.policy.interval / 2  # never read for it sooner than its own jitter allows

    @property
    def draw(self) -> float:
        return self.group.draw

    async def read(self, ask: Ask) -> Reading:
        return await self.group.read(self, ask)

    def pending(self) -> Reading | None:
        if not self.inbox:
            return None
        self.read_at = self.api.clock.monotonic()
        return self.inbox.pop(0)

    def give(self, reading: Reading) -> None:
        self.inbox.append(reading)
        waker = self.waker
        if waker is not None and not waker.done():
            waker.set_result(None)

    async def sleep(self, seconds: float) -> None:
        if self.inbox:
            return
        loop = asyncio.get_running_loop()
        self.waker = waker = loop.create_future()
        clock = self.api.clock
        self.group.sleepers.add(self)
        try:
            if isinstance(clock, SystemClock):  # one timer, no task: thousands of waits sleep at once
                handle = loop.call_later(seconds, _wake, waker)
                try:
                    await waker
                finally:
                    handle.cancel()
            else:
                sleeper = loop.create_task(clock.sleep(seconds))
                try:
                    await asyncio.wait((sleeper, waker), return_when=asyncio.FIRST_COMPLETED)
                finally:
                    sleeper.cancel()
        finally:
            self.waker = None
            self.group.sleepers.discard(self)

    async def until(self, task: asyncio.Future[Any]) -> bool:
        """Wait for a group's read, never past this wait's limit; whether it finished."""
        limit = self.watch.limit()
        timeout = None if limit is None else max(0.0, limit - self.api.clock.time())
        done, _ = await asyncio.wait((task,), timeout=timeout)
        return bool(done)


def _wake(waker: asyncio.Future[None]) -> None:
    if not waker.done():
        waker.set_result(None)


def _arrive(arrival: asyncio.Future[Reading], reading: Reading) -> None:
    if not arrival.done():
        arrival.set_result(reading)


_AS_LAST_SEEN = Reading()  # a batch showed the run as the wait last saw it (one object: cheap to tell)


def _late(before: _Answer | None = None) -> Reading:
    """A wait's limit came while a shared read was still out. If the read before it failed, its reason is
    kept: it is the better clue to why the status could not be read."""
    message = "the shared read did not answer before this wait's limit"
    if before is not None and before[0].error is not None:
        message += f" (the read before: {before[0].error})"
    return Reading(error=TransientError(message))


class _Group:
    """Members in one loop that read the same thing."""

    def __init__(self, key: tuple[Any, ...], groups: dict[tuple[Any, ...], _Group], clock: Clock) -> None:
        self.key, self.groups, self.clock = key, groups, clock
        self.members: set[_Member] = set()
        self.sleepers: set[_Member] = set()  # members paused in their waits, that a reading wakes
        self.draw = random.random()
        self.tasks: set[asyncio.Task[Any]] = set()

    async def read(self, member: _Member, ask: Ask) -> Reading:
        """A reading for `member`, which asks for one now."""
        raise NotImplementedError

    def join(self, member: _Member) -> None:
        self.members.add(member)

    def leave(self, member: _Member) -> None:
        self.members.discard(member)
        self.sleepers.discard(member)
        if not self.members:  # the last one left: nothing more is read for it
            if self.groups.get(self.key) is self:
                del self.groups[self.key]
            for task in self.tasks:
                task.cancel()

    def deadline(self) -> float | None:
        """The latest limit among the members (None: one has none): no shared read outlives them all."""
        latest = -math.inf
        for member in self.members:
            limit = member.watch.limit()
            if limit is None:
                return None
            latest = max(latest, limit)
        return latest

    def redraw(self) -> None:
        self.draw = random.random()

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task


_Answer = tuple[Reading, "str | None"]  # a reading, and the ETag its request sent in If-None-Match


class _UrlGroup(_Group):
    """Members that read one status URL with one credential: one request per read.

    A read asks with its sender's ETag, as that wait alone would; a 304 to it is passed on as it is to the
    members that hold that version, and as the last 200 of that version to the others (or, if none was
    kept, as a reading that brings nothing).
    """

    def __init__(self, key: tuple[Any, ...], groups: dict[tuple[Any, ...], _Group], clock: Clock) -> None:
        super().__init__(key, groups, clock)
        self.inflight: asyncio.Task[_Answer] | None = None
        self.waiting: set[_Member] = set()
        self.last: _Answer | None = None
        self.last_at = -1e18
        self.full: Response | None = None  # the last 200 with an ETag

    async def read(self, member: _Member, ask: Ask) -> Reading:
        clock = self.clock
        now = clock.monotonic()
        fresh = self.last is not None and now - self.last_at < member.floor
        if self.inflight is None and fresh and member.read_at < self.last_at:
            # A joiner: a reading this fresh is as good as its own.
            assert self.last is not None
            member.read_at = now
            return self._for(member, self.last)
        if self.inflight is None:
            member.announce("GET", ask.url)
            self.inflight = self.spawn(self._fetch(member, ask))
            self.inflight.add_done_callback(self._done)
        task = self.inflight
        self.waiting.add(member)
        try:
            finished = await member.until(task)
        finally:
            self.waiting.discard(member)
        member.read_at = clock.monotonic()
        return self._for(member, task.result()) if finished else _late(self.last)

    async def _fetch(self, member: _Member, ask: Ask) -> _Answer:
        api, clock = member.api, self.clock
        asked = ask.headers.get("If-None-Match")
        sent = clock.monotonic()
        try:
            response = await api.send(
                member.origin,
                "GET",
                ask.url,
                headers=ask.headers,
                timeout=ask.timeout,
                deadline=self.deadline(),
            )
        except RunwatchError as exc:  # a 401 refresh that fails, a certificate: every member's to judge
            return Reading(error=exc), asked
        if response.status == 200 and "etag" in response.headers:
            self.full = response
        return Reading(response, clock.monotonic() - sent), asked

    def _done(self, task: asyncio.Task[_Answer]) -> None:
        self.inflight = None
        if task.cancelled():
            return
        self.last, self.last_at = task.result(), self.clock.monotonic()
        self.redraw()
        for member in self.members:
            if member not in self.waiting:
                member.give(self._for(member, self.last))

    def _for(self, member: _Member, answer: _Answer) -> Reading:
        reading, asked = answer
        response = reading.response
        if response is None or response.status != 304 or member.watch.etag == asked:
            return reading
        full = self.full
        if full is not None and full.headers.get("etag") == asked:
            return Reading(full, reading.took)
        return Reading(took=reading.took)  # "unchanged" from a version this member never saw: nothing


class _ListGroup(_Group):
    """Members on runs of one API, read by the profile's `[list_runs]` in batches of its page limit.

    A member that asks for a read is parked here until a batch brings its run. A batch that shows the run
    as the member last saw it is taken on the member's behalf (`_absorb`: its quiet count, heartbeat and next
    due time, all by its own `Watch`), without waking its wait: at thousands of waits, waking each one per
    tick would cost more than the requests saved. Anything else (news, a failure, a limit or heartbeat due)
    wakes the wait with the reading. A run missing from the answer (it left an active-only list, or it is not
    listed) gets one read of its own status URL for every member on it.
    """

    def __init__(self, key: tuple[Any, ...], groups: dict[tuple[Any, ...], _Group], clock: Clock) -> None:
        super().__init__(key, groups, clock)
        self.due: dict[_Member, float] = {}  # parked members -> monotonic time their next read is due
        self.arrivals: dict[_Member, asyncio.Future[Reading]] = {}
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = math.inf
        self.seen: dict[str, tuple[Any, RunStatus]] = {}  # run id -> (its last listed item, parsed)
        self.watched: dict[str, int] = {}  # run id -> members on it

    def join(self, member: _Member) -> None:
        super().join(member)
        run_id = member.watch.run_id
        assert run_id is not None
        self.watched[run_id] = self.watched.get(run_id, 0) + 1

    def leave(self, member: _Member) -> None:
        super().leave(member)
        self.due.pop(member, None)
        run_id = member.watch.run_id
        assert run_id is not None
        self.watched[run_id] -= 1
        if not self.watched[run_id]:
            del self.watched[run_id]
            self.seen.pop(run_id, None)
        if not self.members and self.timer is not None:
            self.timer.cancel()
            self.timer = None

    async def read(self, member: _Member, ask: Ask) -> Reading:
        loop = asyncio.get_running_loop()
        arrival: asyncio.Future[Reading] = loop.create_future()
        self.arrivals[member] = arrival
        now = self.clock.monotonic()
        self.due[member] = now
        self._schedule(now + BATCH_GATHER)
        limit = member.watch.limit()
        timer = None
        if limit is not None:  # one timer for the whole park: no batch keeps a wait past its limit
            timer = loop.call_later(max(0.0, limit - self.clock.time()), _arrive, arrival, _late())
        try:
            return await arrival
        finally:
            if timer is not None:
                timer.cancel()
            self.due.pop(member, None)
            if self.arrivals.get(member) is arrival:
                del self.arrivals[member]

    def _schedule(self, at: float) -> None:
        if at >= self.timer_at:
            return
        if self.timer is not None:
            self.timer.cancel()
        self.timer_at = at
        self.timer = asyncio.get_running_loop().call_later(
            max(0.0, at - self.clock.monotonic()), lambda: self.spawn(self._batch())
        )

    async def _batch(self) -> None:
        self.timer, self.timer_at = None, math.inf
        now = self.clock.monotonic()
        # Members due now, and those due within the last quarter of their own pause, so that members that
        # joined at other times fall into step (at worst a wait reads at 4/3 of its pace, and only once).
        parked = [m for m, at in self.due.items() if at - now <= max(BATCH_GATHER, (at - m.read_at) / 4)]
        for member in parked:
            del self.due[member]
        if parked:
            by_run: dict[str, list[_Member]] = {}
            for member in parked:
                run_id = member.watch.run_id
                assert run_id is not None
                by_run.setdefault(run_id, []).append(member)
            # Members paused in their waits (after news) on a run read anyway get the reading too, so waits
            # on one run see every reading; they are not read for otherwise (they come back when due).
            for member in self.sleepers:
                if member.watch.run_id in by_run:
                    by_run[member.watch.run_id].append(member)
            first = parked[0]
            spec = first.api.profile.list_runs
            assert spec is not None
            ids = list(by_run)
            size = spec.page_limit or len(ids)
            pages = [ids[i : i + size] for i in range(0, len(ids), size)] if spec.by_ids else [ids]
            # Each page is handed out as it comes, so no one pass over every member stalls the loop.
            await asyncio.gather(*(self._serve(first, page, by_run) for page in pages))
            self.redraw()
        if self.due:
            self._schedule(min(self.due.values()))

    async def _serve(self, first: _Member, page: list[str], by_run: dict[str, list[_Member]]) -> None:
        """Read one page of runs and hand each member on them its reading; a run not listed, its own read."""
        answer = await self._page(first, page)
        now = self.clock.monotonic()
        missing: list[str] = []
        for run_id in page:
            if isinstance(answer, Reading):  # the whole page failed
                for member in by_run[run_id]:
                    self._hand(member, answer, now)
            elif run_id in answer:
                item = answer[run_id]
                for member in by_run[run_id]:
                    self._hand(member, self._listed(member, run_id, item), now)
            else:
                missing.append(run_id)
        singles = await asyncio.gather(*(self._single(by_run[run_id][0]) for run_id in missing))
        now = self.clock.monotonic()
        for run_id, reading in zip(missing, singles, strict=True):
            for member in by_run[run_id]:
                self._hand(member, reading, now)

    def _hand(self, member: _Member, reading: Reading, now: float) -> None:
        if member not in self.members:
            return
        member.read_at = now
        arrival = self.arrivals.get(member)
        if arrival is None:
            member.give(reading)  # a rider, asleep in its wait
        elif not self._absorb(member, reading, now):
            _arrive(arrival, reading)

    def _absorb(self, member: _Member, reading: Reading, now: float) -> bool:
        """Take a reading that shows the run as last seen on the parked member's behalf; False when its wait
        must see it (anything else, a heartbeat or a limit due before its next read)."""
        if reading is not _AS_LAST_SEEN:
            return False
        watch = member.watch
        try:
            watch.check_heartbeat()
        except RunLost:
            return False
        watch.readable()
        watch.nothing_new()
        delay = watch.next_delay(None, False, self.draw)
        limit = watch.limit()
        if limit is not None and self.clock.time() + delay >= limit:
            return False  # the wait meets its limit itself
        self.due[member] = now + delay
        return True

    async def _page(self, first: _Member, run_ids: list[str]) -> dict[str, Any] | Reading:
        """One batch request: each listed run's item by id, or the reading that says why not."""
        api = first.api
        spec = api.profile.list_runs
        assert spec is not None
        method, url, body = api.batch_request(run_ids)
        # Errors name the batch read, not its URL: a hundred ids in each of a hundred waits' log lines.
        shown, what = (
            redact(url),
            f"the batch read {method} {redact(url.split('?')[0])} of {len(run_ids)} runs",
        )
        first.announce(method, url)
        try:
            response = await api.send(
                first.origin,
                method,
                url,
                headers=api.headers_for(url),
                json=body,
                timeout=first.watch.policy.request_timeout,
                deadline=self.deadline(),
            )
        except TransientError as exc:
            return Reading(error=TransientError(str(exc).replace(shown, what), exc.retry_after))
        except RunwatchError as exc:
            return Reading(error=exc)
        status = response.status
        if not 200 <= status < 300:  # a refused list says nothing of any run: the profile or the API is wrong
            return Reading(
                error=ConfigurationError(
                    f"{what} was answered HTTP {status}: give this API reads='shared' (each run read on its "
                    "own), or a profile whose [list_runs] this API serves"
                )
            )
        try:
            return api.profile.listed_items(json.loads(response.body))
        except ValueError:
            return Reading(error=BadStatusPayload(f"{what}: the body is not JSON"))
        except RunwatchError as exc:
            return Reading(error=exc)

    def _listed(self, member: _Member, run_id: str, item: Any) -> Reading:
        """The member's reading of one listed item: parsed once per change of the item, for every member."""
        seen = self.seen.get(run_id)
        if seen is not None and seen[0] == item:
            status = seen[1]
        else:
            try:
                status = member.api.profile.parse(item, run_id=run_id, url=member.watch.url)
            except RunwatchError as exc:
                return Reading(error=exc)
            self.seen[run_id] = (item, status)
        return _AS_LAST_SEEN if member.watch.machine.current is status else Reading(listed=status)

    async def _single(self, member: _Member) -> Reading:
        """A run the list does not show: one read of its own status URL."""
        watch = member.watch
        member.announce("GET", watch.url)
        clock = member.api.clock
        sent = clock.monotonic()
        try:
            response = await member.api.send(
                member.origin,
                "GET",
                watch.url,
                headers=watch.headers,
                timeout=watch.policy.request_timeout,
                deadline=self.deadline(),
            )
        except RunwatchError as exc:
            return Reading(error=exc)
        return Reading(response, clock.monotonic() - sent)


_groups: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[Any, ...], _Group]] = (
    weakref.WeakKeyDictionary()
)


def _batchable(api: RunApi, watch: Watch) -> bool:
    spec = api.profile.list_runs
    return (
        api.reads == "batched"
        and spec is not None
        and (spec.by_ids or spec.active_only)
        and watch.run_id is not None
        and watch.url == api.status_url(watch.run_id)
    )


@asynccontextmanager
async def feed_for(api: RunApi, watch: Watch, origin: Origin, announce: Announce) -> AsyncIterator[Feed]:
    """The feed of one wait for as long as it lasts: its own, or a member of its loop's group."""
    if api.reads == "own" or watch.long_polling:  # a held request is already one read per change
        yield Feed(api, watch, origin, announce)
        return
    groups = _groups.setdefault(asyncio.get_running_loop(), {})
    # Waits share a read only where it goes out the same way: transport, TLS, body cap and request budget.
    common = (api.transport, api.clock, origin.origin, api.verify, api.max_body, api.budget)
    group: _Group
    if _batchable(api, watch):
        key = ("list", *common, api.list_key(), credential_id(api, watch.headers))
        group = groups.get(key) or _ListGroup(key, groups, api.clock)
    else:
        key = ("url", *common, watch.url, credential_id(api, watch.headers))
        group = groups.get(key) or _UrlGroup(key, groups, api.clock)
    groups[key] = group
    member = _Member(group, api, watch, origin, announce)
    group.join(member)
    try:
        yield member
    finally:
        group.leave(member)
