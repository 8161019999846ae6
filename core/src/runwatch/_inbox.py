"""An in-process inbox for signed webhook deliveries: a push ends a wait at once."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import Any

from runwatch import webhooks
from runwatch._errors import BadStatusPayload, ProfileError
from runwatch._profile import Profile, load_profile
from runwatch._status import RunStatus

__all__ = ["Mailbox", "WebhookInbox"]

log = logging.getLogger("runwatch")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class Mailbox:
    """The deliveries for one run that its waiter has not taken yet."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self._items: list[tuple[RunStatus, str]] = []
        self._ready = asyncio.Event()

    def put(self, status: RunStatus, delivery_id: str) -> None:
        self._items.append((status, delivery_id))
        self._ready.set()

    async def wait(self, timeout: float) -> list[tuple[RunStatus, str]]:
        """The deliveries that arrive within `timeout` seconds (all at once), or [] if none do."""
        if not self._items:
            try:
                await asyncio.wait_for(self._ready.wait(), timeout)
            except asyncio.TimeoutError:
                return []
        items, self._items = self._items, []
        self._ready.clear()
        return items


class WebhookInbox:
    """Verifies Standard Webhooks deliveries and hands each to the waits on its run.

    Ordering and duplicates are the state machine's business: the inbox passes the delivery id along.
    Mount `inbox.asgi` in any ASGI server, or call `deliver()` from your own endpoint.
    """

    def __init__(
        self,
        secrets: str | Sequence[str],
        profile: Profile | Mapping[str, Any] | str | Path = "standard",
        *,
        tolerance: float = 300.0,
    ) -> None:
        self._secrets = [secrets] if isinstance(secrets, str) else list(secrets)
        self.profile = load_profile(profile)
        self.tolerance = tolerance
        self._boxes: dict[str, list[Mailbox]] = {}

    def __repr__(self) -> str:
        return f"WebhookInbox(profile={self.profile.name!r}, secrets=***)"

    def subscribe(self, run_id: str) -> Mailbox:
        box = Mailbox(run_id)
        self._boxes.setdefault(run_id, []).append(box)
        return box

    def unsubscribe(self, box: Mailbox) -> None:
        boxes = self._boxes.get(box.run_id, [])
        if box in boxes:
            boxes.remove(box)
        if not boxes:
            self._boxes.pop(box.run_id, None)

    def deliver(self, headers: Mapping[str, str], body: bytes) -> int:
        """Take one delivery; returns the HTTP status to answer with."""
        try:
            delivery_id = webhooks.verify(self._secrets, headers, body, tolerance=self.tolerance)
        except webhooks.WebhookVerificationError as exc:
            log.warning("rejected a webhook delivery: %s", exc)
            return 401
        try:
            status = self.profile.parse(json.loads(body))
        except (ValueError, BadStatusPayload, ProfileError) as exc:
            log.warning("webhook delivery %s is not a status: %s", delivery_id, exc)
            return 400
        for box in self._boxes.get(status.id, ()):
            box.put(status, delivery_id)
        return 204

    async def asgi(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A minimal ASGI app: POST a delivery to any path."""
        if scope["type"] != "http":
            return
        if scope["method"] != "POST":
            await _answer(send, 405)
            return
        chunks = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        await _answer(send, self.deliver(headers, b"".join(chunks)))


async def _answer(send: Send, status: int) -> None:
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": b""})
