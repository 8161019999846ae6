"""Run APIs that behave as real ones do where the reference server does not: served on 127.0.0.1 by uvicorn.

Each route is one behaviour seen in the wild: long polls without ETags, GitHub's 403 rate limits, hints
without bounds, bodies without end, redirects, Basic auth from URL userinfo.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

__all__ = ["OddApi", "serve"]


class OddApi:
    """The app, and what it saw: requests per path, and the Authorization header of each."""

    def __init__(self) -> None:
        self.born = time.monotonic()
        self.hits: Counter[str] = Counter()
        self.auth: list[tuple[str, str | None]] = []
        self.app = Starlette(
            routes=[
                Route("/noetag/{run}", self.no_etag),
                Route("/limited/{form}/{run}", self.limited),
                Route("/hint/{value:path}", self.hint),
                Route("/huge", self.huge),
                Route("/moved/{run}", self.moved),
                Route("/runs/{run}", self.plain),
                Route("/away/{run}", self.away),
                Route("/basic/{run}", self.basic),
            ]
        )
        self.elsewhere = ""  # a URL on another origin, for /away
        self.ends: float | None = None  # when the /noetag run ends, in app age

    def _seen(self, request: Request) -> None:
        self.hits[request.url.path] += 1
        self.auth.append((request.url.path, request.headers.get("authorization")))

    def age(self) -> float:
        return time.monotonic() - self.born

    async def no_etag(self, request: Request) -> Response:
        """RUNNING for 1.5 s after the first request, then SUCCEEDED (at `self.ends`, app age); `?wait=S` holds
        until a change. No ETag."""
        self._seen(request)
        if self.ends is None:
            self.ends = self.age() + 1.5
        wait = float(request.query_params.get("wait", 0))
        until = self.age() + wait
        while wait and self.age() < min(until, self.ends):  # a sleep may wake a hair early: hold until then
            await asyncio.sleep(min(until, self.ends) - self.age() + 0.001)
        status = "SUCCEEDED" if self.age() >= self.ends else "RUNNING"
        return JSONResponse({"id": request.path_params["run"], "status": status})

    async def limited(self, request: Request) -> Response:
        """GitHub's rate limits, twice, then a run that succeeded: `primary` (403, no requests remain, reset at
        a UNIX time), `secondary` (403 with Retry-After), `plain` (a 403 that is a refusal)."""
        self._seen(request)
        form = request.path_params["form"]
        if form == "plain":
            return JSONResponse({"message": "Must have admin rights"}, 403)
        if self.hits[request.url.path] <= 2:
            headers = (
                {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(time.time()) + 1)}
                if form == "primary"
                else {"retry-after": "1"}
            )
            return JSONResponse({"message": "API rate limit exceeded"}, 403, headers)
        return JSONResponse({"id": request.path_params["run"], "status": "SUCCEEDED"})

    async def hint(self, request: Request) -> Response:
        """A 429 for ever, with `Retry-After: <value>` (any text: `Infinity`, a date in 9999, `30`)."""
        self._seen(request)
        return JSONResponse({"message": "slow down"}, 429, {"retry-after": request.path_params["value"]})

    async def huge(self, request: Request) -> Response:
        """A status body of 150 MB, streamed without a Content-Length."""
        self._seen(request)

        async def chunks() -> AsyncIterator[bytes]:
            yield b'{"id": "big", "status": "RUNNING", "padding": "'
            for _ in range(150):
                yield b"x" * (1 << 20)
            yield b'"}'

        return StreamingResponse(chunks(), media_type="application/json")

    async def moved(self, request: Request) -> Response:
        """A renamed resource: 301 to its new place on the same origin (GitHub's answer for a renamed repo)."""
        self._seen(request)
        return RedirectResponse(f"/runs/{request.path_params['run']}", 301)

    async def plain(self, request: Request) -> Response:
        self._seen(request)
        return JSONResponse({"id": request.path_params["run"], "status": "SUCCEEDED"})

    async def away(self, request: Request) -> Response:
        """A redirect to another origin."""
        self._seen(request)
        return RedirectResponse(f"{self.elsewhere}/runs/{request.path_params['run']}", 302)

    async def basic(self, request: Request) -> Response:
        """Needs Basic auth as `user:pw-9c1f`."""
        self._seen(request)
        expected = "Basic " + base64.b64encode(b"user:pw-9c1f").decode()
        if request.headers.get("authorization") != expected:
            return JSONResponse({"message": "who are you"}, 401)
        return JSONResponse(
            {"id": request.path_params["run"], "status": "SUCCEEDED", "url": str(request.url)}
        )


@contextlib.contextmanager
def serve(app: Any, **ssl: Any) -> Iterator[str]:
    """Serve `app` on 127.0.0.1 (a free port) in a thread of its own; yields its base URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off", **ssl)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test API did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"{'https' if ssl else 'http'}://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
