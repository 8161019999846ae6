"""The demo's webhook receiver: a `WebhookInbox` on a small ASGI app, served by uvicorn in this event loop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, MutableMapping
from typing import Any

from runwatch._errors import RunwatchError
from runwatch._inbox import WebhookInbox

__all__ = ["HookReceiver"]

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class HookReceiver:
    """Counts the deliveries per run, then hands each to the inbox (which verifies it and ends waits)."""

    def __init__(self, inbox: WebhookInbox) -> None:
        self.inbox = inbox
        self.received: Counter[str] = Counter()

    async def app(self, scope: Message, receive: Receive, send: Send) -> None:
        """ASGI: the inbox's own app, which reads (and caps) the body; what it read is counted afterwards."""
        chunks: list[bytes] = []

        async def recording() -> Message:
            message = await receive()
            chunks.append(message.get("body", b""))
            return message

        await self.inbox.asgi(scope, recording, send)
        with contextlib.suppress(ValueError, AttributeError):
            self.received[str(json.loads(b"".join(chunks)).get("id"))] += 1

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[str]:
        """Serve on 127.0.0.1 (a free port) while the block runs; yields the URL to subscribe."""
        import uvicorn

        class Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:  # Ctrl-C belongs to the demo
                yield

        # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only then, or each keep-alive reply waits ~40 ms.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.bind(("127.0.0.1", 0))
        config = uvicorn.Config(
            self.app, interface="asgi3", lifespan="off", log_config=None, log_level="error", access_log=False
        )
        server = Server(config)
        task = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            while not server.started:
                if task.done():
                    raise RunwatchError(f"the demo's webhook receiver did not start: {task.exception()!r}")
                await asyncio.sleep(0.01)
            yield f"http://127.0.0.1:{sock.getsockname()[1]}/hooks"
        finally:
            server.should_exit = True
            await asyncio.gather(task, return_exceptions=True)
            sock.close()
