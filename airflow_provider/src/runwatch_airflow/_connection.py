"""An Airflow connection of type `runwatch`, read into a `runwatch.RunApi`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit, urlunsplit

import runwatch

if TYPE_CHECKING:
    from airflow.sdk import Connection

__all__ = ["ProfileSpec", "api_from_connection", "base_url", "run_link"]

ProfileSpec = str | Mapping[str, Any]
"""A built-in profile name, a path to a .json/.toml profile, an inline profile dict, or that dict as JSON."""


def api_from_connection(
    conn: Connection,
    extra: Mapping[str, Any],
    profile: ProfileSpec | None = None,
    budget: runwatch.RedisBudget | None = None,
) -> runwatch.RunApi:
    """The run API a connection describes; `profile` (an operator's override) wins over the connection's.

    `budget` is the request budget its `budget_conn_id` names (read by the hook: it is another connection).
    """
    from runwatch_airflow import __version__  # the package is imported whole by now

    return runwatch.RunApi(
        base_url(conn.host, conn.schema, conn.port),
        _profile(profile if profile is not None else _field(extra, "profile")),
        auth=_auth(conn, extra),
        product=f"runwatch-airflow/{__version__}",
        headers=_mapping(extra, "headers"),
        params=_mapping(extra, "params"),
        verify=_verify(_field(extra, "verify")),
        budget=budget,
    )


def base_url(host: str | None, schema: str | None, port: int | None) -> str | None:
    """`host` as a base URL: a full URL is kept (path too), else `schema://host:port` (https by default)."""
    if not host:
        return None
    if "://" in host:
        parts = urlsplit(host)
        if port and parts.port is None:
            parts = parts._replace(netloc=f"{parts.netloc}:{port}")
        return urlunsplit(parts).rstrip("/")
    return f"{schema or 'https'}://{host.strip('/')}{f':{port}' if port else ''}"


def run_link(extra: Mapping[str, Any], run_id: str | None, status_url: str | None) -> str | None:
    """The link a user follows to see a run: the connection's `run_link` template, else the status URL."""
    template = _field(extra, "run_link")
    if template and run_id:
        return str(template).format(run_id=quote(run_id, safe=""))
    return status_url


def _field(extra: Mapping[str, Any], name: str) -> Any:
    # The connection form may store a custom field under its plain name or as `extra__runwatch__<name>`.
    value = extra.get(name)
    return value if value not in (None, "") else extra.get(f"extra__runwatch__{name}") or None


def _profile(value: Any) -> Any:
    if value is None:
        return "standard"
    if isinstance(value, str) and value.lstrip().startswith("{"):
        return json.loads(value)
    return value


def _mapping(extra: Mapping[str, Any], name: str) -> dict[str, str]:
    value = _field(extra, name)
    if isinstance(value, str):
        value = json.loads(value)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"connection extra {name!r} must be a JSON object")
    return {str(k): str(v) for k, v in value.items()}


def _verify(value: Any) -> bool | str:
    if value is None:
        return True
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return value if isinstance(value, (bool, str)) else bool(value)


def _auth(conn: Connection, extra: Mapping[str, Any]) -> runwatch.Auth | None:
    """The core's rule (`runwatch.auth_for`): login is the user name (basic) or the client id (client
    credentials), password the token, password or client secret."""
    style = str(_field(extra, "auth_style") or "bearer")
    try:
        return runwatch.auth_for(
            style,
            conn.password,
            username=conn.login,
            header=_field(extra, "auth_header"),
            token_url=_field(extra, "token_url"),
            scope=_field(extra, "scope"),
            audience=_field(extra, "audience"),
        )
    except ValueError as exc:
        raise ValueError(f"connection {conn.conn_id!r}: {exc}") from None
