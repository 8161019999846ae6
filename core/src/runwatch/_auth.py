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
import hashlib
import importlib.util
import inspect
import json
import logging
import re
import weakref
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol
from urllib.parse import urlencode

from runwatch._errors import AccessDenied, BadStatusPayload
from runwatch._urls import redact

if TYPE_CHECKING:
    from runwatch._api import RunApi
    from runwatch._profile import Profile

__all__ = [
    "AUTH_STYLES",
    "Auth",
    "BasicAuth",
    "BearerAuth",
    "ClientCredentials",
    "HeaderAuth",
    "Token",
    "TokenAuth",
    "TokenFunction",
    "TokenProvider",
    "auth_for",
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


class SharedProvider(TokenProvider, Protocol):
    """A provider that says which settings it stands for: equal keys share one token per process."""

    @property
    def key(self) -> Hashable: ...


class TokenAuth(Auth):
    """A token from a `TokenProvider`, sent as `Authorization: <profile's scheme> <token>`, renewed in time.

    `refresh_before` (seconds) renews a token that expires within it, or within a quarter of its lifetime
    when that is shorter (a token that lives a minute is renewed 15 s early); `fetches` counts the tokens
    fetched.
    Raises what the provider raises: `AccessDenied` when the token endpoint refuses the credentials, a
    `TransientError` when it cannot be reached (a wait counts that as unreadable, and goes on).
    """

    _shared: ClassVar[dict[Hashable, TokenAuth]] = {}

    def __init__(self, provider: TokenProvider, *, refresh_before: float = 60.0) -> None:
        self.provider = provider
        self.refresh_before = refresh_before
        self.fetches = 0
        self._token: Token | None = None
        self._margin = refresh_before  # seconds before expiry at which the held token counts as stale
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )

    @classmethod
    def shared(cls, provider: SharedProvider, *, refresh_before: float = 60.0) -> TokenAuth:
        """The one `TokenAuth` of this process for a provider of these settings (its `key`), so that every
        wait that builds its own API from them (each Airflow trigger, each Prefect task) shares one token."""
        key = provider.key
        found = cls._shared.get(key)
        if found is None:
            found = cls._shared[key] = cls(provider, refresh_before=refresh_before)
        return found

    def headers(self, profile: Profile) -> dict[str, str]:
        return {}

    def _fresh(self, api: RunApi) -> str | None:
        token = self._token
        if token is None:
            return None
        if token.expires_at is not None and token.expires_at - self._margin <= api.clock.time():
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
                    fetched_at = api.clock.time()
                    token = self._token = await self.provider.fetch(api)
                    self.fetches += 1
                    lifetime = None if token.expires_at is None else token.expires_at - fetched_at
                    self._margin = (
                        self.refresh_before if lifetime is None else min(self.refresh_before, lifetime / 4)
                    )
                    value = token.value
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

    @property
    def key(self) -> Hashable:
        """Equal for equal settings; holds a digest of the secret, never the secret."""
        digest = hashlib.sha256(self._secret.encode()).hexdigest()
        return (self.token_url, self.client_id, digest, self.scope, self.audience, self.auth_method)

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


AUTH_STYLES = ("bearer", "basic", "header", "client_credentials", "azure", "google", "github_app")
_GITHUB_TOKEN_URL = re.compile(
    r"^(?P<api>https?://.+)/app/installations/(?P<installation>[^/]+)/access_tokens$"
)


def auth_for(
    style: str,
    secret: str | None,
    *,
    username: str | None = None,
    header: str | None = None,
    token_url: str | None = None,
    scope: str | None = None,
    audience: str | None = None,
) -> Auth | None:
    """The credential that an integration's settings describe: one rule for the Airflow connection, the
    Prefect block and the CLI. None without a secret.

    `bearer`: `secret` is the token; `basic`: `username` (may be empty) and `secret` the password; `header`:
    `secret` in the header named `header` (default `X-Api-Key`); `client_credentials`: OAuth 2.0 with
    `username` as the client id, `secret` as the client secret, at `token_url`. The cloud styles need their
    extra (`runwatch.cloud`): `azure` (`runwatch[azure]`), azure-identity's `DefaultAzureCredential` for
    `scope`; `google` (`runwatch[google]`), Application Default Credentials for the space-separated `scope`
    (default cloud-platform); neither takes a secret. `github_app` (`runwatch[github]`): `username` is the
    app id, `secret` its PEM private key, `token_url` the installation's
    `https://api.github.com/app/installations/<id>/access_tokens`. Tokens are shared per process (see
    `TokenAuth.shared`). Raises `ValueError` naming a setting that is missing or unknown.
    """
    style = style.strip().lower()
    if style not in AUTH_STYLES:
        raise ValueError(f"auth style must be one of {', '.join(AUTH_STYLES)} (got {style!r})")
    if style in ("azure", "google"):
        return _cloud_auth(style, scope)
    if not secret:
        return None
    if style == "basic":
        return BasicAuth(username or "", secret)
    if style == "header":
        return HeaderAuth(header or "X-Api-Key", secret)
    if style == "client_credentials":
        if not token_url or not username:
            raise ValueError("auth style client_credentials needs a token URL and a client id")
        provider = ClientCredentials(
            token_url, username, secret, scope=scope or None, audience=audience or None
        )
        return TokenAuth.shared(provider)
    if style == "github_app":
        from runwatch.cloud import GitHubAppInstallation

        _require("jwt", "github")
        found = _GITHUB_TOKEN_URL.match(token_url or "")
        if not found or not username:
            raise ValueError(
                "auth style github_app needs the app id and a token URL "
                "https://api.github.com/app/installations/<installation id>/access_tokens"
            )
        app = GitHubAppInstallation(username, secret, found["installation"], api_url=found["api"])
        return TokenAuth.shared(app)
    return BearerAuth(secret)


def _require(module: str, extra: str) -> None:
    """A cloud style's library is there, or a `ValueError` that says which extra brings it."""
    if importlib.util.find_spec(module.split(".")[0]) is None or importlib.util.find_spec(module) is None:
        raise ValueError(f"this auth style needs {module}: pip install 'runwatch[{extra}]'")


def _cloud_auth(style: str, scope: str | None) -> TokenAuth:
    """azure-identity's `DefaultAzureCredential` or Google's Application Default Credentials."""
    from runwatch.cloud import CLOUD_PLATFORM, AzureCredential, GoogleCredentials

    if style == "google":
        _require("google.auth", "google")
        return TokenAuth.shared(GoogleCredentials(scopes=tuple((scope or CLOUD_PLATFORM).split())))
    if not scope:
        raise ValueError("auth style azure needs a scope (e.g. <resource app id>/.default)")
    _require("azure.identity", "azure")
    from azure.identity import DefaultAzureCredential

    return TokenAuth.shared(AzureCredential(DefaultAzureCredential(), scope))
