"""An in-process inbox for signed webhook deliveries: a push ends a wait at once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import Any

from runwatch import webhooks
from runwatch._profile import Profile, load_profile
from runwatch._status import RunStatus

__all__ = ["InboxApp", "Mailbox", "WebhookInbox"]

log = logging.getLogger("runwatch")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

MAX_BODY = 1024 * 1024
"""The default cap on a delivery's body, in bytes (a status is a few KiB): past it, 413."""
KEEP = 1024
"""The default number of verified deliveries kept for waits that have not subscribed yet."""
KEEP_FOR = 300.0
"""The default age, in seconds, past which a kept delivery is forgotten (as the signature tolerance)."""


class Mailbox:
    """The deliveries for one run that its waiter has not taken yet; owned by the loop that subscribed."""

    def __init__(self, run_id: str, loop: asyncio.AbstractEventLoop) -> None:
        self.run_id = run_id
        self._loop = loop
        self._items: list[tuple[RunStatus, str]] = []
        self._ready = asyncio.Event()

    def put(self, status: RunStatus, delivery_id: str) -> None:
        """Hand over one delivery; safe from any thread (the waiting loop is woken through its own queue)."""
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            self._add(status, delivery_id)
            return
        with contextlib.suppress(RuntimeError):  # that loop has closed: its wait is over
            self._loop.call_soon_threadsafe(self._add, status, delivery_id)

    def _add(self, status: RunStatus, delivery_id: str) -> None:
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

    Serve `inbox.asgi` (an ASGI 3 app) with any ASGI server or mount it in Starlette/FastAPI, or call
    `inbox.deliver(headers, body)` from your own endpoint, from any thread. A push that arrives before a
    wait on its run subscribes is kept (the last `keep` verified deliveries, each for `keep_for` seconds)
    and handed to the wait when it subscribes. Ordering and duplicates are the state machine's business: the
    inbox passes the delivery id along.

    Raises `webhooks.WebhookSecretError` at once for a malformed secret, `ProfileError` for a bad profile and
    `ValueError` for a bound that is not positive.
    """

    def __init__(
        self,
        secrets: str | Sequence[str],
        profile: Profile | Mapping[str, Any] | str | Path = "standard",
        *,
        tolerance: float = 300.0,
        max_body: int = MAX_BODY,
        keep: int = KEEP,
        keep_for: float = KEEP_FOR,
    ) -> None:
        webhooks.check_secrets(secrets)
        for name, value in (("max_body", max_body), ("keep", keep), ("keep_for", keep_for)):
            if not value > 0:
                raise ValueError(f"WebhookInbox: {name} must be positive, got {value!r}")
        self._secrets = [secrets] if isinstance(secrets, str) else list(secrets)
        self.profile = load_profile(profile)
        self.tolerance = tolerance
        self.max_body = max_body
        self.keep_for = keep_for
        self.asgi = InboxApp(self)
        # deliver() may run on any thread while waits subscribe on their loops: one lock guards both tables.
        self._lock = threading.Lock()
        self._boxes: dict[str, list[Mailbox]] = {}
        self._kept: deque[tuple[float, RunStatus, str]] = deque(maxlen=keep)

    def __repr__(self) -> str:
        return f"WebhookInbox(profile={self.profile.name!r}, secrets=***)"

    def subscribe(self, run_id: str) -> Mailbox:
        """A mailbox for `run_id`, already holding the kept deliveries for it. Call from the waiting loop."""
        box = Mailbox(run_id, asyncio.get_running_loop())
        with self._lock:
            self._forget_old()
            self._boxes.setdefault(run_id, []).append(box)
            for _, status, delivery_id in self._kept:
                if status.id == run_id:
                    box.put(status, delivery_id)
        return box

    def unsubscribe(self, box: Mailbox) -> None:
        with self._lock:
            boxes = self._boxes.get(box.run_id, [])
            if box in boxes:
                boxes.remove(box)
            if not boxes:
                self._boxes.pop(box.run_id, None)

    def deliver(self, headers: Mapping[str, str], body: bytes) -> int:
        """Take one delivery, from any thread; returns the HTTP status to answer with (never raises).

        204 taken; 401 not verified (missing headers, stale timestamp, no signature matched); 413 body over
        `max_body` bytes; 400 verified but not a status the profile can read.
        """
        if len(body) > self.max_body:
            log.warning("refused a webhook delivery of %d bytes (limit %d)", len(body), self.max_body)
            return 413
        try:
            delivery_id = webhooks.verify(self._secrets, headers, body, tolerance=self.tolerance)
        except webhooks.WebhookVerificationError as exc:
            log.warning("rejected a webhook delivery: %s", exc)
            return 401
        try:
            status = self.profile.parse(json.loads(body))
        except Exception as exc:
            log.warning(
                "webhook delivery %r is not a status: %s: %s", delivery_id[:80], type(exc).__name__, exc
            )
            return 400
        with self._lock:
            self._forget_old()
            self._kept.append((time.monotonic(), status, delivery_id))
            for box in self._boxes.get(status.id, ()):
                box.put(status, delivery_id)
        return 204

    def _forget_old(self) -> None:
        oldest = time.monotonic() - self.keep_for
        while self._kept and self._kept[0][0] < oldest:
            self._kept.popleft()


class InboxApp:
    """The inbox as an ASGI 3 app (an object with an async `__call__`, so every server detects ASGI 3).

    POST a delivery to any path. The headers are checked before the body is read (401), the body is read
    up to the inbox's `max_body` (413 past it), other methods get 405. Lifespan events are acknowledged.
    """

    __slots__ = ("inbox",)

    def __init__(self, inbox: WebhookInbox) -> None:
        self.inbox = inbox

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1003})  # before accept: the server answers 403

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        inbox = self.inbox
        if scope["method"] != "POST":
            await _answer(send, 405, [(b"allow", b"POST")])
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            webhooks.verify_headers(headers, tolerance=inbox.tolerance)
        except webhooks.WebhookVerificationError as exc:
            log.warning("rejected a webhook delivery: %s", exc)
            await _answer(send, 401)
            return
        declared = headers.get("content-length", "").strip()
        if declared and not declared.isdigit():
            await _answer(send, 400)
            return
        if declared and int(declared) > inbox.max_body:
            log.warning("refused a webhook delivery of %s bytes (limit %d)", declared, inbox.max_body)
            await _answer(send, 413)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > inbox.max_body:
                log.warning("refused a webhook delivery over %d bytes", inbox.max_body)
                await _answer(send, 413)
                return
            if not message.get("more_body", False):
                break
        await _answer(send, inbox.deliver(headers, bytes(body)))


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _answer(send: Send, status: int, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers or []})
    await send({"type": "http.response.body", "body": b""})
