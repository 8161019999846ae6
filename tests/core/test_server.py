"""The reference server, over real HTTP on 127.0.0.1 (aiohttp and urllib as clients, never the waiter)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from runwatch import webhooks
from runwatch.server import ReferenceServer, ReferenceServerError, create_app, serve

pytestmark = pytest.mark.runwatch_server(retry_after=0.05, cancel_delay=0.1)

FAST = [
    {"status": "QUEUED", "for": 0.05},
    {"status": "RUNNING", "for": 0.15, "progress": {"percent": 50.0, "message": "half way"}},
    {
        "status": "SUCCEEDED",
        "output_ref": "s3://bucket/out.parquet",
        "errors": [{"code": "W1", "message": "2 rows skipped"}],
    },
]
RUNNING_FOREVER = [{"status": "RUNNING"}]


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def call(
    session: aiohttp.ClientSession, method: str, url: str, **kwargs: Any
) -> tuple[int, Any, aiohttp.typedefs.LooseHeaders]:
    async with session.request(method, url, **kwargs) as response:
        raw = await response.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw
        return response.status, body, response.headers


async def create(
    session: aiohttp.ClientSession, server: ReferenceServer, body: Any = None, **kwargs: Any
) -> tuple[int, dict[str, Any], Any]:
    status, payload, headers = await call(session, "POST", f"{server.url}/runs", json=body, **kwargs)
    return status, payload, headers


# ------------------------------------------------------------------------------------------------ runs


async def test_create_answers_202_with_location_retry_after_and_status(
    http: aiohttp.ClientSession, runwatch_server: ReferenceServer
) -> None:
    status, body, headers = await create(http, runwatch_server, {"script": FAST})
    assert status == 202
    assert body["id"].startswith("r-")
    assert headers["Location"] == body["url"] == f"{runwatch_server.url}/runs/{body['id']}"
    assert headers["Retry-After"] == "0.05"  # the server's configured first-poll hint
    assert body["status"] == "QUEUED"
    assert body["version"] == 1 and headers["ETag"] == '"v1"'
    assert body["created_at"].endswith("+00:00")
    assert body["created_at"] == body["updated_at"]
    assert body["started_at"] is body["ended_at"] is body["duration"] is body["executor"] is None
    assert body["output_ref"] is None
    assert body["errors"] == []
    assert runwatch_server.stats()["runs_created"] == 1


@pytest.mark.runwatch_server()
async def test_default_first_poll_hint_is_one_second_and_default_script(
    http: aiohttp.ClientSession, runwatch_server: ReferenceServer
) -> None:
    status, body, headers = await create(http, runwatch_server)
    assert (status, headers["Retry-After"], body["status"]) == (202, "1", "QUEUED")
    # the default script runs QUEUED (0.1 s) -> RUNNING (1 s) -> SUCCEEDED
    status, body, _ = await call(http, "GET", f"{body['url']}?wait=2")
    assert (status, body["status"], body["executor"]) == (200, "RUNNING", "ref-worker-1")
    # a run may set its own first-poll hint
    _, _, headers = await create(http, runwatch_server, {"retry_after": 2.5})
    assert headers["Retry-After"] == "2.5"


async def test_scripted_lifecycle_is_served_with_exact_fields(
    http: aiohttp.ClientSession, runwatch_server: ReferenceServer
) -> None:
    script = [dict(FAST[0]), {**FAST[1], "for": 0.4}, FAST[2]]
    _, run, _ = await create(http, runwatch_server, {"script": script})
    _, running, _ = await call(http, "GET", f"{run['url']}?wait=5", headers={"If-None-Match": '"v1"'})
    assert running["status"] == "RUNNING"
    assert running["version"] == 2
    assert running["progress"] == {
        "percent": 50.0,
        "items_done": None,
        "items_total": None,
        "message": "half way",
    }
    assert running["started_at"] is not None and running["ended_at"] is None
    assert running["executor"] == "ref-worker-1"
    assert running["output_ref"] is None
    assert iso(running["started_at"]) - iso(run["created_at"]) == pytest.approx(0.05, abs=1e-3)
    _, done, _ = await call(http, "GET", f"{run['url']}?wait=5", headers={"If-None-Match": '"v2"'})
    assert done["status"] == "SUCCEEDED"
    assert done["version"] == 3
    assert done["output_ref"] == "s3://bucket/out.parquet"
    assert done["errors"] == [
        {"code": "W1", "message": "2 rows skipped", "retriable": False, "category": "logic"}
    ]
    assert done["duration"] == pytest.approx(0.4, abs=1e-3)
    assert done["ended_at"] == done["updated_at"]
    assert done["created_at"] == run["created_at"]


async def test_unknown_run_is_404_json(http: aiohttp.ClientSession, runwatch_server: ReferenceServer) -> None:
    status, body, headers = await call(http, "GET", f"{runwatch_server.url}/runs/r-nope")
    assert (status, body) == (404, {"error": "no such run"})
    assert headers["Content-Type"] == "application/json"
    status, body, _ = await call(http, "GET", f"{runwatch_server.url}/nowhere")
    assert status == 404 and "error" in body
    status, body, _ = await call(http, "DELETE", f"{runwatch_server.url}/runs")
    assert status == 405 and "error" in body


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"script": [{"status": "DONE"}]}, "script[0].status"),
        ({"script": [{"status": "QUEUED"}, {"status": "SUCCEEDED"}]}, "script[0].for"),
        ({"script": [{"status": "QUEUED", "for": -1}, {"status": "SUCCEEDED"}]}, "script[0].for"),
        ({"script": [{"status": "SUCCEEDED", "duraton": 1}]}, "script[0].duraton"),
        ({"script": []}, "script"),
        ({"script": [{"status": "FAILED", "errors": [{"code": "E"}]}]}, "script[0].errors[0].message"),
        ({"script": [{"status": "RUNNING", "progress": {"percent": "lots"}}]}, "script[0].progress.percent"),
        ({"heartbeat_every": 0}, "heartbeat_every"),
        ({"not_found_for": "soon"}, "not_found_for"),
        ({"faults": {"rate_limit": {"first": 1, "every": 2}}}, "faults.rate_limit"),
        ({"faults": {"errors_5xx": {"first": 1, "status": 418}}}, "faults.errors_5xx.status"),
        ({"faults": {"malformed": {"every": 1, "shape": "odd"}}}, "faults.malformed.shape"),
        ({"webhook": {"duplicate": "yes"}}, "webhook.duplicate"),
        ({"colour": "blue"}, "body.colour"),
        ([1, 2], "body"),
    ],
)
async def test_bad_bodies_are_422_naming_the_field(
    http: aiohttp.ClientSession, runwatch_server: ReferenceServer, body: Any, field: str
) -> None:
    status, answer, _ = await create(http, runwatch_server, body)
    assert status == 422
    assert answer["error"].startswith(field + ":") or answer["error"].startswith(field + " "), answer
    assert runwatch_server.stats()["runs_created"] == 0


async def test_invalid_json_is_422(http: aiohttp.ClientSession, runwatch_server: ReferenceServer) -> None:
    status, answer, _ = await create(
        http, runwatch_server, data=b"{nope", headers={"content-type": "application/json"}
    )
    assert (status, answer) == (422, {"error": "body: not valid JSON"})


async def test_idempotency_key_same_body_same_run_other_body_422(
    http: aiohttp.ClientSession, runwatch_server: ReferenceServer
) -> None:
    key = {"Idempotency-Key": "airflow-try-1"}
    s1, first, h1 = await create(http, runwatch_server, {"script": FAST, "metadata": {"a": 1}}, headers=key)
    # same body (keys in another order) -> the same run, again 202 with the same Location
    s2, again, h2 = await create(http, runwatch_server, {"metadata": {"a": 1}, "script": FAST}, headers=key)
    assert (s1, s2) == (202, 202)
    assert again["id"] == first["id"] and h2["Location"] == h1["Location"]
    assert h2["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in h1
    s3, conflict, _ = await create(http, runwatch_server, {"script": FAST}, headers=key)
    assert s3 == 422 and "Idempotency-Key" in conflict["error"]
    # another key is another run
    _, other, _ = await create(http, runwatch_server, {"script": FAST}, headers={"Idempotency-Key": "k2"})
    assert other["id"] != first["id"]
    stats = runwatch_server.stats()
    assert stats["runs_created"] == 2
    assert stats["runs"][first["id"]]["POST"] == 2


# ------------------------------------------------------------------------------------------------ ETag and long polling


async def test_etag_and_if_none_match_304(
    http: aiohttp.ClientSession, runwatch_server: ReferenceServer
) -> None:
    _, run, _ = await create(http, runwatch_server, {"script": RUNNING_FOREVER})
    status, body, headers = await call(http, "GET", run["url"])
    etag = headers["ETag"]
    assert status == 200 and etag == f'"v{body["version"]}"'
    for inm in (etag, f"W/{etag}", f'"v999", {etag}', "*"):
        async with http.get(run["url"], headers={"If-None-Match": inm}) as response:
            assert response.status == 304, inm
            assert response.headers["ETag"] == etag
            assert await response.read() == b""
    status, _, _ = await call(http, "GET", run["url"], headers={"If-None-Match": '"v0"'})
    assert status == 200
    assert runwatch_server.stats()["runs"][run["id"]]["304"] == 4


async def test_long_poll_query_returns_at_the_change(
    http: aiohttp.ClientSession, runwatch_server: ReferenceServer
) -> None:
    script = [{"status": "RUNNING", "for": 0.3}, {"status": "SUCCEEDED"}]
    _, run, _ = await create(http, runwatch_server, {"script": script})
    t0 = time.monotonic()
    status, body, headers = await call(http, "GET", f"{run['url']}?wait=5", headers={"If-None-Match": '"v1"'})
    elapsed = time.monotonic() - t0
    assert (status, body["status"], headers["ETag"]) == (200, "SUCCEEDED", '"v2"')
    assert 0.2 < elapsed < 1.5
    assert "Preference-Applied" not in headers


async def test_long_poll_timeout_with_if_none_match_is_304(
    http: aiohttp.ClientSession, runwatch_server: ReferenceServer
) -> None:
    _, run, _ = await create(http, runwatch_server, {"script": RUNNING_FOREVER})
    t0 = time.monotonic()
    status, body, headers = await call(
        http, "GET", f"{run['url']}?wait=0.3", headers={"If-None-Match": '"v1"'}
    )
    assert (status, body, headers["ETag"]) == (304, None, '"v1"')
    assert 0.25 < time.monotonic() - t0 < 1.5
    # a stale If-None-Match answers at once
    t0 = time.monotonic()
    status, body, _ = await call(http, "GET", f"{run['url']}?wait=5", headers={"If-None-Match": '"v0"'})
    assert status == 200 and time.monotonic() - t0 < 0.5


async def test_long_poll_prefer_wait_without_etag(
    http: aiohttp.ClientSession, runwatch_server: ReferenceServer
) -> None:
    _, run, _ = await create(
        http, runwatch_server, {"script": [{"status": "QUEUED", "for": 0.25}, {"status": "RUNNING"}]}
    )
    t0 = time.monotonic()
    status, body, headers = await call(http, "GET", run["url"], headers={"Prefer": "respond-async, wait=5"})
    assert (status, body["status"]) == (200, "RUNNING")  # held from arrival until the change
    assert 0.15 < time.monotonic() - t0 < 1.5
    assert headers["Preference-Applied"] == "wait=5"
    # timeout without If-None-Match -> 200 with the current body
    t0 = time.monotonic()
    status, body, headers = await call(http, "GET", run["url"], headers={"Prefer": "wait=0.2"})
    assert (status, body["status"], body["version"]) == (200, "RUNNING", 2)
    assert 0.15 < time.monotonic() - t0 < 1.5
    assert headers["Preference-Applied"] == "wait=0.2"


@pytest.mark.runwatch_server(max_wait=0.2)
async def test_long_poll_is_capped(http: aiohttp.ClientSession, runwatch_server: ReferenceServer) -> None:
    _, run, _ = await create(http, runwatch_server, {"script": RUNNING_FOREVER})
    t0 = time.monotonic()
    status, _, headers = await call(
        http, "GET", run["url"], headers={"Prefer": "wait=100", "If-None-Match": '"v1"'}
    )
    assert status == 304 and headers["Preference-Applied"] == "wait=0.2"
    assert time.monotonic() - t0 < 1.5
    status, _, _ = await call(http, "GET", f"{run['url']}?wait=100", headers={"If-None-Match": '"v1"'})
    assert status == 304 and time.monotonic() - t0 < 2.5
    status, body, _ = await call(http, "GET", f"{run['url']}?wait=soon")
    assert status == 400 and "wait" in body["error"]


async def test_long_poll_on_a_terminal_run_without_etag_answers_at_once(
    http: aiohttp.ClientSession, runwatch_server: ReferenceServer
) -> None:
    _, run, _ = await create(http, runwatch_server, {"script": [{"status": "SUCCEEDED"}]})
    t0 = time.monotonic()
    status, body, _ = await call(http, "GET", f"{run['url']}?wait=5")
    assert (status, body["status"]) == (200, "SUCCEEDED") and time.monotonic() - t0 < 0.5
    # with If-None-Match it is held like any other (a scripted run might still regress)
    status, _, _ = await call(http, "GET", f"{run['url']}?wait=0.2", headers={"If-None-Match": '"v1"'})
    assert status == 304


async def test_many_long_polls_wake_together(
    http: aiohttp.ClientSession, runwatch_server: ReferenceServer
) -> None:
    script = [{"status": "RUNNING", "for": 0.3}, {"status": "FAILED", "errors": [{"message": "boom"}]}]
    _, run, _ = await create(http, runwatch_server, {"script": script})
    t0 = time.monotonic()
    results = await asyncio.gather(
        *(call(http, "GET", f"{run['url']}?wait=5", headers={"If-None-Match": '"v1"'}) for _ in range(50))
    )
    assert {(status, body["status"]) for status, body, _ in results} == {(200, "FAILED")}
    assert time.monotonic() - t0 < 2.0


# ------------------------------------------------------------------------------------------------ cancel


async def test_cancel_goes_cancelling_then_cancelled(
    http: aiohttp.ClientSession, runwatch_server: ReferenceServer
) -> None:
    _, run, _ = await create(
        http, runwatch_server, {"script": [{"status": "RUNNING", "for": 10}, {"status": "SUCCEEDED"}]}
    )
    status, body, headers = await call(http, "POST", f"{run['url']}/cancel")
    assert (status, body["status"], body["version"]) == (202, "CANCELLING", 2)
    assert headers["Location"] == run["url"]
    status, body, _ = await call(http, "POST", f"{run['url']}/cancel")  # while cancelling: accepted again
    assert (status, body["status"]) == (202, "CANCELLING")
    status, body, _ = await call(http, "GET", f"{run['url']}?wait=2", headers={"If-None-Match": '"v2"'})
    assert (status, body["status"], body["version"]) == (200, "CANCELLED", 3)
    assert body["ended_at"] is not None and body["output_ref"] is None
    status, body, _ = await call(http, "POST", f"{run['url']}/cancel")
    assert status == 409 and body["status"] == "CANCELLED"
    status, _, _ = await call(http, "POST", f"{runwatch_server.url}/runs/r-nope/cancel")
    assert status == 404
    assert runwatch_server.stats()["runs"][run["id"]]["cancel"] == 3


async def test_cancel_a_terminal_run_is_409(
    http: aiohttp.ClientSession, runwatch_server: ReferenceServer
) -> None:
    _, run, _ = await create(http, runwatch_server, {"script": [{"status": "SUCCEEDED"}]})
    status, body, _ = await call(http, "POST", f"{run['url']}/cancel")
    assert (status, body["status"]) == (409, "SUCCEEDED")


# ------------------------------------------------------------------------------------------------ auth


@pytest.mark.runwatch_server(token="tok-3f9a2c")
async def test_bearer_token(http: aiohttp.ClientSession, runwatch_server: ReferenceServer) -> None:
    url = f"{runwatch_server.url}/runs"
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic tok-3f9a2c"}):
        async with http.post(url, json={}, headers=headers) as response:
            text = await response.text()
            assert response.status == 401
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            assert "tok-3f9a2c" not in text and "tok-3f9a2c" not in str(response.headers)
            assert json.loads(text) == {"error": "missing or invalid bearer token"}
    status, run, _ = await call(http, "POST", url, json={}, headers={"Authorization": "Bearer tok-3f9a2c"})
    assert status == 202
    status, _, _ = await call(http, "GET", run["url"])
    assert status == 401
    # the helpers carry the token
    assert runwatch_server.get_run(run["id"])["id"] == run["id"]
    assert runwatch_server.stats()["runs_created"] == 1


# ------------------------------------------------------------------------------------------------ scripted misbehaviour


async def test_illegal_regression_is_served_as_written(
    http: aiohttp.ClientSession, runwatch_server: ReferenceServer
) -> None:
    script = [
        {
            "status": "FAILED",
            "for": 0.1,
            "errors": [{"message": "oops", "retriable": True, "category": "infrastructure"}],
        },
        {"status": "RUNNING"},
    ]
    _, run, _ = await create(http, runwatch_server, {"script": script})
    assert run["status"] == "FAILED" and run["errors"][0]["category"] == "infrastructure"
    status, body, _ = await call(http, "GET", f"{run['url']}?wait=2", headers={"If-None-Match": '"v1"'})
    assert (status, body["status"], body["version"], body["ended_at"]) == (200, "RUNNING", 2, None)


async def test_heartbeats_bump_version_and_etag(
    http: aiohttp.ClientSession, runwatch_server: ReferenceServer
) -> None:
    _, run, _ = await create(http, runwatch_server, {"script": RUNNING_FOREVER, "heartbeat_every": 0.05})
    assert run["heartbeat_at"] == run["started_at"] == run["created_at"]
    await asyncio.sleep(0.28)
    _, body, headers = await call(http, "GET", run["url"])
    assert body["status"] == "RUNNING"
    # version = 1 + one per heartbeat stamped every 0.05 s since the start
    since_start = iso(body["heartbeat_at"]) - iso(body["started_at"])
    assert body["version"] >= 5 and body["version"] - 1 == round(since_start / 0.05)
    assert body["heartbeat_at"] > run["heartbeat_at"] and body["updated_at"] == body["heartbeat_at"]
    assert headers["ETag"] == f'"v{body["version"]}"'
    # a long poll wakes on a heartbeat
    status, nxt, _ = await call(
        http, "GET", f"{run['url']}?wait=2", headers={"If-None-Match": headers["ETag"]}
    )
    assert status == 200 and nxt["version"] > body["version"]


async def test_stop_heartbeat_after_freezes_a_running_zombie(
    http: aiohttp.ClientSession, runwatch_server: ReferenceServer
) -> None:
    script = [{"status": "QUEUED", "for": 0.02}, {"status": "RUNNING", "for": 0.1}, {"status": "SUCCEEDED"}]
    _, run, _ = await create(
        http, runwatch_server, {"script": script, "heartbeat_every": 0.05, "stop_heartbeat_after": 0.12}
    )
    await asyncio.sleep(0.3)
    _, first, h1 = await call(http, "GET", run["url"])
    assert first["status"] == "RUNNING" and first["ended_at"] is None  # the script said SUCCEEDED at 0.12 s
    await asyncio.sleep(0.2)
    _, later, h2 = await call(http, "GET", run["url"])
    assert later == first and h1["ETag"] == h2["ETag"]  # no heartbeat, no change: frozen
    # RUNNING at t0+0.02, heartbeats at +0.05 and +0.10, none from +0.12 on
    assert later["version"] == 4
    status, _, _ = await call(http, "GET", f"{run['url']}?wait=0.2", headers={"If-None-Match": h2["ETag"]})
    assert status == 304


async def test_not_found_for_a_while_after_creation(
    http: aiohttp.ClientSession, runwatch_server: ReferenceServer
) -> None:
    _, run, _ = await create(http, runwatch_server, {"script": RUNNING_FOREVER, "not_found_for": 0.5})
    status, body, _ = await call(http, "GET", run["url"])
    assert (status, body) == (404, {"error": "no such run"})
    await asyncio.sleep(0.55)
    status, body, _ = await call(http, "GET", run["url"])
    assert (status, body["status"]) == (200, "RUNNING")
    assert runwatch_server.stats()["runs"][run["id"]]["404"] == 1


# ------------------------------------------------------------------------------------------------ faults


async def statuses(http: aiohttp.ClientSession, url: str, n: int) -> list[int]:
    return [(await call(http, "GET", url))[0] for _ in range(n)]


async def test_rate_limit_first_n_with_retry_after_seconds(
    http: aiohttp.ClientSession, runwatch_server: ReferenceServer
) -> None:
    faults = {"rate_limit": {"first": 2, "retry_after": 0.5}}
    _, run, _ = await create(http, runwatch_server, {"script": RUNNING_FOREVER, "faults": faults})
    status, body, headers = await call(http, "GET", run["url"])
    assert (status, headers["Retry-After"]) == (429, "0.5") and "error" in body
    assert await statuses(http, run["url"], 3) == [429, 200, 200]
    assert runwatch_server.stats()["runs"][run["id"]]["429"] == 2


async def test_rate_limit_every_n_with_http_date(
    http: aiohttp.ClientSession, runwatch_server: ReferenceServer
) -> None:
    faults = {"rate_limit": {"every": 3, "retry_after": 30, "retry_after_date": True}}
    _, run, _ = await create(http, runwatch_server, {"script": RUNNING_FOREVER, "faults": faults})
    assert await statuses(http, run["url"], 2) == [200, 200]
    status, _, headers = await call(http, "GET", run["url"])
    assert status == 429
    delay = parsedate_to_datetime(headers["Retry-After"]).timestamp() - time.time()
    assert 28 < delay <= 32
    assert await statuses(http, run["url"], 3) == [200, 200, 429]


async def test_ratelimit_headers_count_honestly(
    http: aiohttp.ClientSession, runwatch_server: ReferenceServer
) -> None:
    faults = {"ratelimit_headers": {"quota": 3, "window": 60}}
    _, run, _ = await create(http, runwatch_server, {"script": RUNNING_FOREVER, "faults": faults})
    seen = []
    for _ in range(3):
        status, _, headers = await call(http, "GET", run["url"])
        assert status == 200 and headers["RateLimit-Policy"] == '"default";q=3;w=60'
        seen.append(headers["RateLimit"])
    assert [s.split(";")[1] for s in seen] == ["r=2", "r=1", "r=0"]
    assert all(59 <= int(s.split("t=")[1]) <= 60 for s in seen)
    status, _, headers = await call(http, "GET", run["url"])
    assert status == 429 and headers["RateLimit"].startswith('"default";r=0;')
    assert 59 <= int(headers["Retry-After"]) <= 60


async def test_ratelimit_window_resets(http: aiohttp.ClientSession, runwatch_server: ReferenceServer) -> None:
    runwatch_server.set_faults(ratelimit_headers={"quota": 2, "window": 0.6})
    _, a, _ = await create(http, runwatch_server, {"script": RUNNING_FOREVER})
    _, b, _ = await create(http, runwatch_server, {"script": RUNNING_FOREVER})
    # the global quota is one counter for the whole server
    assert [await statuses(http, a["url"], 1), await statuses(http, b["url"], 2)] == [[200], [200, 429]]
    await asyncio.sleep(0.65)
    status, _, headers = await call(http, "GET", b["url"])
    assert status == 200 and headers["RateLimit"].startswith('"default";r=1;t=0.')


async def test_errors_5xx_first_and_every(
    http: aiohttp.ClientSession, runwatch_server: ReferenceServer
) -> None:
    _, a, _ = await create(
        http,
        runwatch_server,
        {"script": RUNNING_FOREVER, "faults": {"errors_5xx": {"first": 2, "status": 502}}},
    )
    assert await statuses(http, a["url"], 3) == [502, 502, 200]
    _, b, _ = await create(
        http,
        runwatch_server,
        {"script": RUNNING_FOREVER, "faults": {"errors_5xx": {"every": 2, "retry_after": 2}}},
    )
    status, _, headers = await call(http, "GET", b["url"])
    assert status == 200
    status, _, headers = await call(http, "GET", b["url"])
    assert (status, headers["Retry-After"]) == (503, "2")
    assert runwatch_server.stats()["runs"][a["id"]]["5xx"] == 2


async def test_latency(http: aiohttp.ClientSession, runwatch_server: ReferenceServer) -> None:
    _, run, _ = await create(http, runwatch_server, {"script": RUNNING_FOREVER, "faults": {"latency": 0.2}})
    t0 = time.monotonic()
    status, _, _ = await call(http, "GET", run["url"])
    assert status == 200 and 0.2 <= time.monotonic() - t0 < 1.0


async def test_drop_cuts_the_connection_mid_response(
    http: aiohttp.ClientSession, runwatch_server: ReferenceServer, caplog: pytest.LogCaptureFixture
) -> None:
    _, run, _ = await create(
        http, runwatch_server, {"script": RUNNING_FOREVER, "faults": {"drop": {"first": 1}}}
    )
    async with http.get(run["url"]) as response:
        assert response.status == 200 and response.headers["Content-Length"] == "4096"
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()
    status, body, _ = await call(http, "GET", run["url"])
    assert (status, body["status"]) == (200, "RUNNING")
    assert runwatch_server.stats()["runs"][run["id"]]["drop"] == 1
    assert "Exception in ASGI application" not in caplog.text  # deliberate drops are not logged as errors


async def test_malformed_bodies(http: aiohttp.ClientSession, runwatch_server: ReferenceServer) -> None:
    _, a, _ = await create(
        http, runwatch_server, {"script": RUNNING_FOREVER, "faults": {"malformed": {"first": 1}}}
    )
    async with http.get(a["url"]) as response:
        assert response.status == 200 and response.content_type == "application/json"
        with pytest.raises(ValueError):
            json.loads(await response.read())
    status, body, _ = await call(http, "GET", a["url"])
    assert (status, body["status"]) == (200, "RUNNING")
    _, b, _ = await create(
        http,
        runwatch_server,
        {"script": RUNNING_FOREVER, "faults": {"malformed": {"every": 1, "shape": "wrong"}}},
    )
    status, body, _ = await call(http, "GET", b["url"])
    assert status == 200 and isinstance(body, dict) and "status" not in body
    assert runwatch_server.stats()["runs"][b["id"]]["malformed"] == 1


async def test_malformed_answers_still_spend_the_quota(
    http: aiohttp.ClientSession, runwatch_server: ReferenceServer
) -> None:
    faults = {"malformed": {"first": 1}, "ratelimit_headers": {"quota": 1, "window": 60}}
    _, run, _ = await create(http, runwatch_server, {"script": RUNNING_FOREVER, "faults": faults})
    status, body, headers = await call(http, "GET", run["url"])
    assert status == 200 and isinstance(body, bytes) and headers["RateLimit"].startswith('"default";r=0;')
    assert (await call(http, "GET", run["url"]))[0] == 429


async def test_faults_compose_in_order(http: aiohttp.ClientSession, runwatch_server: ReferenceServer) -> None:
    faults = {
        "rate_limit": {"first": 1, "retry_after": 1},
        "errors_5xx": {"first": 1},
        "malformed": {"first": 1},
    }
    _, run, _ = await create(http, runwatch_server, {"script": RUNNING_FOREVER, "faults": faults})
    # each fault counts only the requests that reach it: 429, then 503, then garbage, then fine
    results = [await call(http, "GET", run["url"]) for _ in range(4)]
    assert [r[0] for r in results] == [429, 503, 200, 200]
    assert isinstance(results[2][1], bytes) and results[3][1]["status"] == "RUNNING"


@pytest.mark.parametrize(
    ("rate_limit", "expected"),
    [
        ({"retry_after": 2}, {"Retry-After": "2"}),
        ({"retry_after": 250, "hint": "ms"}, {"Retry-After-Ms": "250000"}),
        ({"hint": "none"}, {}),
        ({"status": 403, "retry_after": 0.5}, {"Retry-After": "0.5"}),  # GitHub's secondary limit
        (
            {"retry_after_text": "Fri, 31 Dec 9999 23:59:59 GMT"},
            {"Retry-After": "Fri, 31 Dec 9999 23:59:59 GMT"},
        ),
        ({"retry_after_text": "Infinity"}, {"Retry-After": "Infinity"}),
    ],
    ids=["seconds", "ms", "none", "403-secondary", "text-date", "text-infinity"],
)
async def test_rate_limit_hint_forms(
    http: aiohttp.ClientSession,
    runwatch_server: ReferenceServer,
    rate_limit: dict[str, Any],
    expected: dict[str, str],
) -> None:
    faults = {"rate_limit": {"first": 1, **rate_limit}}
    _, run, _ = await create(http, runwatch_server, {"script": RUNNING_FOREVER, "faults": faults})
    status, body, headers = await call(http, "GET", run["url"])
    assert status == rate_limit.get("status", 429) and body == {
        "error": "rate limit exceeded (fault injection)"
    }
    hints = {k.lower(): v for k, v in headers.items() if "retry" in k.lower() or "ratelimit" in k.lower()}
    assert hints == {k.lower(): v for k, v in expected.items()}
    assert (await call(http, "GET", run["url"]))[0] == 200
    counts = runwatch_server.stats()["runs"][run["id"]]
    assert (counts["403"], counts["429"]) == ((1, 0) if status == 403 else (0, 1))


async def test_github_primary_rate_limit_is_403_with_an_epoch_reset(
    http: aiohttp.ClientSession, runwatch_server: ReferenceServer
) -> None:
    faults = {"rate_limit": {"after": 1, "status": 403, "hint": "reset", "retry_after": 30}}
    _, run, _ = await create(http, runwatch_server, {"script": RUNNING_FOREVER, "faults": faults})
    assert await statuses(http, run["url"], 1) == [200]  # `after: 1` lets one through, then never again
    for _ in range(3):
        status, _, headers = await call(http, "GET", run["url"])
        assert status == 403 and "Retry-After" not in headers
        assert (headers["X-RateLimit-Remaining"], headers["X-RateLimit-Limit"]) == ("0", "60")
        assert 29 < int(headers["X-RateLimit-Reset"]) - time.time() <= 31


@pytest.mark.parametrize(
    "bad",
    [
        {"rate_limit": {"first": 1, "status": 404}},
        {"rate_limit": {"first": 1, "hint": "eventually"}},
        {"rate_limit": {"first": 1, "hint": "ms", "retry_after_date": True}},
        {"drop": {"first": 1, "after": 2}},
        {"slow": {"first": 1}},
        {"oversized": {"every": 1, "size": 2**31}},
        {"omit": ["status"]},
        {"no_etag": "yes"},
    ],
)
async def test_new_fault_keys_are_validated(
    http: aiohttp.ClientSession, runwatch_server: ReferenceServer, bad: dict[str, Any]
) -> None:
    status, body, _ = await create(http, runwatch_server, {"faults": bad})
    assert status == 422 and body["error"].startswith(f"faults.{next(iter(bad))}")


async def test_slow_holds_only_the_hit_requests(
    http: aiohttp.ClientSession, runwatch_server: ReferenceServer
) -> None:
    faults = {"slow": {"first": 1, "seconds": 0.3}}
    _, run, _ = await create(http, runwatch_server, {"script": RUNNING_FOREVER, "faults": faults})
    timeout = aiohttp.ClientTimeout(total=0.1)
    with pytest.raises(asyncio.TimeoutError):  # past the client's request timeout
        await call(http, "GET", run["url"], timeout=timeout)
    assert (await call(http, "GET", run["url"], timeout=timeout))[0] == 200
    assert runwatch_server.stats()["runs"][run["id"]]["slow"] == 1


async def test_truncated_body_has_honest_headers_and_broken_json(
    http: aiohttp.ClientSession, runwatch_server: ReferenceServer
) -> None:
    faults = {"truncated": {"first": 1}}
    _, run, _ = await create(http, runwatch_server, {"script": RUNNING_FOREVER, "faults": faults})
    status, body, headers = await call(http, "GET", run["url"])
    full = json.dumps((await call(http, "GET", run["url"]))[1], separators=(",", ":")).encode()
    assert status == 200 and body == full[: len(full) // 2] and headers["Content-Length"] == str(len(body))
    _, run2, _ = await create(
        http, runwatch_server, {"script": RUNNING_FOREVER, "faults": {"truncated": {"every": 1, "keep": 5}}}
    )
    assert (await call(http, "GET", run2["url"]))[1] == b'{"id"'


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_oversized_body_is_streamed_to_the_size(
    http: aiohttp.ClientSession, runwatch_server: ReferenceServer, chunked: bool
) -> None:
    size = 3 * 65536 + 123
    faults = {"oversized": {"first": 1, "size": size, "chunked": chunked}}
    _, run, _ = await create(http, runwatch_server, {"script": RUNNING_FOREVER, "faults": faults})
    async with http.get(run["url"]) as response:
        assert response.headers.get("Content-Length") == (None if chunked else str(size))
        assert (response.headers.get("Transfer-Encoding") == "chunked") is chunked
        raw = await response.read()
    body = json.loads(raw)
    assert len(raw) == size and body["status"] == "RUNNING" and set(body["padding"]) == {"x"}
    assert runwatch_server.stats()["runs"][run["id"]]["oversized"] == 1


async def test_etag_lies_304_while_changed_and_stale_tag_on_new_content(
    http: aiohttp.ClientSession, runwatch_server: ReferenceServer
) -> None:
    script = [{"status": "RUNNING", "for": 1.0}, {"status": "SUCCEEDED"}]
    _, run, _ = await create(http, runwatch_server, {"script": script, "faults": {"etag_lies": {"after": 1}}})
    status, _, headers = await call(http, "GET", run["url"])
    assert (status, headers["ETag"]) == (200, '"v1"')
    await asyncio.sleep(1.1)
    status, _, headers = await call(http, "GET", run["url"], headers={"If-None-Match": '"v1"'})
    assert (status, headers["ETag"]) == (304, '"v1"')  # the run is SUCCEEDED (v2) by now
    status, body, headers = await call(http, "GET", run["url"])
    assert (status, body["status"], body["version"], headers["ETag"]) == (200, "SUCCEEDED", 2, '"v1"')
    assert runwatch_server.stats()["runs"][run["id"]]["etag_lies"] == 2


@pytest.mark.parametrize("mode", ["no_etag", "no_304"])
async def test_apis_without_etag_or_304_ignore_if_none_match(
    http: aiohttp.ClientSession, runwatch_server: ReferenceServer, mode: str
) -> None:
    script = [{"status": "RUNNING", "for": 0.3}, {"status": "SUCCEEDED"}]
    _, run, _ = await create(http, runwatch_server, {"script": script, "faults": {mode: True}})
    t0 = time.monotonic()
    status, body, headers = await call(http, "GET", f"{run['url']}?wait=5", headers={"If-None-Match": '"v1"'})
    assert (status, body["status"]) == (
        200,
        "SUCCEEDED",
    ) and time.monotonic() - t0 >= 0.25  # held to the change
    assert ("ETag" in headers) is (mode == "no_304")
    status, body, _ = await call(http, "GET", run["url"], headers={"If-None-Match": '"v2"'})
    assert (status, body["version"]) == (200, 2)
    assert runwatch_server.stats()["runs"][run["id"]]["304"] == 0


async def test_omit_leaves_fields_out_globally_and_per_run(
    http: aiohttp.ClientSession, runwatch_server: ReferenceServer
) -> None:
    runwatch_server.set_faults(omit=["updated_at"])
    _, run, _ = await create(
        http, runwatch_server, {"script": RUNNING_FOREVER, "faults": {"omit": ["version", "heartbeat_at"]}}
    )
    _, body, headers = await call(http, "GET", run["url"])
    assert {"updated_at", "version", "heartbeat_at"}.isdisjoint(body) and body["status"] == "RUNNING"
    assert headers["ETag"] == '"v1"'
    _, other, _ = await create(http, runwatch_server, {"script": RUNNING_FOREVER})
    _, body, _ = await call(http, "GET", other["url"])
    assert "updated_at" not in body and body["version"] == 1


async def test_global_faults_apply_to_every_run_and_clear(
    http: aiohttp.ClientSession, runwatch_server: ReferenceServer
) -> None:
    _, a, _ = await create(http, runwatch_server, {"script": RUNNING_FOREVER})
    answer = runwatch_server.set_faults(errors_5xx={"first": 1, "status": 500})
    assert answer == {"faults": {"errors_5xx": {"first": 1, "status": 500}}}
    _, b, _ = await create(http, runwatch_server, {"script": RUNNING_FOREVER})
    # counters are per run, so "first: 1" hits each run once
    assert await statuses(http, a["url"], 2) == [500, 200]
    assert await statuses(http, b["url"], 2) == [500, 200]
    _, body, _ = await call(http, "GET", f"{runwatch_server.url}/_control/faults")
    assert body["faults"]["errors_5xx"]["first"] == 1
    runwatch_server.set_faults()
    assert await statuses(http, a["url"], 1) == [200]
    with pytest.raises(ReferenceServerError, match=r"422.*faults\.latency"):
        runwatch_server.set_faults(latency=-1)


# ------------------------------------------------------------------------------------------------ webhooks


class Receiver:
    """A webhook endpoint on 127.0.0.1 that records every delivery."""

    def __init__(self) -> None:
        self.deliveries: list[tuple[dict[str, str], bytes]] = []
        self.changed = asyncio.Event()
        self.url = ""
        self.status = 204

    async def handle(self, request: web.Request) -> web.Response:
        self.deliveries.append(({k.lower(): v for k, v in request.headers.items()}, await request.read()))
        self.changed.set()
        return web.Response(status=self.status)

    async def wait_for(self, count: int, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.deliveries) < count:
            self.changed.clear()
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"got {len(self.deliveries)} of {count} deliveries"
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.changed.wait(), remaining)

    def ids(self) -> list[str]:
        return [headers["webhook-id"] for headers, _ in self.deliveries]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hook", rec.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    rec.url = f"http://{host}:{port}/hook"
    try:
        yield rec
    finally:
        await runner.cleanup()


async def test_webhooks_are_signed_and_cover_every_change(
    http: aiohttp.ClientSession, runwatch_server: ReferenceServer, receiver: Receiver
) -> None:
    secret = webhooks.generate_secret()
    status, sub, _ = await call(
        http,
        "POST",
        f"{runwatch_server.url}/webhooks",
        json={"url": receiver.url, "secret": secret, "runs": None},
    )
    assert status == 201 and sub["id"].startswith("wh-")
    _, run, _ = await create(http, runwatch_server, {"script": FAST})
    await receiver.wait_for(3)
    await asyncio.sleep(0.1)
    assert receiver.ids() == [f"{run['id']}.1", f"{run['id']}.2", f"{run['id']}.3"]
    bodies = []
    for headers, body in receiver.deliveries:
        assert webhooks.verify(secret, headers, body) == headers["webhook-id"]
        assert abs(int(headers["webhook-timestamp"]) - time.time()) < 5
        assert headers["content-type"] == "application/json"
        bodies.append(json.loads(body))
    assert [b["status"] for b in bodies] == ["QUEUED", "RUNNING", "SUCCEEDED"]
    # the delivered body is the status object a GET serves for that version
    _, current, _ = await call(http, "GET", run["url"])
    assert bodies[-1] == current
    assert runwatch_server.stats()["webhooks"]["sent"] == 3


async def test_webhooks_for_listed_runs_only_and_heartbeats(
    http: aiohttp.ClientSession, runwatch_server: ReferenceServer, receiver: Receiver
) -> None:
    _, quiet, _ = await create(
        http, runwatch_server, {"script": [{"status": "RUNNING", "for": 0.05}, {"status": "SUCCEEDED"}]}
    )
    _, watched, _ = await create(
        http,
        runwatch_server,
        {"script": [{"status": "RUNNING", "for": 0.35}, {"status": "SUCCEEDED"}], "heartbeat_every": 0.1},
    )
    secret = webhooks.generate_secret()
    runwatch_server.subscribe(receiver.url, secret, runs=[watched["id"]])
    # heartbeats at 0.1, 0.2 and 0.3 s (v2-v4), SUCCEEDED at 0.35 s (v5); changes made before the
    # subscription are not delivered, so how many heartbeats arrive depends on when it landed
    await receiver.wait_for(2)
    for _ in range(100):
        if json.loads(receiver.deliveries[-1][1])["status"] == "SUCCEEDED":
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.1)
    versions = [int(i.rsplit(".", 1)[1]) for i in receiver.ids()]
    assert versions == list(range(versions[0], 6)) and versions[0] <= 4
    statuses = [json.loads(b)["status"] for _, b in receiver.deliveries]
    assert statuses == ["RUNNING"] * (len(statuses) - 1) + ["SUCCEEDED"]
    assert {i.rsplit(".", 1)[0] for i in receiver.ids()} == {watched["id"]}
    assert quiet["id"] != watched["id"]


async def test_webhook_duplicates(
    http: aiohttp.ClientSession, runwatch_server: ReferenceServer, receiver: Receiver
) -> None:
    secret = webhooks.generate_secret()
    runwatch_server.subscribe(receiver.url, secret)
    _, run, _ = await create(http, runwatch_server, {"script": FAST, "webhook": {"duplicate": True}})
    await receiver.wait_for(6)
    rid = run["id"]
    assert receiver.ids() == [f"{rid}.1", f"{rid}.1", f"{rid}.2", f"{rid}.2", f"{rid}.3", f"{rid}.3"]
    for headers, body in receiver.deliveries:
        webhooks.verify(secret, headers, body)


async def test_webhook_out_of_order(
    http: aiohttp.ClientSession, runwatch_server: ReferenceServer, receiver: Receiver
) -> None:
    secret = webhooks.generate_secret()
    runwatch_server.subscribe(receiver.url, secret)
    script = [
        {"status": "QUEUED", "for": 0.03},
        {"status": "RUNNING", "for": 0.03},
        {"status": "RUNNING", "for": 0.03, "progress": {"percent": 90}},
        {"status": "SUCCEEDED"},
    ]
    _, run, _ = await create(http, runwatch_server, {"script": script, "webhook": {"out_of_order": True}})
    await receiver.wait_for(4)
    rid = run["id"]
    assert receiver.ids() == [f"{rid}.2", f"{rid}.1", f"{rid}.4", f"{rid}.3"]
    assert json.loads(receiver.deliveries[2][1])["status"] == "SUCCEEDED"  # terminal overtakes RUNNING


async def test_webhook_out_of_order_odd_final_is_not_held(
    http: aiohttp.ClientSession, runwatch_server: ReferenceServer, receiver: Receiver
) -> None:
    runwatch_server.subscribe(receiver.url, webhooks.generate_secret())
    _, run, _ = await create(http, runwatch_server, {"script": FAST, "webhook": {"out_of_order": True}})
    await receiver.wait_for(3)
    assert receiver.ids() == [f"{run['id']}.{v}" for v in (2, 1, 3)]


async def test_webhook_failures_are_counted_not_fatal(
    http: aiohttp.ClientSession, runwatch_server: ReferenceServer, receiver: Receiver
) -> None:
    receiver.status = 500
    runwatch_server.subscribe(receiver.url, webhooks.generate_secret())
    runwatch_server.subscribe("http://127.0.0.1:1/unreachable", webhooks.generate_secret())
    _, run, _ = await create(http, runwatch_server, {"script": [{"status": "SUCCEEDED"}]})
    await receiver.wait_for(1)
    for _ in range(50):
        if runwatch_server.stats()["webhooks"]["failed"] == 2:
            break
        await asyncio.sleep(0.05)
    assert runwatch_server.stats()["webhooks"] == {"subscriptions": 2, "sent": 0, "failed": 2}
    assert (await call(http, "GET", run["url"]))[0] == 200


async def test_subscription_validation_and_removal(
    http: aiohttp.ClientSession, runwatch_server: ReferenceServer
) -> None:
    url = f"{runwatch_server.url}/webhooks"
    secret = webhooks.generate_secret()
    cases = [
        ({"url": "http://127.0.0.1:9/h"}, "secret"),
        ({"url": "http://127.0.0.1:9/h", "secret": "whsec_%%%"}, "secret"),
        ({"url": "http://example.com/h", "secret": secret}, "url"),
        ({"url": "ftp://127.0.0.1/h", "secret": secret}, "url"),
        ({"url": "http://127.0.0.1:9/h", "secret": secret, "runs": ["r-nope"]}, "runs"),
    ]
    for body, field in cases:
        status, answer, _ = await call(http, "POST", url, json=body)
        assert status == 422 and answer["error"].startswith(field), (body, answer)
    status, sub, _ = await call(http, "POST", url, json={"url": "http://localhost:9/h", "secret": secret})
    assert status == 201 and sub["runs"] is None
    assert (await call(http, "DELETE", f"{url}/{sub['id']}"))[0] == 204
    assert (await call(http, "DELETE", f"{url}/{sub['id']}"))[0] == 404


# ------------------------------------------------------------------------------------------------ control plane


async def test_stats_count_requests_and_connections(runwatch_server: ReferenceServer) -> None:
    run = runwatch_server.create_run(script=RUNNING_FOREVER)
    async with aiohttp.ClientSession() as one:
        for _ in range(5):
            assert (await call(one, "GET", run["url"]))[0] == 200
    async with aiohttp.ClientSession() as two:
        await asyncio.gather(*(call(two, "GET", run["url"]) for _ in range(3)))
    stats = runwatch_server.stats()
    # helper calls (urllib) and the control plane are not counted; per-run counters count everything
    assert stats["requests_total"] == 5 + 3
    # 1 (a kept-alive session) + 3 (parallel requests open parallel connections)
    assert stats["connections"] == 4
    assert stats["runs"][run["id"]]["GET"] == 8
    assert stats["runs"][run["id"]]["POST"] == 1
    runwatch_server.get_run(run["id"])
    assert runwatch_server.stats()["requests_total"] == 8
    assert runwatch_server.stats()["runs"][run["id"]]["GET"] == 9


async def test_reset_forgets_everything(
    http: aiohttp.ClientSession, runwatch_server: ReferenceServer
) -> None:
    _, run, _ = await create(http, runwatch_server, {}, headers={"Idempotency-Key": "k"})
    runwatch_server.set_faults(latency=0.01)
    runwatch_server.reset()
    assert runwatch_server.stats() == {
        "runs_created": 0,
        "requests_total": 0,
        "connections": 0,
        "batch": {"requests": 0, "runs": 0},
        "runs": {},
        "traceparents": {},
        "tokens": {"issued": 0, "expired_seen": 0},
        "webhooks": {"subscriptions": 0, "sent": 0, "failed": 0},
    }
    assert (await call(http, "GET", run["url"]))[0] == 404
    _, again, _ = await create(http, runwatch_server, {}, headers={"Idempotency-Key": "k"})
    assert again["id"] != run["id"]


# ------------------------------------------------------------------------------------------------ the server object


def iso(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def test_helpers_work_from_sync_code(runwatch_server: ReferenceServer) -> None:
    run = runwatch_server.create_run(script=FAST, idempotency_key="sync")
    assert runwatch_server.create_run(script=FAST, idempotency_key="sync")["id"] == run["id"]
    assert runwatch_server.get_run(run["id"])["id"] == run["id"]
    assert runwatch_server.cancel_run(run["id"])["status"] == "CANCELLING"
    assert runwatch_server.run_url(run["id"]) == run["url"]
    with pytest.raises(ReferenceServerError, match="404"):
        runwatch_server.get_run("r-nope")
    status, _, body = runwatch_server.request("POST", "/runs", {"script": []})
    assert status == 422 and "script" in body["error"]


def test_stop_is_prompt_leaks_no_thread_and_answers_held_polls() -> None:
    before = set(threading.enumerate())
    server = ReferenceServer(max_wait=60).start()
    run = server.create_run(script=RUNNING_FOREVER)
    answers: list[int] = []

    def hold() -> None:
        status, _, _ = server.request("GET", f"/runs/{run['id']}?wait=30", headers={"if-none-match": '"v1"'})
        answers.append(status)

    holder = threading.Thread(target=hold)
    holder.start()
    for _ in range(200):  # until the long poll is being held
        if server.stats()["runs"][run["id"]]["GET"] == 1:
            break
        time.sleep(0.01)
    time.sleep(0.05)
    t0 = time.monotonic()
    server.stop()
    assert time.monotonic() - t0 < 1.0
    holder.join(2)
    assert answers == [304]
    assert not server.running
    assert set(threading.enumerate()) - before == set()


def test_refuses_non_loopback_hosts() -> None:
    with pytest.raises(ValueError, match="loopback"):
        ReferenceServer(host="0.0.0.0")
    with pytest.raises(ValueError, match="loopback"):
        ReferenceServer(host="192.168.1.10")
    with pytest.raises(ValueError, match="allow_remote"):
        serve(host="0.0.0.0", port=0)  # refused before anything is bound
    ReferenceServer(host="127.0.0.1")  # constructing is fine; nothing is bound until start()


def test_servers_are_independent(runwatch_server_factory: Any) -> None:
    a = runwatch_server_factory()
    b = runwatch_server_factory(token="t")
    assert a.url != b.url and a.url.startswith("http://127.0.0.1:")
    a.create_run()
    assert (a.stats()["runs_created"], b.stats()["runs_created"]) == (1, 0)


async def test_create_app_is_a_plain_asgi_app() -> None:
    app = create_app(retry_after=3)
    body = json.dumps({"script": RUNNING_FOREVER}).encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/runs",
        "raw_path": b"/runs",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"runs.example.test"), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 50000),
        "server": ("runs.example.test", 80),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start, payload = sent[0], json.loads(sent[1]["body"])
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    assert start["status"] == 202
    # without a configured base URL, the status URL follows the request's Host
    assert headers["location"] == payload["url"] == f"http://runs.example.test/runs/{payload['id']}"
    assert headers["retry-after"] == "3"
