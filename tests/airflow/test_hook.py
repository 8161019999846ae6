"""RunStatusHook: a `runwatch` connection read into a RunApi, then real calls to the reference server."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from airflow.sdk import Connection
from airflow.sdk.log import redact

import runwatch
from runwatch.server import ReferenceServer
from runwatch_airflow._connection import api_from_connection, base_url
from runwatch_airflow.hooks.runwatch import RunStatusHook

SCRIPT = [{"status": "RUNNING", "for": 0.2}, {"status": "SUCCEEDED"}]


@pytest.mark.parametrize(
    ("host", "schema", "port", "expected"),
    [
        ("https://api.example.com", None, None, "https://api.example.com"),
        ("https://api.example.com/api/2.1/", None, None, "https://api.example.com/api/2.1"),
        ("http://127.0.0.1", None, 8765, "http://127.0.0.1:8765"),
        ("http://127.0.0.1:9000", None, 8765, "http://127.0.0.1:9000"),
        ("api.example.com", None, None, "https://api.example.com"),
        ("127.0.0.1", "http", 8765, "http://127.0.0.1:8765"),
        (None, None, None, None),
    ],
)
def test_base_url_from_host_schema_and_port(
    host: str | None, schema: str | None, port: int | None, expected: str | None
) -> None:
    assert base_url(host, schema, port) == expected


def api(extra: dict[str, Any], profile: Any = None, **fields: Any) -> runwatch.RunApi:
    conn = Connection(conn_id="x", conn_type="runwatch", host="http://h", **fields)
    return api_from_connection(conn, extra, profile)


def test_profile_from_extras_name_inline_dict_or_json_and_the_override_wins() -> None:
    inline = {"name": "mine", "status_url": "{base_url}/v2/runs/{run_id}", "states": {"DONE": "SUCCEEDED"}}
    assert api({}).profile.name == "standard"
    assert api({"profile": "dbt_cloud"}).profile.name == "dbt-cloud"  # the old name stays an alias
    assert api({"extra__runwatch__profile": "github_actions"}).profile.name == "github-actions"
    assert api({"profile": inline}).status_url("7") == "http://h/v2/runs/7"
    assert api({"profile": json.dumps(inline)}).status_url("7") == "http://h/v2/runs/7"
    assert api({"profile": inline}, profile="standard").status_url("7") == "http://h/runs/7"


@pytest.mark.parametrize(
    ("extra", "fields", "header", "value"),
    [
        ({}, {"password": "t0k"}, "Authorization", "Bearer t0k"),
        ({"auth_style": "basic"}, {"login": "me", "password": "pw"}, "Authorization", "Basic bWU6cHc="),
        # An empty user name is a basic user (an API key alone): the core's rule, as in the Prefect block.
        ({"auth_style": "basic"}, {"login": "", "password": "pw"}, "Authorization", "Basic OnB3"),
        ({"auth_style": "basic"}, {"password": "pw"}, "Authorization", "Basic OnB3"),
        ({"auth_style": "header", "auth_header": "X-Key"}, {"password": "t0k"}, "X-Key", "t0k"),
        ({"auth_style": "header"}, {"password": "t0k"}, "X-Api-Key", "t0k"),
    ],
)
def test_auth_styles(extra: dict[str, Any], fields: dict[str, Any], header: str, value: str) -> None:
    built = api(extra, **fields)
    assert built.request_headers()[header] == value
    assert fields["password"] not in repr(built)


def test_no_password_means_no_auth_and_a_bad_style_is_named() -> None:
    assert "Authorization" not in api({}).request_headers()
    with pytest.raises(ValueError, match=r"auth style.*'oauth'"):
        api({"auth_style": "oauth"}, password="t")


def test_tls_headers_and_url_params_from_extras() -> None:
    built = api({"verify": "false", "headers": '{"X-Team": "data"}', "params": {"account": "42"}})
    assert (built.verify, built.headers, built.params) == (False, {"X-Team": "data"}, {"account": "42"})
    assert api({"verify": "/etc/ca.pem"}).verify == "/etc/ca.pem"
    assert api({}).verify is True
    with pytest.raises(ValueError, match="'headers' must be a JSON object"):
        api({"headers": "[1, 2]"})


@pytest.fixture
def secured(
    runwatch_server_factory: Callable[..., ReferenceServer], connection: Callable[..., str], canary: str
) -> ReferenceServer:
    server = runwatch_server_factory(token=canary)
    connection(host=server.url, password=canary)
    return server


def test_sync_calls_against_a_server_that_needs_the_token(secured: ReferenceServer, canary: str) -> None:
    hook = RunStatusHook()
    started = hook.start_run({"script": SCRIPT}, idempotency_key="k-1")
    again = hook.start_run({"script": SCRIPT}, idempotency_key="k-1")
    assert again.id == started.id and secured.stats()["runs_created"] == 1
    assert hook.get_status(started.id).id == started.id
    assert hook.get_status(started.status_url).id == started.id  # a full URL works too
    hook.cancel_run(started.id)
    time.sleep(0.3)
    assert hook.get_status(started.id).status is runwatch.State.CANCELLED
    assert canary not in repr(hook.get_api())
    assert redact(f"token={canary}") == "token=***"  # Airflow's secrets masker knows the token


async def test_async_calls_never_block_the_loop(secured: ReferenceServer) -> None:
    hook = RunStatusHook()
    lags: list[float] = []

    async def watchdog() -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(0.01)
            lags.append(time.monotonic() - before - 0.01)

    dog = asyncio.create_task(watchdog())
    started = await hook.astart_run({"script": SCRIPT}, idempotency_key="k-2")
    status = await hook.aget_status(started.id)
    await hook.acancel_run(started.id)
    await asyncio.sleep(0.05)
    dog.cancel()
    assert status.id == started.id
    assert max(lags) < 0.2


def test_run_link_uses_the_connection_template_else_the_status_url(
    runwatch_server: ReferenceServer, connection: Callable[..., str]
) -> None:
    connection(host=runwatch_server.url)
    assert RunStatusHook().run_link("r-1") == f"{runwatch_server.url}/runs/r-1"
    connection(
        host=runwatch_server.url, extra=json.dumps({"run_link": "https://ui.example.com/runs/{run_id}"})
    )
    assert RunStatusHook().run_link("r 1") == "https://ui.example.com/runs/r%201"


def test_test_connection_reads_the_api_with_the_token(
    runwatch_server_factory: Callable[..., ReferenceServer], connection: Callable[..., str], canary: str
) -> None:
    server = runwatch_server_factory(token=canary, retry_after=0)
    connection(host=server.url, password=canary)
    ok, message = RunStatusHook().test_connection()
    assert ok, message
    assert message.startswith(f"{server.url}/runs/runwatch-connection-test answered 404")
    assert server.stats()["requests_total"] == 1  # one cheap read, no retries


def test_test_connection_reports_a_wrong_token(
    runwatch_server_factory: Callable[..., ReferenceServer], connection: Callable[..., str], canary: str
) -> None:
    server = runwatch_server_factory(token=canary, retry_after=0)
    connection(host=server.url, password="not-the-token")
    ok, message = RunStatusHook().test_connection()
    assert not ok
    assert message.startswith("the API refused the credentials: access denied to ")
    assert "HTTP 401" in message and "not-the-token" not in message and canary not in message


def test_test_connection_reports_a_wrong_port(
    runwatch_server: ReferenceServer, connection: Callable[..., str]
) -> None:
    host, port = runwatch_server.url.rsplit(":", 1)
    runwatch_server.stop()  # nothing listens there any more: a wrong port
    connection(host=f"{host}:{port}")
    ok, message = RunStatusHook().test_connection()
    assert not ok
    assert message.startswith("could not read the API: GET ") and "Cannot connect to host" in message


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"host": "http://127.0.0.1:9", "extra": json.dumps({"profile": "nope"})}, "nope"),
        ({"host": "http://127.0.0.1:99999"}, "InvalidURL: base URL 'http://127.0.0.1:99999' has a bad port"),
    ],
)
def test_test_connection_reports_bad_settings_without_a_request(
    connection: Callable[..., str], fields: dict[str, Any], says: str
) -> None:
    connection(**fields)
    ok, message = RunStatusHook().test_connection()
    assert not ok and says in message
