"""Transports: how one request reaches a run API and its answer comes back.

The engine above them (pacing, server hints, redirects, rate limits) is the same for every transport. A
transport only exchanges bytes: it opens a `Channel` per origin and event loop, sends a `Request`, reads the
body up to a cap, and turns network failures into `TransientError` (a certificate that does not verify into
`ConfigurationError`).

- `AiohttpTransport`, the default: the cheapest per poll at thousands of waits (docs/transport.md).
- `HttpxTransport`: over an `httpx.AsyncClient` you already hold (proxies from the environment, mTLS,
  HTTP/2, a custom `httpx.Auth`); needs the `runwatch[httpx]` extra.
- `MockTransport`: answers from a function of yours, for unit tests, as `httpx.MockTransport` does.

aiohttp and httpx are imported when a transport first opens a channel, never by `import runwatch`: a DAG
parse, a triggerer or a flow that imports runwatch without waiting pays nothing for them (docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json as jsonlib
import ssl
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from multidict import CIMultiDict, CIMultiDictProxy

from runwatch._errors import ConfigurationError, RunwatchError
from runwatch._urls import redact

if TYPE_CHECKING:
    import aiohttp
    import httpx

__all__ = [
    "AiohttpTransport",
    "BodyTooLarge",
    "Channel",
    "HttpxTransport",
    "MockTransport",
    "Request",
    "Response",
    "TransientError",
    "Transport",
]

USER_AGENT = "runwatch/0.1"


class TransientError(RunwatchError):
    """A failure that may pass: connect error, timeout, cut connection, 408, 429, 5xx or a rate limit.

    `retry_after` is the server's hint in seconds (already capped at `MAX_HINT`), or None.
    """

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class BodyTooLarge(TransientError):
    """The answer's body is larger than the API's cap (`RunApi(max_body=...)`); it was not read whole."""


@dataclass(frozen=True, slots=True)
class Request:
    """One request as the engine sends it: the headers already hold the credentials, if any."""

    method: str
    url: str
    headers: Mapping[str, str]
    json: Any = None
    data: bytes | None = None  # a body already encoded (a form), instead of `json`


@dataclass(frozen=True, slots=True)
class Response:
    """One answer: its status code, headers (looked up in any case) and whole body."""

    status: int
    headers: Mapping[str, str] = field(default_factory=lambda: CIMultiDictProxy(CIMultiDict()))
    body: bytes = b""

    @classmethod
    def of_json(cls, data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
        """An answer with `data` as its JSON body (for `MockTransport` handlers)."""
        all_headers = CIMultiDict({"content-type": "application/json", **(headers or {})})
        return cls(status, CIMultiDictProxy(all_headers), jsonlib.dumps(data).encode())


class Channel(ABC):
    """One origin's connections in one event loop."""

    @abstractmethod
    async def send(self, request: Request, *, timeout: float, max_body: int) -> Response:
        """Send `request` (no redirect is followed) and read the answer's body, at most `max_body` bytes.

        `timeout` bounds the whole exchange, in seconds. Raises `TransientError` (`BodyTooLarge` past the
        cap) or `ConfigurationError` (a TLS certificate that does not verify).
        """

    async def aclose(self) -> None:  # noqa: B027 - most channels have something to release; not all
        """Release the connections (called when the last wait on the origin leaves the loop)."""


class Transport(ABC):
    """Opens channels. One transport object serves any number of APIs, loops and origins."""

    @abstractmethod
    def open(self, origin: str, verify: bool | str, max_connections: int) -> Channel:
        """A channel to `origin` (`scheme://host[:port]`) for the running loop."""


def _tls_error(host: str, reason: object) -> ConfigurationError:
    return ConfigurationError(
        f"the TLS certificate of {host} does not verify ({reason}): give the CA bundle that signed it "
        "(RunApi(verify='ca.pem'), runwatch watch --ca-bundle FILE)"
    )


# ------------------------------------------------------------------------------------------------ aiohttp


class AiohttpTransport(Transport):
    """aiohttp: one `ClientSession` per origin and loop, shared by every wait on it."""

    def open(self, origin: str, verify: bool | str, max_connections: int) -> Channel:
        return _AiohttpChannel(verify, max_connections)


class _AiohttpChannel(Channel):
    def __init__(self, verify: bool | str, max_connections: int) -> None:
        import aiohttp  # at first use: `import runwatch` (a DAG parse, say) never pays for a transport

        # Kept here so that a request looks up no module.
        self._certificate_error = aiohttp.ClientConnectorCertificateError
        self._transient = (aiohttp.ClientError, asyncio.TimeoutError, OSError)
        ssl_ctx: ssl.SSLContext | bool = (
            verify if isinstance(verify, bool) else ssl.create_default_context(cafile=verify)
        )
        connector = aiohttp.TCPConnector(limit=max_connections, ssl=ssl_ctx, ttl_dns_cache=300)
        self.session = aiohttp.ClientSession(
            connector=connector, headers={"User-Agent": USER_AGENT}, skip_auto_headers=("Accept-Encoding",)
        )

    async def send(self, request: Request, *, timeout: float, max_body: int) -> Response:
        try:
            async with self.session.request(
                request.method,
                request.url,
                headers=request.headers,
                json=request.json,
                data=request.data,
                timeout=_timeout(timeout),
                allow_redirects=False,
            ) as resp:
                return Response(resp.status, resp.headers, await _read_aiohttp(resp, max_body, request))
        except self._certificate_error as exc:
            raise _tls_error(exc.host, exc.certificate_error) from None
        except self._transient as exc:
            raise TransientError(f"{_what(request)}: {_describe(exc)}") from None

    async def aclose(self) -> None:
        await self.session.close()


def _what(request: Request) -> str:
    return f"{request.method} {redact(request.url)}"


async def _read_aiohttp(resp: aiohttp.ClientResponse, limit: int, request: Request) -> bytes:
    """The body, refused while streaming once it passes `limit` bytes (the connection is then dropped)."""
    try:
        if resp.content_length is not None and resp.content_length <= limit:
            return await resp.read()
        return await _capped(resp.content_length, resp.content.iter_any(), limit, request)
    except BodyTooLarge:
        resp.close()
        raise


async def _capped(length: int | None, chunks: AsyncIterator[bytes], limit: int, request: Request) -> bytes:
    """The body from `chunks`; `BodyTooLarge` once it (or its declared `length`) passes `limit`."""
    if length is not None and length > limit:
        raise BodyTooLarge(f"{_what(request)}: a body of {length} bytes is over the limit of {limit}")
    read: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"{_what(request)}: the body is over the limit of {limit} bytes")
        read.append(chunk)
    return b"".join(read)


@functools.lru_cache(maxsize=64)
def _timeout(seconds: float) -> aiohttp.ClientTimeout:
    import aiohttp

    # One timer for the whole request (a per-read timeout reschedules a timer on every chunk received).
    return aiohttp.ClientTimeout(total=seconds, sock_connect=min(seconds, 30.0))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


# -------------------------------------------------------------------------------------------------- httpx


class HttpxTransport(Transport):
    """httpx: over your `httpx.AsyncClient` (never closed by runwatch), or one client per origin and loop.

    With your own client, its settings apply (proxies, certificates, HTTP/2, `auth`), and `RunApi`'s
    `verify` and `max_connections` do not. Needs `pip install 'runwatch[httpx]'`.
    """

    def __init__(self, client: httpx.AsyncClient | None = None) -> None:
        import httpx  # noqa: F401 - fail here, at construction, when the extra is missing

        self.client = client

    def open(self, origin: str, verify: bool | str, max_connections: int) -> Channel:
        import httpx

        if self.client is not None:
            return _HttpxChannel(self.client, owned=False)
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        client = httpx.AsyncClient(verify=verify, limits=limits, headers={"User-Agent": USER_AGENT})
        return _HttpxChannel(client, owned=True)


class _HttpxChannel(Channel):
    def __init__(self, client: httpx.AsyncClient, *, owned: bool) -> None:
        self.client, self.owned = client, owned

    async def send(self, request: Request, *, timeout: float, max_body: int) -> Response:
        import httpx

        what = _what(request)
        try:
            async with self.client.stream(
                request.method,
                request.url,
                headers=request.headers,
                json=request.json,
                content=request.data,
                timeout=timeout,
                follow_redirects=False,
            ) as resp:
                declared = resp.headers.get("content-length", "")
                length = int(declared) if declared.isdigit() else None
                body = await _capped(length, resp.aiter_raw(), max_body, request)
                return Response(resp.status_code, resp.headers, body)
        except httpx.ConnectError as exc:
            cause = _cause(exc, ssl.SSLCertVerificationError)
            if cause is not None:
                raise _tls_error(httpx.URL(request.url).host, cause.verify_message) from None
            raise TransientError(f"{what}: ConnectError: {exc}") from None
        except (httpx.TransportError, httpx.StreamError) as exc:
            raise TransientError(f"{what}: {type(exc).__name__}: {str(exc) or 'failed'}") from None

    async def aclose(self) -> None:
        if self.owned:
            await self.client.aclose()


def _cause(
    exc: BaseException, kind: type[ssl.SSLCertVerificationError]
) -> ssl.SSLCertVerificationError | None:
    """The first exception of `kind` in the chain that led to `exc` (httpx wraps httpcore's wrapping)."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None or isinstance(seen, kind):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


# --------------------------------------------------------------------------------------------------- mock

Handler = Callable[[Request], "Response | Awaitable[Response]"]


class MockTransport(Transport):
    """Answers every request with `handler(request)` (sync or async): a `Response`, or raise
    `TransientError` to act as a network failure. For unit tests of code that waits on runs.

    `requests` lists every request sent, in order.
    """

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[Request] = []

    def open(self, origin: str, verify: bool | str, max_connections: int) -> Channel:
        return _MockChannel(self)


class _MockChannel(Channel):
    def __init__(self, transport: MockTransport) -> None:
        self.transport = transport

    async def send(self, request: Request, *, timeout: float, max_body: int) -> Response:
        self.transport.requests.append(request)
        answer = self.transport.handler(request)
        response = await answer if inspect.isawaitable(answer) else answer
        if len(response.body) > max_body:
            raise BodyTooLarge(f"{_what(request)}: the body is over the limit")
        if not isinstance(response.headers, (CIMultiDict, CIMultiDictProxy)):
            response = Response(
                response.status, CIMultiDictProxy(CIMultiDict(response.headers)), response.body
            )
        return response
