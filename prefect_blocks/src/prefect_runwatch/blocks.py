"""`RunStatusApi`: where a run API is and how to authenticate to it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import unquote, urlsplit, urlunsplit

from prefect.blocks.core import Block
from pydantic import ConfigDict, Field, HttpUrl, SecretStr, field_validator, model_validator

import runwatch

__all__ = ["DOCS_URL", "RunStatusApi"]

DOCS_URL = HttpUrl("https://github.com/runwatch/runwatch/blob/main/docs/prefect.md")


class RunStatusApi(Block):
    """A run API (its base URL, credentials and profile) that remote runs are started on and read from."""

    # A validation error must not quote what it was given: the input may hold a token or a password.
    model_config = ConfigDict(hide_input_in_errors=True)

    _block_type_name = "runwatch Run Status API"
    _block_type_slug = "runwatch-run-status-api"
    _description = (
        "Connection to a run API (a job service, dbt Cloud, Databricks, an internal batch API...): base URL, "
        "credentials and the runwatch profile that maps its status payloads onto runwatch's model."
    )
    _documentation_url = DOCS_URL
    _code_example = """
```python
from prefect_runwatch import RunStatusApi

api_block = RunStatusApi.load("BLOCK_NAME")
api = api_block.get_api()  # a runwatch.RunApi
```
"""

    base_url: str | None = Field(
        default=None,
        description="Base URL of the run API, e.g. https://jobs.example.com; may be empty when runs are "
        "given as full status URLs.",
    )
    token: SecretStr | None = Field(
        default=None,
        description="Secret sent with every request as auth_style says: a bearer token, a password "
        "or an API key.",
    )
    auth_style: Literal[
        "bearer", "basic", "header", "client_credentials", "azure", "google", "github_app"
    ] = Field(
        default="bearer",
        description="How the token is sent: bearer (Authorization header, the profile's scheme), basic "
        "(with username), header (in auth_header), or client_credentials (OAuth 2.0: username is the client "
        "id, token the client secret; access tokens come from token_url and are renewed before they expire), "
        "azure (azure-identity's DefaultAzureCredential for scope), google (Application Default Credentials) "
        "or github_app (username is the app id, token its private key, token_url the installation's "
        "access_tokens URL); these three need runwatch[azure], [google] or [github].",
    )
    username: str | None = Field(
        default=None, description="User name for basic auth, or the client id for client_credentials."
    )
    token_url: str | None = Field(default=None, description="OAuth 2.0 token endpoint (client_credentials).")
    scope: str | None = Field(default=None, description="OAuth 2.0 scope, if the provider wants one.")
    audience: str | None = Field(default=None, description="OAuth 2.0 audience, if the provider wants one.")
    auth_header: str = Field(
        default="X-Api-Key", description="Header that carries the token when auth_style is header."
    )
    profile: str | dict[str, Any] = Field(
        default="standard",
        description="A built-in runwatch profile name (see `runwatch profiles`) or an inline profile as a "
        "JSON object.",
    )
    verify: bool | str = Field(
        default=True, description="TLS certificate verification: true, false, or the path of a CA bundle."
    )
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="Extra headers sent with every request; not for secrets (put those in token).",
    )
    params: dict[str, str] = Field(
        default_factory=dict,
        description="Values for the placeholders of the profile's URL templates, e.g. an account id.",
    )
    request_timeout: float = Field(default=30.0, gt=0, description="Seconds to wait for one HTTP answer.")
    max_connections: int = Field(
        default=100,
        gt=0,
        description="Most open connections to this API per event loop, shared by all waits.",
    )
    budget_url: SecretStr | None = Field(
        default=None,
        description="redis:// (or rediss://) URL of the Redis that holds one request budget for this API, "
        "shared by every flow, task and watcher that uses the block; it may hold a password. Empty: no "
        "shared budget. Needs prefect-runwatch[redis].",
    )
    budget_rate: float | None = Field(
        default=None,
        gt=0,
        description="Requests per second to this API from all processes together (with budget_url).",
    )
    budget_burst: int = Field(
        default=1, ge=1, description="Requests all processes may send at once before budget_rate applies."
    )

    @model_validator(mode="before")
    @classmethod
    def _userinfo_to_basic(cls, data: Any) -> Any:
        # A block's plain fields are published in Prefect's own block-document events: a password in the base
        # URL would be shown there. It moves to the secret `token` (basic auth) before the block exists.
        if not isinstance(data, dict) or not isinstance(data.get("base_url"), str):
            return data
        parts = urlsplit(data["base_url"])
        if "@" not in parts.netloc:
            return data
        userinfo, _, hostport = parts.netloc.rpartition("@")
        user, _, password = userinfo.partition(":")
        if data.get("token"):
            raise ValueError(
                "base_url holds credentials and token is set too: give them as username and token"
            )
        clean = urlunsplit((parts.scheme, hostport, parts.path, parts.query, parts.fragment))
        return {
            **data,
            "base_url": clean,
            "auth_style": "basic",
            "username": unquote(user),
            "token": unquote(password),
        }

    @field_validator("budget_url")
    @classmethod
    def _check_budget_url(cls, value: SecretStr | None) -> SecretStr | None:
        # Checked here, not at the first request: redis-py would only refuse it in the middle of a wait.
        if value is not None and urlsplit(value.get_secret_value()).scheme not in ("redis", "rediss", "unix"):
            raise ValueError("budget_url must be a redis://, rediss:// or unix:// URL")
        return value

    @model_validator(mode="after")
    def _whole_budget(self) -> RunStatusApi:
        if (self.budget_url is None) != (self.budget_rate is None):
            raise ValueError(
                "budget_url and budget_rate go together: give both for a shared budget, or neither"
            )
        return self

    @field_validator("profile")
    @classmethod
    def _check_profile(cls, value: str | dict[str, Any]) -> str | dict[str, Any]:
        try:
            runwatch.load_profile(value)
        except runwatch.ProfileError as exc:
            raise ValueError(str(exc)) from None
        return value

    def get_api(self) -> runwatch.RunApi:
        """A runwatch client for this API; it shares the event loop's connection pool, and the process's
        request budget when `budget_url` is set. Raises `runwatch.ConfigurationError` when the budget needs
        the redis package (`pip install 'prefect-runwatch[redis]'`)."""
        from prefect_runwatch import __version__  # the package is imported whole by now

        return runwatch.RunApi(
            self.base_url,
            self.profile,
            auth=self._auth(),
            product=f"prefect-runwatch/{__version__}",
            headers=self.headers,
            params=self.params,
            verify=self.verify,
            max_connections=self.max_connections,
            budget=self._budget(),
        )

    def policy(
        self, policy: runwatch.Policy | Mapping[str, Any] | None = None, **changes: Any
    ) -> runwatch.Policy:
        """`policy` with this API's request timeout as default, then `changes` (None values are skipped)."""
        given = policy.to_dict() if isinstance(policy, runwatch.Policy) else dict(policy or {})
        chosen = {k: v for k, v in changes.items() if v is not None}
        return runwatch.Policy.from_dict({"request_timeout": self.request_timeout, **given, **chosen})

    def _budget(self) -> runwatch.RedisBudget | None:
        # One per process for the same settings: every get_api() (each wait, the watcher's) queues for it.
        if self.budget_url is None or self.budget_rate is None:
            return None
        url = self.budget_url.get_secret_value()
        return runwatch.RedisBudget.shared(url, rate=self.budget_rate, burst=self.budget_burst)

    def _auth(self) -> runwatch.Auth | None:
        # The core's rule, shared with the Airflow connection (an empty user name is a valid basic user).
        return runwatch.auth_for(
            self.auth_style,
            self.token.get_secret_value() if self.token is not None else None,
            username=self.username,
            header=self.auth_header,
            token_url=self.token_url,
            scope=self.scope,
            audience=self.audience,
        )
