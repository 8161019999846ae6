"""A run API: where it is, how to talk to it, and the three things we ask of it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urljoin, urlsplit

import jmespath
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt

from runwatch._auth import Auth, BasicAuth, TokenAuth
from runwatch._budget import RedisBudget
from runwatch._clock import SYSTEM_CLOCK, Clock
from runwatch._errors import (
    AccessDenied,
    BadStatusPayload,
    ConfigurationError,
    InvalidURL,
    ProfileError,
    RunNotFound,
    RunwatchError,
)
from runwatch._http import DEFAULT_TRANSPORT, MAX_BODY, Origin, lease, retry_after
from runwatch._profile import Profile, load_profile
from runwatch._states import State
from runwatch._status import RunStatus
from runwatch._trace import trace_headers
from runwatch._transport import Response, TransientError, Transport
from runwatch._urls import origin_of, redact, split_userinfo
from runwatch._wait_strategy import wait_server_hint
from runwatch.text import inert

__all__ = ["RunApi", "StartedRun", "checked_url"]


def checked_url(url: str, what: str) -> str:
    """`url` if it can be a run API's address (http or https, a host, a valid port), else `InvalidURL`.

    Checked when the API is made, so a typo is a usage error at once rather than minutes of retries.
    """
    shown = "(not shown: it holds credentials)" if "@" in url else repr(url)
    if any(c.isspace() for c in url):
        raise InvalidURL(f"{what} {shown} contains whitespace")
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # an unclosed IPv6 bracket, say
        raise InvalidURL(f"{what} {shown} is not a valid URL: {exc}") from None
    try:
        parts.port  # noqa: B018 - reading it checks it
    except ValueError:
        raise InvalidURL(f"{what} {shown} has a bad port (expected a number 0-65535)") from None
    if parts.scheme not in ("http", "https") or "://" not in url:
        bare = parts.scheme not in ("http", "https") and "://" not in url and "@" not in url
        hint = f": did you mean 'https://{url}'?" if bare else ""
        raise InvalidURL(f"{what} {shown} must start with http:// or https://{hint}")
    if not parts.hostname:
        raise InvalidURL(f"{what} {shown} has no host")
    return url


@dataclass(frozen=True)
class StartedRun:
    """A run we just started: where to read it, and how long the remote asked us to wait first."""

    status: RunStatus
    status_url: str
    retry_after: float | None = None
    replayed: bool = False  # the remote had seen this idempotency key: the same run, not a new one

    @property
    def id(self) -> str:
        return self.status.id

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status.to_dict(),
            "status_url": self.status_url,
            "retry_after": self.retry_after,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StartedRun:
        return cls(
            RunStatus.from_dict(data["status"]),
            data["status_url"],
            data.get("retry_after"),
            bool(data.get("replayed", False)),
        )


class RunApi:
    """How to reach one run API. Holds no socket: requests share the loop's pool for the origin.

    Credentials (`auth`, or `user:password@` in `base_url`, which becomes Basic auth and is never shown)
    are sent only to the origin of `base_url`. A run URL on another origin is refused with
    `ConfigurationError`, or read without credentials when `other_origins="anonymous"`. `max_body` caps
    every answer's body, in bytes (a larger one is a retriable `BodyTooLarge`). `verify` is True, False, or
    the path of a CA bundle. `transport` carries the requests (aiohttp by default; `HttpxTransport`,
    `MockTransport`); `clock` is the time the engine waits by (a fake one in tests). `product` names the
    integration in the `User-Agent` after runwatch's own (`runwatch/0.1.0 runwatch-airflow/0.1.0`, RFC 9110
    §10.1.5), so API owners can see who polls them. `reads` says how waits in one event loop read
    (docs/shared-reads.md): `"shared"` (the default) gives waits on one run with one credential one read per
    tick; `"batched"` also reads many runs in one request through the profile's `[list_runs]` (it needs
    `{run_ids}` or `active_only` there, else `ConfigurationError`); `"own"` gives every wait its own requests.
    `budget` is a request budget per origin that every process using the same store shares (`RedisBudget`);
    without it, nothing is asked of any store. Like `auth`, it is not part of `to_dict`: its store address
    may hold a password.
    """

    def __init__(
        self,
        base_url: str | None = None,
        profile: Profile | Mapping[str, Any] | str | Path = "standard",
        *,
        auth: Auth | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        verify: bool | str = True,
        max_connections: int = 100,
        max_body: int = MAX_BODY,
        other_origins: Literal["refuse", "anonymous"] = "refuse",
        transport: Transport | None = None,
        clock: Clock | None = None,
        product: str | None = None,
        budget: RedisBudget | None = None,
        reads: Literal["shared", "batched", "own"] = "shared",
    ) -> None:
        userinfo = None
        if base_url:
            base_url, userinfo = split_userinfo(base_url)
            base_url = checked_url(base_url, "base URL").rstrip("/")
        self.base_url = base_url or None
        self.origin = origin_of(base_url) if base_url else None
        self.profile = load_profile(profile)
        self.auth = auth if auth is not None or userinfo is None else BasicAuth(*userinfo)
        self.headers = dict(headers or {})
        self.params = dict(params or {})
        self.verify = verify
        self.max_connections = max_connections
        self.max_body = max_body
        self.other_origins = other_origins
        self.transport = transport or DEFAULT_TRANSPORT
        self.clock = clock or SYSTEM_CLOCK
        self.budget = budget
        if reads not in ("shared", "batched", "own"):
            raise ConfigurationError(f"reads must be 'shared', 'batched' or 'own', not {reads!r}")
        spec = self.profile.list_runs
        if reads == "batched" and (spec is None or not (spec.by_ids or spec.active_only)):
            raise ConfigurationError(
                f"reads='batched' needs a [list_runs] in profile {self.profile.name!r} that names the runs "
                "it reads ({run_ids}) or lists only active runs (active_only = true)"
            )
        self.reads = reads
        self._list_key: str | None = None
        from runwatch import __version__  # the package is imported whole by the time an API is made

        agent = f"runwatch/{__version__}" + (f" {product}" if product else "")
        self.product = product
        self._anonymous = {"Accept": "application/json", "User-Agent": agent, **self.headers}
        self._request_headers = {
            **self._anonymous,
            **(self.auth.headers(self.profile) if self.auth else {}),
        }

    def __repr__(self) -> str:
        return f"RunApi(base_url={self.base_url!r}, profile={self.profile.name!r}, auth={self.auth!r})"

    def to_dict(self) -> dict[str, Any]:
        """Everything but the credentials, as JSON-safe data."""
        return {
            "base_url": self.base_url,
            "profile": self.profile.to_dict(),
            "headers": self.headers,
            "params": self.params,
            "verify": self.verify,
            "max_body": self.max_body,
            "other_origins": self.other_origins,
            "product": self.product,
            **({"reads": self.reads} if self.reads != "shared" else {}),
        }

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], auth: Auth | None = None, budget: RedisBudget | None = None
    ) -> RunApi:
        return cls(auth=auth, budget=budget, **data)

    def status_url(self, run: str) -> str:
        """The URL of a run: `run` itself when it is a URL, else the profile's template.

        Raises `ConfigurationError` for a URL that holds credentials (give them as `auth`).
        """
        if run.startswith(("http://", "https://")):
            clean, userinfo = split_userinfo(run)
            if userinfo is not None:
                raise ConfigurationError(
                    f"the run URL {redact(run)} holds credentials: give them as RunApi(auth=...) instead"
                )
            return checked_url(clean, "status URL")
        if not run.strip():  # an empty template (`{{ params.run }}` with no value) would read the run list
            raise InvalidURL("the run id is empty: give a run id or a full status URL")
        return self._url(self.profile.status_url, run_id=quote(run, safe=""))

    def batch_request(self, run_ids: list[str]) -> tuple[str, str, Any]:
        """(method, URL, JSON body or None) of one `[list_runs]` request that reads these runs."""
        spec = self.profile.list_runs
        if spec is None:
            raise ProfileError(f"profile {self.profile.name!r} has no [list_runs] section")
        url = self._url(spec.url, run_ids=",".join(quote(run, safe="") for run in run_ids))
        values = {**self.params, "base_url": self.base_url or ""}
        body = (
            None if spec.body is None else self.profile.render_body(spec.body, **values, run_ids=run_ids)  # type: ignore[arg-type]
        )
        return spec.method, url, body

    def list_key(self) -> str:
        """Equal for APIs whose batch reads are the same requests read the same way (no credentials in it)."""
        if self._list_key is None:
            data = [self.base_url, self.params, self.profile.to_dict(), self.headers, self.max_body]
            text = json.dumps(data, sort_keys=True, default=str)
            self._list_key = hashlib.sha256(text.encode()).hexdigest()  # headers may hold an API key
        return self._list_key

    def headers_for(self, url: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The headers of a request to `url`: credentials only on the API's own origin.

        Raises `ConfigurationError` for a URL on another origin, unless `other_origins="anonymous"`.
        """
        if self.auth is None:
            return {**self._anonymous, **extra} if extra else self._anonymous
        if self.origin is None:
            raise ConfigurationError(
                f"credentials are sent only to the origin of the API's base URL, and none is set: give "
                f"base_url (the origin of {redact(url)}, say)"
            )
        if origin_of(url) == self.origin:
            return self.request_headers(extra)
        if self.other_origins == "anonymous":
            return {**self._anonymous, **extra} if extra else self._anonymous
        raise ConfigurationError(
            f"{redact(url)} is not on {self.origin}, the origin the credentials are for: runwatch does not "
            "send them elsewhere (RunApi(other_origins='anonymous') reads such URLs without credentials)"
        )

    def _url(self, template: str, **values: str) -> str:
        if "{base_url}" in template and not self.base_url:
            raise ProfileError(f"profile {self.profile.name!r} needs a base URL for {template!r}")
        return self.profile.url(template, base_url=self.base_url or "", **self.params, **values)

    def request_headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return {**self._request_headers, **extra} if extra else self._request_headers

    def read_status(
        self, response: Response, url: str, run_id: str | None = None, dropped: list[str] | None = None
    ) -> RunStatus:
        """Turn one answer to a status request into a RunStatus, or the error it means.

        Auxiliary fields that do not parse are left out and named in `dropped` (see `Profile.parse`).
        """
        self.check(response, url)
        try:
            payload = json.loads(response.body)
        except (ValueError, RecursionError):
            raise BadStatusPayload(f"GET {url}: the body is not JSON") from None
        return self.profile.parse(
            payload, run_id=run_id, etag=response.headers.get("etag"), url=url, dropped=dropped
        )

    def check(self, response: Response, url: str) -> None:
        """Raise the error a non-success answer means, with the server's own reason when it gives one."""
        status = response.status
        if 200 <= status < 300:
            return
        reason = _reason(response.body)
        said = f"HTTP {status}: {reason}" if reason else f"HTTP {status}"
        if status in self.profile.not_found:
            raise RunNotFound(f"no such run at {url} ({said})")
        if status in self.profile.denied:
            raise AccessDenied(f"access denied to {url} ({said})")
        if 300 <= status < 400 and "location" in response.headers:
            target = redact(urljoin(url, response.headers["location"]))
            raise ConfigurationError(
                f"{url} redirects (HTTP {status}) to {target}, on another origin: runwatch does not follow "
                "it with the API's credentials; watch the new URL with an API for that origin"
            )
        raise RunwatchError(f"{url}: {said}")

    def lease(self, url: str) -> AbstractAsyncContextManager[Origin]:
        """The loop's shared pool for `url`'s origin, on this API's transport and clock."""
        return lease(url, self.verify, self.max_connections, self.transport, self.clock)

    async def send(
        self,
        origin: Origin,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        json: Any = None,
        timeout: float,
        deadline: float | None = None,
    ) -> Response:
        """One request on `origin` with this API's limits (rate-limit rules, body cap).

        With a `TokenAuth`, the token goes with requests to the API's own origin, and a 401 is answered once
        with a fresh token (a second 401 stands).
        """
        auth = self.auth
        if not isinstance(auth, TokenAuth) or origin.origin != self.origin:
            return await self._request(origin, method, url, headers, json, timeout, deadline)
        for attempt in (1, 2):
            authorization = await auth.authorization(self)
            response = await self._request(
                origin, method, url, {**headers, "Authorization": authorization}, json, timeout, deadline
            )
            if response.status != 401 or attempt == 2:
                return response
            auth.refused(authorization)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _request(
        self,
        origin: Origin,
        method: str,
        url: str,
        headers: Mapping[str, str],
        json: Any,
        timeout: float,
        deadline: float | None,
    ) -> Response:
        return await origin.request(
            method,
            url,
            headers=headers,
            json=json,
            timeout=timeout,
            deadline=deadline,
            rate_limit=self.profile.rate_limit,
            max_body=self.max_body,
            budget=self.budget,
        )

    async def post_form(self, url: str, body: bytes, headers: Mapping[str, str]) -> Response:
        """POST a form (a token request) on this API's transport; a transient failure is tried 3 times."""
        async with self.lease(url) as origin:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type(TransientError),
                wait=wait_server_hint(0.5, 5.0),
                stop=stop_after_attempt(3),
                sleep=self.clock.sleep,
                reraise=True,
            ):
                with attempt:
                    return await origin.request(
                        "POST",
                        url,
                        headers=headers,
                        data=body,
                        timeout=30.0,
                        max_body=self.max_body,
                        budget=self.budget,
                    )
        raise AssertionError("unreachable")  # pragma: no cover

    async def get_status(
        self,
        run: str,
        *,
        retry_for: float = 30.0,
        request_timeout: float = 30.0,
        trace: Mapping[str, str] | None = None,
    ) -> RunStatus:
        """Read one run once, retrying transient failures for up to `retry_for` seconds.

        `trace` is a W3C Trace Context carrier sent along (see `watch_run`)."""
        url = self.status_url(run)
        response = await self._send("GET", url, None, trace_headers(trace), retry_for, request_timeout)
        return self.read_status(response, url, run_id=None if run == url else run)

    async def start_run(
        self,
        body: Mapping[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        retry_for: float = 60.0,
        request_timeout: float = 30.0,
        trace: Mapping[str, str] | None = None,
    ) -> StartedRun:
        """Start a run. With an idempotency key, a retried start returns the same run, never a second one.

        `trace` is a W3C Trace Context carrier sent along (see `watch_run`).
        """
        spec = self.profile.start
        if spec is None:
            raise ProfileError(f"profile {self.profile.name!r} has no [start] section")
        if idempotency_key is None and retry_for > 0:
            retry_for = 0.0  # without a key, a retry could start a second run
        headers = trace_headers(trace)
        if spec.idempotency_header and idempotency_key:
            headers[spec.idempotency_header] = idempotency_key
        url = self._url(spec.url)
        response = await self._send(spec.method, url, dict(body or {}), headers, retry_for, request_timeout)
        self.check(response, url)
        try:
            payload = json.loads(response.body) if response.body else {}
        except ValueError:
            raise BadStatusPayload(f"{spec.method} {url}: the body is not JSON") from None
        status_url = next(
            (
                split_userinfo(urljoin(url, response.headers[h]))[0]
                for h in spec.status_url_headers
                if h in response.headers
            ),
            None,
        )
        run_id = jmespath.search(spec.run_id, payload)
        if status_url is None:
            if run_id is None:
                raise BadStatusPayload(f"{spec.method} {url}: no run id at {spec.run_id!r} and no status URL")
            status_url = self.status_url(str(run_id))
        if isinstance(payload, dict) and jmespath.search(self.profile.fields.status, payload) is not None:
            status = self.profile.parse(payload, run_id=str(run_id), url=status_url)
        else:  # the answer says only where to look: the run is as good as queued
            status = RunStatus(id=str(run_id or status_url), status=State.QUEUED, url=status_url)
        replayed = response.headers.get("Idempotent-Replayed", "").lower() == "true"
        return StartedRun(status, status_url, retry_after(response.headers), replayed)

    async def cancel_run(
        self,
        run: str,
        *,
        retry_for: float = 60.0,
        request_timeout: float = 30.0,
        trace: Mapping[str, str] | None = None,
    ) -> None:
        """Ask the remote to cancel a run. A run that already ended is not an error."""
        spec = self.profile.cancel
        if spec is None:
            raise ProfileError(f"profile {self.profile.name!r} has no [cancel] section")
        url = self._url(spec.url, run_id=quote(run, safe=""))
        body = None if spec.body is None else self.profile.render_body(spec.body, **self.params, run_id=run)
        response = await self._send(spec.method, url, body, trace_headers(trace), retry_for, request_timeout)
        if response.status != 409:  # 409: already terminal
            self.check(response, url)

    async def _send(
        self,
        method: str,
        url: str,
        body: Any,
        headers: Mapping[str, str],
        retry_for: float,
        request_timeout: float,
    ) -> Response:
        request_headers = self.headers_for(url, headers)
        clock = self.clock
        begun = clock.monotonic()
        deadline = clock.time() + retry_for + request_timeout
        async with self.lease(url) as origin:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type(TransientError),
                wait=wait_server_hint(1.0, 30.0),
                stop=lambda _: clock.monotonic() - begun >= retry_for,
                sleep=clock.sleep,
                reraise=True,
            ):
                with attempt:
                    return await self.send(
                        origin,
                        method,
                        url,
                        headers=request_headers,
                        json=body,
                        timeout=request_timeout,
                        deadline=deadline,
                    )
        raise AssertionError("unreachable")  # pragma: no cover


_REASON_MAX = 200  # characters of the server's own reason kept in an error line


def _reason(body: bytes) -> str:
    """The server's own short reason for an error answer, on one line ('' if it gives none).

    Read from the usual places of JSON error bodies (`error`, `message`, `detail`, `title`, or
    `error.message`), else the body's text if it is short and not HTML.
    """
    text = body.decode("utf-8", "replace").strip()
    try:
        payload = json.loads(text) if text else None
    except ValueError:
        payload = None
    if isinstance(payload, dict):
        found: Any = None
        for key in ("error", "message", "detail", "title"):
            found = payload.get(key)
            if isinstance(found, dict):
                found = found.get("message")
            if isinstance(found, str) and found.strip():
                break
        text = found if isinstance(found, str) else ""
    elif payload is not None or text.startswith("<"):
        text = ""
    line = inert(" ".join(text.split()))
    return line if len(line) <= _REASON_MAX else line[: _REASON_MAX - 1] + "…"
