"""Shared reads: waits in one event loop that read the same thing share the requests.

A wait reads through a feed. `_OwnFeed` sends its own requests (long polls, `RunApi(reads="own")`). The
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
import random
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from runwatch._api import RunApi
from runwatch._auth import TokenAuth
from runwatch._clock import Clock, SystemClock
from runwatch._errors import BadStatusPayload, RunwatchError
from runwatch._http import Origin
from runwatch._status import RunStatus
from runwatch._transport import Response, TransientError
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

    draw: float | None = None  # the jitter draw the wait paces by (None: its own)

    def __init__(self, api: RunApi, watch: Watch, origin: Origin, announce: Announce) -> None:
        self.api, self.watch, self.origin, self.announce = api, watch, origin, announce

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

    def __init__(self, api: RunApi, watch: Watch, origin: Origin, announce: Announce) -> None:
        super().__init__(api, watch, origin, announce)
        self.inbox: list[Reading] = []
        self.waker: asyncio.Future[None] | None = None
        self.read_at = -1e18  # monotonic time of the last reading this wait took
        self.floor = watch.policy.interval / 2  # never read for it sooner than its own jitter allows

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

    async def until(self, task: asyncio.Future[Any]) -> bool:
        """Wait for a group's read, never past this wait's limit; whether it finished."""
        limit = self.watch.limit()
        timeout = None if limit is None else max(0.0, limit - self.api.clock.time())
        done, _ = await asyncio.wait((task,), timeout=timeout)
        return bool(done)


def _wake(waker: asyncio.Future[None]) -> None:
    if not waker.done():
        waker.set_result(None)


def _late() -> Reading:
    return Reading(error=TransientError("the shared read did not answer before this wait's limit"))


class _Group:
    """Members in one loop that read the same thing."""

    def __init__(self, key: tuple[Any, ...], groups: dict[tuple[Any, ...], _Group], clock: Clock) -> None:
        self.key, self.groups, self.clock = key, groups, clock
        self.members: set[_Member] = set()
        self.draw = random.random()
        self.tasks: set[asyncio.Task[Any]] = set()

    def join(self, member: _Member) -> None:
        self.members.add(member)
        member.draw = self.draw

    def leave(self, member: _Member) -> None:
        self.members.discard(member)
        if not self.members:  # the last one left: nothing more is read for it
            if self.groups.get(self.key) is self:
                del self.groups[self.key]
            for task in self.tasks:
                task.cancel()

    def deadline(self) -> float | None:
        """The latest limit among the members (None: one has none): no shared read outlives them all."""
        limits = [member.watch.limit() for member in self.members]
        return None if any(limit is None for limit in limits) else max(limits)  # type: ignore[type-var]

    def redraw(self) -> None:
        self.draw = random.random()
        for member in self.members:
            member.draw = self.draw

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task


class _UrlGroup(_Group):
    """Members that read one status URL with one credential: one request per read, an ETag kept for all."""

    def __init__(self, key: tuple[Any, ...], groups: dict[tuple[Any, ...], _Group], clock: Clock) -> None:
        super().__init__(key, groups, clock)
        self.inflight: asyncio.Task[Reading] | None = None
        self.waiting: set[_Member] = set()
        self.last: Reading | None = None
        self.last_at = -1e18
        self.etag: str | None = None
        self.full: Response | None = None  # the last 200, for members that have not seen it yet

    async def read(self, member: _Member, ask: Ask) -> Reading:
        clock = member.api.clock
        now = clock.monotonic()
        fresh = self.last is not None and now - self.last_at < member.floor
        if self.inflight is None and fresh and member.read_at < self.last_at:
            # A joiner: a reading this fresh is as good as its own.
            assert self.last is not None
            member.read_at = now
            return self._for(member, self.last)
        if self.inflight is None:
            member.announce("GET", ask.url)
            headers = dict(member.watch.headers)
            if self.etag is not None:
                headers["If-None-Match"] = self.etag
            self.inflight = self.spawn(self._fetch(member, ask, headers))
            self.inflight.add_done_callback(self._done)
        task = self.inflight
        self.waiting.add(member)
        try:
            finished = await member.until(task)
        finally:
            self.waiting.discard(member)
        member.read_at = clock.monotonic()
        return self._for(member, task.result()) if finished else _late()

    async def _fetch(self, member: _Member, ask: Ask, headers: dict[str, str]) -> Reading:
        api, clock = member.api, member.api.clock
        sent = clock.monotonic()
        try:
            response = await api.send(
                member.origin, "GET", ask.url, headers=headers, timeout=ask.timeout, deadline=self.deadline()
            )
        except RunwatchError as exc:  # a 401 refresh that fails, a certificate: every member's to judge
            return Reading(error=exc)
        if response.status == 200:
            self.etag, self.full = response.headers.get("etag"), response
        return Reading(response, clock.monotonic() - sent)

    def _done(self, task: asyncio.Task[Reading]) -> None:
        self.inflight = None
        if task.cancelled():
            return
        self.last, self.last_at = task.result(), self.clock.monotonic()
        self.redraw()
        for member in self.members:
            if member not in self.waiting:
                member.give(self._for(member, self.last))

    def _for(self, member: _Member, reading: Reading) -> Reading:
        """A 304 answers the group's ETag: a member that has not seen that version gets the 200 itself."""
        response = reading.response
        if response is None or response.status != 304 or self.full is None:
            return reading
        if member.watch.etag == self.full.headers.get("etag"):
            return reading
        return Reading(self.full, reading.took)


class _ListGroup(_Group):
    """Members on runs of one API, read by the profile's `[list_runs]` in batches of its page limit.

    A run missing from the answer (it left an active-only list, or it is not listed) gets one read of its
    own status URL for every member on it.
    """

    def __init__(self, key: tuple[Any, ...], groups: dict[tuple[Any, ...], _Group], clock: Clock) -> None:
        super().__init__(key, groups, clock)
        self.due: set[_Member] = set()
        self.batch: asyncio.Future[None] | None = None  # set when the next batch has been read
        self.readings: dict[_Member, Reading] = {}
        self.seen: dict[str, tuple[Any, RunStatus]] = {}  # run id -> (its last listed item, parsed)
        self.watched: dict[str, int] = {}  # run id -> members on it

    def join(self, member: _Member) -> None:
        super().join(member)
        run_id = member.watch.run_id
        assert run_id is not None
        self.watched[run_id] = self.watched.get(run_id, 0) + 1

    def leave(self, member: _Member) -> None:
        super().leave(member)
        self.due.discard(member)
        self.readings.pop(member, None)
        run_id = member.watch.run_id
        assert run_id is not None
        self.watched[run_id] -= 1
        if not self.watched[run_id]:
            del self.watched[run_id]
            self.seen.pop(run_id, None)

    async def read(self, member: _Member, ask: Ask) -> Reading:
        self.due.add(member)
        if self.batch is None:
            self.batch = batch = asyncio.get_running_loop().create_future()
            self.spawn(self._gather(batch))
        task = self.batch
        finished = await member.until(task)
        member.read_at = member.api.clock.monotonic()
        if not finished:
            self.due.discard(member)
            return _late()
        return self.readings.pop(member, None) or _late()

    async def _gather(self, batch: asyncio.Future[None]) -> None:
        await asyncio.sleep(BATCH_GATHER)
        self.batch = None
        due, self.due = self.due, set()
        due &= self.members
        if not due:
            batch.set_result(None)
            return
        first = next(iter(due))
        now = first.api.clock.monotonic()
        # Members whose own pause is far enough along are read now too, so the members fall into step.
        riders = {m for m in self.members - due if m.waker is not None and now - m.read_at >= m.floor}
        readings = await self._read(first, due | riders)
        self.redraw()
        for member, reading in readings.items():
            if member in due:
                self.readings[member] = reading
            elif member in self.members:
                member.give(reading)
        batch.set_result(None)

    async def _read(self, first: _Member, members: set[_Member]) -> dict[_Member, Reading]:
        api = first.api
        spec = api.profile.list_runs
        assert spec is not None
        by_run: dict[str, list[_Member]] = {}
        for member in members:
            run_id = member.watch.run_id
            assert run_id is not None
            by_run.setdefault(run_id, []).append(member)
        ids = sorted(by_run)
        limit = spec.page_limit or len(ids) or 1
        pages = [ids[i : i + limit] for i in range(0, len(ids), limit)] if spec.by_ids else [ids]
        answers = await asyncio.gather(*(self._page(first, page) for page in pages))
        out: dict[_Member, Reading] = {}
        missing: list[str] = []
        for page, answer in zip(pages, answers, strict=True):
            for run_id in page:
                if isinstance(answer, Reading):  # the whole page failed
                    out.update(dict.fromkeys(by_run[run_id], answer))
                elif run_id in answer:
                    for member in by_run[run_id]:
                        out[member] = self._listed(member, run_id, answer[run_id])
                else:
                    missing.append(run_id)
        singles = await asyncio.gather(*(self._single(by_run[run_id][0]) for run_id in missing))
        for run_id, reading in zip(missing, singles, strict=True):
            out.update(dict.fromkeys(by_run[run_id], reading))
        return out

    async def _page(self, first: _Member, run_ids: list[str]) -> dict[str, Any] | Reading:
        """One batch request: each listed run's item by id, or the reading that says why not."""
        api = first.api
        spec = api.profile.list_runs
        assert spec is not None
        method, url, body = api.batch_request(run_ids)
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
            api.check(response, url)
            payload = json.loads(response.body)
        except (TransientError, BadStatusPayload) as exc:
            return Reading(error=exc)
        except ValueError:
            return Reading(error=BadStatusPayload(f"{method} {url}: the body is not JSON"))
        except RunwatchError as exc:  # refused (401/403/404 on the list): every member's to judge
            return Reading(error=exc)
        try:
            return api.profile.listed_items(payload)
        except (BadStatusPayload, RunwatchError) as exc:
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
        last = member.watch.last
        return Reading(listed=None if last is status else status)

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


class _SharedFeed(_Member):
    def __init__(
        self, group: _UrlGroup, api: RunApi, watch: Watch, origin: Origin, announce: Announce
    ) -> None:
        super().__init__(api, watch, origin, announce)
        self.group = group

    async def read(self, ask: Ask) -> Reading:
        return await self.group.read(self, ask)


class _BatchFeed(_Member):
    def __init__(
        self, group: _ListGroup, api: RunApi, watch: Watch, origin: Origin, announce: Announce
    ) -> None:
        super().__init__(api, watch, origin, announce)
        self.group = group

    async def read(self, ask: Ask) -> Reading:
        return await self.group.read(self, ask)


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
    common = (api.transport, api.clock, origin.origin, api.verify)
    member: _SharedFeed | _BatchFeed
    if _batchable(api, watch):
        key = ("list", *common, api.list_key(), credential_id(api, watch.headers))
        list_group = groups.get(key)
        if not isinstance(list_group, _ListGroup):
            list_group = _ListGroup(key, groups, api.clock)
            groups[key] = list_group
        member = _BatchFeed(list_group, api, watch, origin, announce)
        group: _Group = list_group
    else:
        key = ("url", *common, watch.url, credential_id(api, watch.headers))
        url_group = groups.get(key)
        if not isinstance(url_group, _UrlGroup):
            url_group = _UrlGroup(key, groups, api.clock)
            groups[key] = url_group
        member = _SharedFeed(url_group, api, watch, origin, announce)
        group = url_group
    group.join(member)
    try:
        yield member
    finally:
        group.leave(member)
