"""Outgoing webhook deliveries: signed (Standard Webhooks), ordered per subscription and run.

One aiohttp session serves every delivery for the server's life. Deliveries to one subscriber about one run
go out one at a time, in order, so "out of order" and "twice" are exactly what a run asked for. A failed
delivery is logged and dropped: this server does not retry.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from runwatch import webhooks
from runwatch.server._runs import Snapshot

if TYPE_CHECKING:
    import aiohttp

__all__ = ["Delivery", "Dispatcher", "Subscription"]

log = logging.getLogger("runwatch.server")


@dataclass(frozen=True, slots=True)
class Subscription:
    id: str
    url: str
    secret: str = field(repr=False)
    runs: frozenset[str] | None

    def matches(self, run_id: str) -> bool:
        return self.runs is None or run_id in self.runs

    def to_dict(self) -> dict[str, object]:
        return {"id": self.id, "url": self.url, "runs": None if self.runs is None else sorted(self.runs)}


def new_subscription_id() -> str:
    return "wh-" + secrets.token_hex(6)


@dataclass(frozen=True, slots=True)
class Delivery:
    url: str
    secret: str = field(repr=False)
    msg_id: str
    body: bytes


class Dispatcher:
    def __init__(self, timeout: float = 5.0) -> None:
        self.timeout = timeout
        self.sent = 0
        self.failed = 0
        self._session: aiohttp.ClientSession | None = None
        self._queues: dict[tuple[str, str], deque[Delivery]] = {}
        self._held: dict[tuple[str, str], Delivery] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(
        self,
        sub: Subscription,
        run_id: str,
        changes: list[Snapshot],
        *,
        final: bool,
        duplicate: bool,
        out_of_order: bool,
    ) -> None:
        """Queue one delivery per change (`final`: the run has no further change scheduled)."""
        key = (sub.id, run_id)
        out: list[Delivery] = []
        for i, snap in enumerate(changes):
            delivery = Delivery(sub.url, sub.secret, f"{run_id}.{snap.version}", snap.body)
            if not out_of_order:
                out.append(delivery)
                continue
            held = self._held.pop(key, None)
            if held is not None:
                out += [delivery, held]  # n+1 goes before n
            elif final and i == len(changes) - 1:
                out.append(delivery)  # nothing follows to swap with
            else:
                self._held[key] = delivery
        if not out:
            return
        queue = self._queues.get(key)
        start = queue is None
        if queue is None:
            queue = self._queues[key] = deque()
        for delivery in out:
            queue.append(delivery)
            if duplicate:
                queue.append(delivery)
        if start:
            task = asyncio.get_running_loop().create_task(self._drain(key, queue))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def forget(self) -> None:
        """Drop everything pending (reset)."""
        self._held.clear()
        for queue in self._queues.values():
            queue.clear()

    async def _drain(self, key: tuple[str, str], queue: deque[Delivery]) -> None:
        try:
            while queue:
                await self._send(queue.popleft())
        finally:
            if self._queues.get(key) is queue:
                del self._queues[key]

    async def _send(self, delivery: Delivery) -> None:
        import aiohttp

        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                headers={"user-agent": "runwatch-reference-server"},
            )
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "webhook-id": delivery.msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": webhooks.sign(delivery.secret, delivery.msg_id, timestamp, delivery.body),
        }
        try:
            async with self._session.post(delivery.url, data=delivery.body, headers=headers) as response:
                await response.read()
                if 200 <= response.status < 300:
                    self.sent += 1
                    return
                problem = f"HTTP {response.status}"
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            problem = f"{type(exc).__name__}: {exc}"
        self.failed += 1
        log.warning("webhook delivery %s to %s failed (%s); dropped", delivery.msg_id, delivery.url, problem)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None
