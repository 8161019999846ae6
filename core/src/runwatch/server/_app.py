"""The reference server's HTTP API (Starlette)."""

from __future__ import annotations

import hmac
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from runwatch.server._faults import AnyFault, Modes, http_date_in, modes_of, pick_fault, seconds
from runwatch.server._runs import Run, Snapshot
from runwatch.server._spec import (
    ErrorFault,
    MalformedFault,
    OversizedFault,
    RateLimitFault,
    SlowFault,
    SpecError,
    TruncatedFault,
    parse_faults,
    parse_run,
    parse_subscription,
)
from runwatch.server._store import IdempotencyConflict, ServerConfig, Store
from runwatch.server._vendors import VendorStore, vendor_routes

__all__ = ["DroppedConnection", "create_app"]

JSON = "application/json"
HONEST = Modes()
_PADDING_CHUNK = b"x" * 65536
# Requests from ReferenceServer's own helpers carry this header and stay out of requests_total/connections,
# so that tests count only the traffic of the code under test.
HELPER_HEADER = b"x-runwatch-helper"
BATCH_LIMIT = 100  # runs one `GET /runs?ids=` may read (the standard profile's page_limit)
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


class DroppedConnection(Exception):
    """Raised on purpose mid-response to cut the connection (the `drop` fault)."""


class _QuietDrops(logging.Filter):
    """Keeps the deliberate drops out of uvicorn's error log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], DroppedConnection))


def install_log_filter() -> None:
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _QuietDrops) for f in logger.filters):
        logger.addFilter(_QuietDrops())


def _json(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(_dumps(payload).encode(), status, headers, JSON)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return _json(status, {"error": message}, headers)


def _traced(run: Run, request: Request) -> None:
    """Count the W3C `traceparent` a request about `run` carried ("" for none), for the stats; the test
    helpers' own requests are not counted."""
    if request.headers.get("x-runwatch-helper") != "1":
        run.traceparents[request.headers.get("traceparent", "")] += 1


class _DropResponse(Response):
    """Promises a body with Content-Length, sends a few bytes of it, then cuts the connection."""

    def __init__(self) -> None:
        super().__init__(status_code=200)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", JSON.encode()), (b"content-length", b"4096")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"id": "', "more_body": True})
        raise DroppedConnection("connection dropped on purpose (fault injection)")


def _without(body: bytes, fields: frozenset[str]) -> bytes:
    """The status body with these fields left out (an API that does not have them)."""
    payload = json.loads(body)
    return _dumps({k: v for k, v in payload.items() if k not in fields}).encode()


async def _padded(body: bytes, size: int) -> AsyncIterator[bytes]:
    """`body` with a string field that brings it to `size` bytes, made chunk by chunk, never held whole."""
    head, tail = body[:-1] + b',"padding":"', b'"}'
    yield head
    left = max(0, size - len(head) - len(tail))
    while left > 0:
        chunk = _PADDING_CHUNK if left >= len(_PADDING_CHUNK) else _PADDING_CHUNK[:left]
        left -= len(chunk)
        yield chunk
    yield tail


def _etag_matches(if_none_match: str, etag: str) -> bool:
    """Weak comparison, as RFC 9110 wants for If-None-Match."""
    for candidate in if_none_match.split(","):
        tag = candidate.strip()
        if tag == "*":
            return True
        if tag.startswith("W/"):
            tag = tag[2:]
        if tag == etag:
            return True
    return False


def _prefer_wait(header: str) -> float | None:
    """The `wait` preference of a Prefer header (RFC 7240); unparsable preferences are ignored."""
    for preference in header.split(","):
        name, _, value = preference.split(";")[0].strip().partition("=")
        if name.strip().lower() == "wait":
            try:
                wait = float(value.strip().strip('"'))
            except ValueError:
                return None
            return wait if math.isfinite(wait) and wait >= 0 else None
    return None


class _Gate:
    """Counts requests and connections, and checks the bearer token before anything else runs."""

    def __init__(self, app: ASGIApp, store: Store) -> None:
        self.app = app
        self.store = store
        token = store.config.token
        self.expected = token.encode() if token is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        store = self.store
        if not scope["path"].startswith("/_control") and (HELPER_HEADER, b"1") not in scope["headers"]:
            store.requests_total += 1
            client = scope.get("client")
            if client:
                store.clients.add(tuple(client))
        guarded = self.expected is not None or store.tokens is not None
        if guarded and scope["path"] != "/oauth/token" and not self._authorized(scope):
            response = _error(
                401, "missing or invalid bearer token", {"www-authenticate": 'Bearer realm="runwatch"'}
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _authorized(self, scope: Scope) -> bool:
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, credentials = value.partition(b" ")
                if scheme.lower() != b"bearer":
                    return False
                credentials = credentials.strip()
                if self.expected is not None and hmac.compare_digest(credentials, self.expected):
                    return True
                tokens = self.store.tokens
                return tokens is not None and tokens.valid(credentials)
        return False


class _Api:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.config = store.config

    def _base_url(self, request: Request) -> str:
        return self.config.base_url or str(request.base_url).rstrip("/")

    async def _json_body(self, request: Request) -> Any:
        raw = await request.body()
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise SpecError("body: not valid JSON") from None

    # ---------------------------------------------------------------------------------------- runs

    async def create_run(self, request: Request) -> Response:
        try:
            body = await self._json_body(request)
            spec = parse_run(body)
        except SpecError as exc:
            return _error(422, str(exc))
        key = request.headers.get("idempotency-key")
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
        try:
            run, created = self.store.create(spec, self._base_url(request), key, canonical)
        except IdempotencyConflict as exc:
            return _error(422, str(exc))
        _traced(run, request)
        retry_after = spec.retry_after if spec.retry_after is not None else self.config.retry_after
        snap = run.view(time.monotonic())
        headers = {"location": run.url, "retry-after": seconds(retry_after), "etag": snap.etag}
        if not created:
            headers["idempotent-replayed"] = "true"
        return Response(snap.body, 202, headers, JSON)

    async def get_run(self, request: Request) -> Response:
        store = self.store
        run = store.runs.get(request.path_params["run_id"])
        if run is None:
            return _error(404, "no such run")
        counters = run.counters
        counters.get += 1
        _traced(run, request)
        now = time.monotonic()
        if now < run.not_found_until:
            counters.not_found += 1
            return _error(404, "no such run")

        sets = store.counters_for(run)
        modes = modes_of(sets) if sets else HONEST
        if sets:
            latency = sum(faults.latency for faults, _ in sets)
            slow = pick_fault(sets, ("slow",))
            if slow is not None:
                assert isinstance(slow[1], SlowFault)
                counters.slow += 1
                latency += slow[1].seconds
            if latency > 0:
                await store.sleep(latency)
                now = time.monotonic()
            fault = pick_fault(sets, ("drop", "rate_limit", "errors_5xx"))
            if fault is not None:
                return self._fault_response(run, *fault)

        extra: dict[str, str] = {}
        quota = run.quota or store.global_quota
        if quota is not None:
            allowed, remaining, reset = quota.take(now)
            extra.update(quota.headers(remaining, reset))
            if not allowed:
                counters.s429 += 1
                extra["retry-after"] = str(max(1, math.ceil(reset)))
                return _error(429, "rate limit exceeded", extra)
        headers = request.headers
        # An API without ETags or 304s does not look at If-None-Match.
        if_none_match = headers.get("if-none-match") if modes.conditional else None
        if sets:
            fault = pick_fault(sets, ("malformed", "truncated", "oversized", "etag_lies"))
            if fault is not None:
                return self._body_fault(run, *fault, extra, run.view(now), modes, if_none_match)

        wait: float | None = None
        if request.scope["query_string"]:
            raw_wait = request.query_params.get("wait")
            if raw_wait is not None:
                try:
                    wait = float(raw_wait)
                except ValueError:
                    wait = math.nan
                if not math.isfinite(wait) or wait < 0:
                    return _error(400, "wait: must be a number of seconds >= 0")
        if wait is None:
            prefer = headers.get("prefer")
            if prefer is not None:
                wait = _prefer_wait(prefer)
                if wait is not None:
                    wait = min(wait, self.config.max_wait)
                    extra["preference-applied"] = f"wait={seconds(wait)}"

        snap = run.view(now)
        if wait:
            snap = await self._hold(run, snap, min(wait, self.config.max_wait), if_none_match)
        if not modes.no_etag:
            extra["etag"] = snap.etag
        if if_none_match is not None and _etag_matches(if_none_match, snap.etag):
            counters.s304 += 1
            return Response(None, 304, extra)
        return Response(_without(snap.body, modes.omit) if modes.omit else snap.body, 200, extra, JSON)

    async def list_runs(self, request: Request) -> Response:
        """`GET /runs?ids=a,b,c[&active=true]`: the status of up to `BATCH_LIMIT` runs in one answer.

        Unknown ids are left out, as are ended runs with `active=true` (an active-only list). Global faults
        (rate limits, 5xx, the RateLimit quota) apply to it as to one run's read.
        """
        store = self.store
        store.batch_requests += 1
        query = request.query_params
        ids = [run_id for run_id in query.get("ids", "").split(",") if run_id]
        if not ids:
            return _error(400, "ids: give the run ids to read, comma-separated")
        if len(ids) > BATCH_LIMIT:
            return _error(400, f"ids: at most {BATCH_LIMIT} runs a request, got {len(ids)}")
        active = query.get("active", "false").lower() == "true"
        if not store.global_faults.empty:
            fault = pick_fault([(store.global_faults, store.batch_faults)], ("rate_limit", "errors_5xx"))
            if fault is not None:
                return _list_fault(fault[1])
        extra: dict[str, str] = {}
        now = time.monotonic()
        if store.global_quota is not None:
            allowed, remaining, reset = store.global_quota.take(now)
            extra.update(store.global_quota.headers(remaining, reset))
            if not allowed:
                extra["retry-after"] = str(max(1, math.ceil(reset)))
                return _error(429, "rate limit exceeded", extra)
        bodies = []
        for run_id in dict.fromkeys(ids):
            run = store.runs.get(run_id)
            if run is None or now < run.not_found_until:
                continue
            run.counters.listed += 1
            snap = run.view(now)
            if not (active and snap.terminal):
                bodies.append(snap.body)
        store.batch_runs += len(bodies)
        return Response(b'{"runs":[' + b",".join(bodies) + b"]}", 200, extra, JSON)

    async def _hold(self, run: Run, snap: Snapshot, wait: float, if_none_match: str | None) -> Snapshot:
        """Long poll: wait for news (a change of state, progress, errors...; not a heartbeat alone) or until
        `wait` passes. A client whose ETag is already out of date is answered at once.

        Without If-None-Match, a terminal run answers at once: there is nothing left to wait for.
        """
        if if_none_match is None and snap.terminal:
            return snap
        if if_none_match is not None and not _etag_matches(if_none_match, snap.etag):
            return snap
        store = self.store
        deadline = time.monotonic() + wait
        baseline = snap.news
        while snap.news == baseline:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or store.closing:
                return snap
            await run.wait_change(remaining)
            snap = run.view(time.monotonic())
        return snap

    def _fault_response(self, run: Run, kind: str, fault: AnyFault) -> Response:
        counters = run.counters
        if kind == "drop":
            counters.drop += 1
            return _DropResponse()
        if isinstance(fault, RateLimitFault):
            return _rate_limited(run, fault)
        assert isinstance(fault, ErrorFault)
        counters.s5xx += 1
        headers = {} if fault.retry_after is None else {"retry-after": seconds(fault.retry_after)}
        return _error(fault.status, "server error (fault injection)", headers)

    def _body_fault(
        self,
        run: Run,
        kind: str,
        fault: AnyFault,
        headers: dict[str, str],
        snap: Snapshot,
        modes: Modes,
        if_none_match: str | None,
    ) -> Response:
        """A 200 (or a lying 304) whose body or ETag is not what it should be; answered at once."""
        counters = run.counters
        if isinstance(fault, MalformedFault):
            counters.malformed += 1
            if fault.shape == "wrong":
                return _json(200, {"id": run.id, "state": "who knows", "version": "seven"}, headers)
            return Response(b"<html><body>200 OK, or so they say</body></html>", 200, headers, JSON)
        body = _without(snap.body, modes.omit) if modes.omit else snap.body
        if not modes.no_etag:
            headers["etag"] = snap.etag
        if isinstance(fault, TruncatedFault):
            counters.truncated += 1
            keep = len(body) // 2 if fault.keep is None else min(fault.keep, len(body))
            return Response(body[:keep], 200, headers, JSON)
        if isinstance(fault, OversizedFault):
            counters.oversized += 1
            if not fault.chunked:
                headers["content-length"] = str(max(fault.size, len(body) + len(b',"padding":""')))
            return StreamingResponse(_padded(body, fault.size), 200, headers, JSON)
        assert kind == "etag_lies"
        counters.etag_lies += 1
        if if_none_match is not None:  # "not modified", whatever happened since
            headers["etag"] = if_none_match.split(",")[0].strip()
            return Response(None, 304, headers)
        if not modes.no_etag:
            headers["etag"] = '"v1"'  # the tag of the first version, on today's content
        return Response(body, 200, headers, JSON)

    async def issue_token(self, request: Request) -> Response:
        issuer = self.store.tokens
        if issuer is None:
            return _error(404, "this server issues no tokens (start it with client_credentials)")
        counted = request.headers.get("x-runwatch-helper") != "1"
        status, body = issuer.issue(
            await request.body(), request.headers.get("authorization"), counted=counted
        )
        return _json(status, body, {"cache-control": "no-store"})

    async def cancel_run(self, request: Request) -> Response:
        run = self.store.runs.get(request.path_params["run_id"])
        if run is None:
            return _error(404, "no such run")
        run.counters.cancel += 1
        _traced(run, request)
        if not run.cancel(time.monotonic(), self.config.cancel_delay):
            return _json(409, {"error": f"run is already {run.status}", "status": run.status})
        snap = run.snapshot
        return Response(snap.body, 202, {"location": run.url, "etag": snap.etag}, JSON)

    # ---------------------------------------------------------------------------------------- webhooks

    async def subscribe(self, request: Request) -> Response:
        try:
            spec = parse_subscription(
                await self._json_body(request), allow_remote=self.config.allow_remote_webhooks
            )
        except SpecError as exc:
            return _error(422, str(exc))
        for run_id in sorted(spec.runs or ()):
            if run_id not in self.store.runs:
                return _error(422, f"runs: no such run {run_id[:100]!r}")
        return _json(201, self.store.subscribe(spec).to_dict())

    async def unsubscribe(self, request: Request) -> Response:
        if not self.store.unsubscribe(request.path_params["sub_id"]):
            return _error(404, "no such subscription")
        return Response(None, 204)

    # ---------------------------------------------------------------------------------------- control

    async def stats(self, request: Request) -> Response:
        return _json(200, self.store.stats())

    async def get_faults(self, request: Request) -> Response:
        return _json(200, {"faults": self.store.global_faults.source})

    async def set_faults(self, request: Request) -> Response:
        try:
            faults = parse_faults(await self._json_body(request), "faults")
        except SpecError as exc:
            return _error(422, str(exc))
        self.store.set_faults(faults)
        return _json(200, {"faults": faults.source})

    async def reset(self, request: Request) -> Response:
        self.store.reset()
        return _json(200, {"reset": True})


def _rate_limited(run: Run, fault: RateLimitFault) -> Response:
    """429, or 403 as GitHub says it, with the hint in the form the fault asks for."""
    if fault.status == 403:
        run.counters.s403 += 1
    else:
        run.counters.s429 += 1
    return _error(fault.status, "rate limit exceeded (fault injection)", _rate_limit_headers(fault))


def _rate_limit_headers(fault: RateLimitFault) -> dict[str, str]:
    wait, hint = fault.retry_after, fault.hint
    headers: dict[str, str] = {}
    if hint == "seconds":
        headers["retry-after"] = fault.retry_after_text or seconds(wait)
    elif hint == "date":
        headers["retry-after"] = fault.retry_after_text or http_date_in(wait)
    elif hint == "ms":
        headers["retry-after-ms"] = str(round(wait * 1000))
    elif hint == "reset":  # GitHub's primary rate limit: the quota is spent until an epoch second
        headers.update(
            {
                "x-ratelimit-limit": "60",
                "x-ratelimit-remaining": "0",
                "x-ratelimit-used": "60",
                "x-ratelimit-reset": str(math.ceil(time.time() + wait)),
                "x-ratelimit-resource": "core",
            }
        )
    return headers


def _list_fault(fault: AnyFault) -> Response:
    if isinstance(fault, RateLimitFault):
        return _error(fault.status, "rate limit exceeded (fault injection)", _rate_limit_headers(fault))
    assert isinstance(fault, ErrorFault)
    headers = {} if fault.retry_after is None else {"retry-after": seconds(fault.retry_after)}
    return _error(fault.status, "server error (fault injection)", headers)


async def _not_found(request: Request, exc: Exception) -> Response:
    return _error(404, "not found")


async def _not_allowed(request: Request, exc: Exception) -> Response:
    return _error(405, "method not allowed")


def create_app(config: ServerConfig | None = None, **options: Any) -> Starlette:
    """The reference server as an ASGI app. Options are those of `ServerConfig`."""
    if config is None:
        config = ServerConfig(**options)
    elif options:
        raise TypeError("pass either a ServerConfig or keyword options, not both")
    store = Store(config)
    api = _Api(store)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        install_log_filter()
        try:
            yield
        finally:
            await store.aclose()

    routes = [
        Route("/runs", api.create_run, methods=["POST"]),
        Route("/runs", api.list_runs, methods=["GET"]),
        Route("/runs/{run_id}", api.get_run, methods=["GET"]),
        Route("/runs/{run_id}/cancel", api.cancel_run, methods=["POST"]),
        Route("/oauth/token", api.issue_token, methods=["POST"]),
        Route("/webhooks", api.subscribe, methods=["POST"]),
        Route("/webhooks/{sub_id}", api.unsubscribe, methods=["DELETE"]),
        Route("/_control/stats", api.stats, methods=["GET"]),
        Route("/_control/faults", api.get_faults, methods=["GET"]),
        Route("/_control/faults", api.set_faults, methods=["POST"]),
        Route("/_control/reset", api.reset, methods=["POST"]),
        *vendor_routes(VendorStore(), config.base_url),  # vendor mode (_vendors.py)
    ]
    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
        404: _not_found,
        405: _not_allowed,
    }
    app = Starlette(
        routes=routes,
        middleware=[Middleware(_Gate, store=store)],
        exception_handlers=handlers,
        lifespan=lifespan,
    )
    app.state.store = store
    return app
