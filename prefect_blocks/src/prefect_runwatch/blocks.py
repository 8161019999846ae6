"""`RunStatusApi`: where a run API is and how to authenticate to it."""

from __future__ import annotations

from typing import Any, Literal

from prefect.blocks.core import Block
from pydantic import Field, HttpUrl, SecretStr, field_validator

import runwatch

__all__ = ["DOCS_URL", "RunStatusApi"]

DOCS_URL = HttpUrl("https://github.com/runwatch/runwatch/blob/main/docs/prefect.md")


class RunStatusApi(Block):
    """A run API (its base URL, credentials and profile) that remote runs are started on and read from."""

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
    auth_style: Literal["bearer", "basic", "header"] = Field(
        default="bearer",
        description="How the token is sent: bearer (Authorization header, the profile's scheme), basic "
        "(with username) or header (in auth_header).",
    )
    username: str | None = Field(default=None, description="User name for basic auth.")
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

    @field_validator("profile")
    @classmethod
    def _check_profile(cls, value: str | dict[str, Any]) -> str | dict[str, Any]:
        try:
            runwatch.load_profile(value)
        except runwatch.ProfileError as exc:
            raise ValueError(str(exc)) from None
        return value

    def get_api(self) -> runwatch.RunApi:
        """A runwatch client for this API; it shares the event loop's connection pool."""
        return runwatch.RunApi(
            self.base_url,
            self.profile,
            auth=self._auth(),
            headers=self.headers,
            params=self.params,
            verify=self.verify,
            max_connections=self.max_connections,
        )

    def policy(
        self, policy: runwatch.Policy | dict[str, Any] | None = None, **changes: Any
    ) -> runwatch.Policy:
        """`policy` with this API's request timeout as default, then `changes` (None values are skipped)."""
        given = policy.to_dict() if isinstance(policy, runwatch.Policy) else dict(policy or {})
        chosen = {k: v for k, v in changes.items() if v is not None}
        return runwatch.Policy.from_dict({"request_timeout": self.request_timeout, **given, **chosen})

    def _auth(self) -> runwatch.Auth | None:
        if self.token is None:
            return None
        secret = self.token.get_secret_value()
        if self.auth_style == "basic":
            if not self.username:
                raise ValueError("auth_style 'basic' needs a username")
            return runwatch.BasicAuth(self.username, secret)
        if self.auth_style == "header":
            return runwatch.HeaderAuth(self.auth_header, secret)
        return runwatch.BearerAuth(secret)
