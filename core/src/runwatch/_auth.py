"""Credentials: static ones, and tokens that expire and are fetched again before they do.

Waits last hours; the tokens of the APIs users watch (Microsoft Entra ID, Databricks OAuth, GitHub App
installations, Google) live about one. `TokenAuth` keeps one token per credential: fetched when first needed,
again `refresh_before` seconds before it expires, and once more when the API answers 401 (a second 401
stands: `AccessDenied`). One fetch at a time per credential and event loop, however many waits share it.
No credential's repr, log line or error message shows the secret.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import json
import logging
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlencode

from runwatch._errors import AccessDenied, BadStatusPayload
from runwatch._urls import redact

if TYPE_CHECKING:
    from runwatch._api import RunApi
    from runwatch._profile import Profile

__all__ = [
    "Auth",
    "BasicAuth",
    "BearerAuth",
    "ClientCredentials",
    "HeaderAuth",
    "Token",
    "TokenAuth",
    "TokenFunction",
    "TokenProvider",
]

log = logging.getLogger("runwatch")


class Auth:
    """Credentials. Their repr never shows the secret."""

    def headers(self, profile: Profile) -> dict[str, str]:
        """The headers every request carries (none for a token that is fetched per request)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(***)"


class BearerAuth(Auth):
    """`Authorization: <profile's scheme> <token>` (the scheme is `Bearer` unless the profile says else)."""

    def __init__(self, token: str) -> None:
        self._token = token

    def headers(self, profile: Profile) -> dict[str, str]:
        return {"Authorization": f"{profile.auth_scheme} {self._token}"}


class BasicAuth(Auth):
    """`Authorization: Basic ...` (RFC 7617). An empty user name is allowed, as some APIs want a key alone."""

    def __init__(self, username: str, password: str) -> None:
        self._value = base64.b64encode(f"{username}:{password}".encode()).decode()

    def headers(self, profile: Profile) -> dict[str, str]:
        return {"Authorization": f"Basic {self._value}"}


class HeaderAuth(Auth):
    """An API key in a header of its own (`X-Api-Key: ...`)."""

    def __init__(self, header: str, value: str) -> None:
        self._header, self._value = header, value

    def headers(self, profile: Profile) -> dict[str, str]:
        return {self._header: self._value}


@dataclass(frozen=True)
class Token:
    """An access token and when it expires (UNIX seconds; None: it does not say)."""

    value: str
    expires_at: float | None = None

    def __repr__(self) -> str:
        return f"Token(***, expires_at={self.expires_at})"


class TokenProvider(Protocol):
    """Fetches a fresh token. `api` is the API the token is for: fetch through its transport and clock."""

    async def fetch(self, api: RunApi) -> Token: ...


class TokenAuth(Auth):
    """A token from a `TokenProvider`, sent as `Authorization: <profile's scheme> <token>`, renewed in time.

    `refresh_before` (seconds) renews a token that expires within it; `fetches` counts the tokens fetched.
    Raises what the provider raises: `AccessDenied` when the token endpoint refuses the credentials, a
    `TransientError` when it cannot be reached (a wait counts that as unreadable, and goes on).
    """

    def __init__(self, provider: TokenProvider, *, refresh_before: float = 60.0) -> None:
        self.provider = provider
        self.refresh_before = refresh_before
        self.fetches = 0
        self._token: Token | None = None
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )

    def headers(self, profile: Profile) -> dict[str, str]:
        return {}

    def _fresh(self, api: RunApi) -> str | None:
        token = self._token
        if token is None:
            return None
        if token.expires_at is not None and token.expires_at - self.refresh_before <= api.clock.time():
            return None
        return token.value

    async def authorization(self, api: RunApi) -> str:
        """The `Authorization` header's value, with a token fetched now if the one held is (nearly) stale."""
        value = self._fresh(api)
        if value is None:
            lock = self._locks.setdefault(asyncio.get_running_loop(), asyncio.Lock())
            async with lock:
                value = self._fresh(api)  # another wait may have fetched one while we queued
                if value is None:
                    self._token = await self.provider.fetch(api)
                    self.fetches += 1
                    value = self._token.value
        return f"{api.profile.auth_scheme} {value}"

    def refused(self, authorization: str) -> None:
        """The API answered 401 to this `Authorization`: drop the token, unless another was fetched since."""
        if self._token is not None and authorization.endswith(f" {self._token.value}"):
            self._token = None


class ClientCredentials:
    """OAuth 2.0 client credentials grant (RFC 6749 §4.4): `POST token_url` with the client's id and secret.

    `scope` and `audience` are sent when given (Auth0 and Okta want an audience; Microsoft Entra ID a
    scope such as `api://<app>/.default`). `auth_method="post"` puts the id and secret in the form (accepted
    by every major provider); `"basic"` sends them as HTTP Basic (RFC 6749 §2.3.1).
    """

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        *,
        scope: str | None = None,
        audience: str | None = None,
        auth_method: str = "post",
    ) -> None:
        self.token_url, self.client_id, self._secret = token_url, client_id, client_secret
        self.scope, self.audience, self.auth_method = scope, audience, auth_method

    def __repr__(self) -> str:
        return f"ClientCredentials({redact(self.token_url)!r}, client_id={self.client_id!r}, secret=***)"

    async def fetch(self, api: RunApi) -> Token:
        form = {"grant_type": "client_credentials"}
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
        if self.auth_method == "basic":
            pair = f"{self.client_id}:{self._secret}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        else:
            form |= {"client_id": self.client_id, "client_secret": self._secret}
        if self.scope:
            form["scope"] = self.scope
        if self.audience:
            form["audience"] = self.audience
        now = api.clock.time()
        response = await api.post_form(self.token_url, urlencode(form).encode(), headers)
        where = redact(self.token_url)
        if response.status in (400, 401, 403):
            raise AccessDenied(
                f"the token endpoint {where} refused the client credentials (HTTP {response.status})"
            )
        if not 200 <= response.status < 300:
            raise BadStatusPayload(f"the token endpoint {where} answered HTTP {response.status}")
        try:
            data: Any = json.loads(response.body)
            value, expires_in = data["access_token"], data.get("expires_in")
        except (ValueError, KeyError, TypeError):
            raise BadStatusPayload(f"the token endpoint {where} answered without an access_token") from None
        expires_at = (
            now + float(expires_in) if isinstance(expires_in, (int, float, str)) and expires_in else None
        )
        return Token(str(value), expires_at)


TokenSource = Callable[[], "str | Token | Awaitable[str | Token]"]


class TokenFunction:
    """A token from your own function: a string, or a `Token` that says when it expires.

    An async function runs in the loop; a sync one in a thread, so that it may block (a cloud SDK's call).
    """

    def __init__(self, function: TokenSource) -> None:
        self.function = function

    def __repr__(self) -> str:
        return f"TokenFunction({getattr(self.function, '__qualname__', 'function')})"

    async def fetch(self, api: RunApi) -> Token:
        if inspect.iscoroutinefunction(self.function):
            result = await self.function()
        else:
            result = await asyncio.to_thread(self.function)
            if inspect.isawaitable(result):
                result = await result
        return result if isinstance(result, Token) else Token(str(result))
