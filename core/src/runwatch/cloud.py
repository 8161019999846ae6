"""Token providers for the clouds, through their own libraries (optional extras; docs/auth.md).

Each is a `TokenProvider`: wrap it in `runwatch.TokenAuth`, which renews the token before it expires and
once more on a 401, one fetch at a time per credential.

- `AzureCredential` (`runwatch[azure]`): any azure-identity credential (`DefaultAzureCredential`, a managed
  identity, a client secret, workload identity), sync or async, for one scope.
- `GoogleCredentials` (`runwatch[google]`): google-auth's credentials, by default Application Default
  Credentials (`google.auth.default()`), refreshed in a thread (google-auth's refresh blocks).
- `GitHubAppInstallation` (`runwatch[github]`): a GitHub App's installation token, from the app id and its
  private key (a JWT signed RS256 with PyJWT, exchanged at `POST /app/installations/{id}/access_tokens`).

Each library is imported when the first token is fetched, so the core needs none of them.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
from collections.abc import Hashable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from runwatch._auth import Token
from runwatch._errors import AccessDenied, BadStatusPayload
from runwatch._urls import redact

if TYPE_CHECKING:
    from runwatch._api import RunApi

__all__ = ["AzureCredential", "GitHubAppInstallation", "GoogleCredentials"]

CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"


class AzureCredential:
    """A token for `scope` (e.g. `"2ff814a6-3304-4ab8-85cb-cd0e6f879c1d/.default"` for Azure Databricks)
    from an azure-identity credential. A sync credential's `get_token` runs in a thread.

    Raises what the credential raises (azure-identity's `ClientAuthenticationError`), which ends the wait.
    """

    def __init__(self, credential: Any, scope: str) -> None:
        self.credential, self.scope = credential, scope

    def __repr__(self) -> str:
        return f"AzureCredential({type(self.credential).__name__}, scope={self.scope!r})"

    @property
    def key(self) -> Hashable:
        """Equal for the same kind of credential and scope (`TokenAuth.shared`)."""
        return ("azure", type(self.credential).__qualname__, self.scope)

    async def fetch(self, api: RunApi) -> Token:
        get_token = self.credential.get_token
        if inspect.iscoroutinefunction(get_token):
            access = await get_token(self.scope)
        else:
            access = await asyncio.to_thread(get_token, self.scope)
        return Token(access.token, float(access.expires_on))  # expires_on: UNIX seconds


class GoogleCredentials:
    """A Google OAuth 2.0 access token from google-auth credentials, refreshed with google-auth's own
    `requests` transport in a thread (its refresh is blocking).

    `credentials` default to Application Default Credentials (`google.auth.default(scopes=scopes)`), looked
    up at the first fetch. Raises google-auth's `DefaultCredentialsError` or `RefreshError`.
    """

    def __init__(self, credentials: Any = None, *, scopes: tuple[str, ...] = (CLOUD_PLATFORM,)) -> None:
        self.credentials, self.scopes = credentials, scopes

    def __repr__(self) -> str:
        return f"GoogleCredentials({type(self.credentials).__name__}, scopes={self.scopes!r})"

    @property
    def key(self) -> Hashable:
        """Equal for Application Default Credentials of the same scopes (`TokenAuth.shared`)."""
        return ("google", id(self.credentials) if self.credentials is not None else None, self.scopes)

    async def fetch(self, api: RunApi) -> Token:
        return await asyncio.to_thread(self._refresh)

    def _refresh(self) -> Token:
        import google.auth
        import google.auth.transport.requests

        if self.credentials is None:
            self.credentials, _ = google.auth.default(scopes=list(self.scopes))
        self.credentials.refresh(google.auth.transport.requests.Request())
        expiry: datetime | None = self.credentials.expiry  # naive, in UTC
        return Token(
            str(self.credentials.token), expiry.replace(tzinfo=timezone.utc).timestamp() if expiry else None
        )


class GitHubAppInstallation:
    """A GitHub App installation token (about an hour): a JWT for the app (`app_id`, RS256 with its PEM
    `private_key`, valid 9 minutes from a minute ago, as GitHub's docs ask) exchanged at
    `{api_url}/app/installations/{installation_id}/access_tokens`, through the watched API's transport.

    Raises `AccessDenied` when GitHub refuses the app (401, 403, 404), `BadStatusPayload` for another answer.
    """

    def __init__(
        self,
        app_id: str | int,
        private_key: str,
        installation_id: str | int,
        *,
        api_url: str = "https://api.github.com",
    ) -> None:
        self.app_id, self._key, self.installation_id = str(app_id), private_key, str(installation_id)
        self.api_url = api_url.rstrip("/")

    def __repr__(self) -> str:
        ids = f"app_id={self.app_id!r}, installation_id={self.installation_id!r}"
        return f"GitHubAppInstallation({ids}, key=***)"

    @property
    def key(self) -> Hashable:
        """Equal for equal settings; holds a digest of the private key, never the key (`TokenAuth.shared`)."""
        digest = hashlib.sha256(self._key.encode()).hexdigest()
        return ("github_app", self.api_url, self.app_id, self.installation_id, digest)

    async def fetch(self, api: RunApi) -> Token:
        import jwt

        now = int(api.clock.time())
        assertion = jwt.encode({"iat": now - 60, "exp": now + 540, "iss": self.app_id}, self._key, "RS256")
        url = f"{self.api_url}/app/installations/{self.installation_id}/access_tokens"
        headers = {
            "Authorization": f"Bearer {assertion}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
        }
        response = await api.post_form(url, b"", headers)
        where = redact(url)
        if response.status in (401, 403, 404):
            raise AccessDenied(f"GitHub refused app {self.app_id} at {where} (HTTP {response.status})")
        if response.status != 201:
            raise BadStatusPayload(f"{where} answered HTTP {response.status}")
        try:
            data: Any = json.loads(response.body)
            value, expires = (
                str(data["token"]),
                datetime.fromisoformat(data["expires_at"].replace("Z", "+00:00")),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            raise BadStatusPayload(f"{where} answered without a token and its expiry") from None
        return Token(value, expires.timestamp())
