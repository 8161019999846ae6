"""The webhook inbox where users host it: uvicorn, hypercorn, a Starlette mount, sync endpoints, hostile senders."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import runwatch
from runwatch import Policy, RunApi, State, WebhookInbox, wait_for_run, webhooks
from runwatch.server import ReferenceServer

pytestmark = pytest.mark.runwatch_server(retry_after=0)

App = Callable[..., Any]


def signed(secret: str, body: bytes, msg_id: str = "msg-1") -> dict[str, str]:
    ts = int(time.time())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": webhooks.sign(secret, msg_id, ts, body),
    }


def status_body(run_id: str, state: str, **more: Any) -> bytes:
    return json.dumps({"id": run_id, "status": state, **more}).encode()


def listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextlib.asynccontextmanager
async def uvicorn_serving(app: App) -> AsyncIterator[str]:
    """uvicorn with its default interface detection (no `interface=`), as `uvicorn.run(app)` does."""
    import uvicorn

    sock = listening_socket()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(1000):
            if server.started or task.done():
                break
            await asyncio.sleep(0.01)
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()


@contextlib.asynccontextmanager
async def hypercorn_serving(app: App) -> AsyncIterator[str]:
    """hypercorn with its default detection (`hypercorn.asyncio.serve(app, config)`)."""
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    sock = listening_socket()
    port = sock.getsockname()[1]
    config = Config()
    config.bind = [f"fd://{sock.detach()}"]  # hypercorn owns the socket from here
    config.loglevel = "WARNING"
    stop = asyncio.Event()
    task = asyncio.create_task(serve(app, config, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
    try:
        for _ in range(1000):
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                await writer.wait_closed()
                break
            assert not task.done(), "hypercorn did not start"
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop.set()
        await task


def starlette_mount(inbox: WebhookInbox) -> App:
    from starlette.applications import Starlette
    from starlette.routing import Mount

    return Starlette(routes=[Mount("/hooks", app=inbox.asgi)])


async def post(url: str, body: bytes, headers: dict[str, str]) -> int:
    async with aiohttp.ClientSession() as session, session.post(url, data=body, headers=headers) as answer:
        return answer.status


# ------------------------------------------------------------------------------------- secrets (issue 7, 9)


def test_a_pasted_signature_is_refused_as_a_secret_when_the_inbox_is_built() -> None:
    secret = webhooks.generate_secret()
    with pytest.raises(webhooks.WebhookSecretError) as info:
        WebhookInbox(f"v1,{secret}")
    message = str(info.value)
    assert message == (
        "webhook secret: a webhook secret must be 'whsec_' followed by base64 "
        "(a 'v1,...' value is a signature, not a secret)"
    )
    assert secret.removeprefix("whsec_") not in message
    assert info.value.exit_code == 64
    assert isinstance(info.value, runwatch.RunwatchError)


def test_a_bad_secret_among_several_is_named_by_position() -> None:
    with pytest.raises(webhooks.WebhookSecretError, match=r"^webhook secret 2 of 2: .*base64$"):
        WebhookInbox([webhooks.generate_secret(), "whsec_not base64!"])
    with pytest.raises(webhooks.WebhookSecretError, match="at least one webhook secret"):
        WebhookInbox([])


@pytest.mark.parametrize(("name", "value"), [("max_body", 0), ("keep", 0), ("keep_for", -1.0)])
def test_bounds_must_be_positive(name: str, value: float) -> None:
    with pytest.raises(ValueError, match=f"{name} must be positive"):
        WebhookInbox(webhooks.generate_secret(), **{name: value})


# ------------------------------------------------------------------------------- served where users host it


@pytest.mark.parametrize("host", ["uvicorn", "hypercorn", "starlette-mount"])
async def test_a_signed_delivery_is_taken_under_each_servers_default_detection(host: str) -> None:
    secret = webhooks.generate_secret()
    inbox = WebhookInbox(secret)
    box = inbox.subscribe("r-1")
    serving = {
        "uvicorn": lambda: uvicorn_serving(inbox.asgi),
        "hypercorn": lambda: hypercorn_serving(inbox.asgi),
        "starlette-mount": lambda: uvicorn_serving(starlette_mount(inbox)),
    }[host]
    body = status_body("r-1", "SUCCEEDED")
    async with serving() as base:
        assert await post(f"{base}/hooks/any", body, signed(secret, body)) == 204
        assert await post(f"{base}/hooks/any", body, {}) == 401
        async with aiohttp.ClientSession() as session, session.get(f"{base}/hooks/any") as answer:
            assert answer.status == 405
            assert answer.headers["allow"] == "POST"
    [(status, delivery_id)] = await box.wait(10)
    assert (status.id, status.status, delivery_id) == ("r-1", State.SUCCEEDED, "msg-1")


# -------------------------------------------------------------------------- a push before the wait listens


def test_a_push_before_any_subscriber_is_kept_for_the_first_one() -> None:
    secret = webhooks.generate_secret()
    inbox = WebhookInbox(secret)
    body = status_body("r-1", "SUCCEEDED")
    assert inbox.deliver(signed(secret, body), body) == 204

    async def subscribe_late() -> list[tuple[runwatch.RunStatus, str]]:
        return await inbox.subscribe("r-1").wait(0)

    [(status, delivery_id)] = asyncio.run(subscribe_late())
    assert (status.status, delivery_id) == (State.SUCCEEDED, "msg-1")


def test_kept_pushes_are_bounded_in_count_and_age() -> None:
    secret = webhooks.generate_secret()
    by_count = WebhookInbox(secret, keep=2)
    for n in (1, 2, 3):
        body = status_body(f"r-{n}", "SUCCEEDED")
        assert by_count.deliver(signed(secret, body, f"m-{n}"), body) == 204
    by_age = WebhookInbox(secret, keep_for=0.05)
    body = status_body("r-9", "SUCCEEDED")
    assert by_age.deliver(signed(secret, body), body) == 204
    time.sleep(0.2)

    async def kept() -> dict[str, int]:
        runs = ("r-1", "r-2", "r-3")
        counts = {run: len(await by_count.subscribe(run).wait(0)) for run in runs}
        return counts | {"r-9": len(await by_age.subscribe("r-9").wait(0))}

    assert asyncio.run(kept()) == {"r-1": 0, "r-2": 1, "r-3": 1, "r-9": 0}


async def test_a_terminal_push_during_a_slow_first_read_ends_the_wait(
    runwatch_server: ReferenceServer,
) -> None:
    secret = webhooks.generate_secret()
    inbox = WebhookInbox(secret)
    # The run says RUNNING for ten minutes and every read of it takes 2 s; polling would not see it end.
    run = runwatch_server.create_run(
        script=[{"status": "RUNNING", "for": 600}, {"status": "SUCCEEDED"}], faults={"latency": 2.0}
    )
    policy = Policy(interval=60, max_interval=120, timeout=30)
    wait = asyncio.create_task(
        wait_for_run(RunApi(runwatch_server.url), run["id"], policy=policy, inbox=inbox)
    )
    for _ in range(1000):  # the first read has reached the server and is being held
        if runwatch_server.stats()["runs"][run["id"]]["GET"] >= 1:
            break
        await asyncio.sleep(0.01)
    body = status_body(run["id"], "SUCCEEDED")
    assert inbox.deliver(signed(secret, body), body) == 204
    final = await wait
    assert final.status is State.SUCCEEDED
    assert runwatch_server.stats()["runs"][run["id"]]["GET"] == 1


# --------------------------------------------------------------------------------- delivery from a thread


async def test_a_delivery_from_another_thread_wakes_the_waiting_loop(
    runwatch_server: ReferenceServer,
) -> None:
    # Debug mode makes asyncio refuse loop calls from a foreign thread: a wake-up that is not thread-safe fails.
    asyncio.get_running_loop().set_debug(True)
    secret = webhooks.generate_secret()
    inbox = WebhookInbox(secret)
    run = runwatch_server.create_run(script=[{"status": "RUNNING", "for": 600}, {"status": "SUCCEEDED"}])
    answers: list[int] = []

    def sync_endpoint() -> None:  # as a threaded framework's view would, once the wait has subscribed
        for _ in range(3000):
            if inbox._boxes.get(run["id"]):
                break
            time.sleep(0.01)
        time.sleep(0.2)  # let the loop settle into waiting on the mailbox, so the delivery must wake it
        body = status_body(run["id"], "SUCCEEDED")
        answers.append(inbox.deliver(signed(secret, body), body))

    thread = threading.Thread(target=sync_endpoint)
    thread.start()
    policy = Policy(interval=60, max_interval=120, timeout=30)
    try:
        final = await wait_for_run(RunApi(runwatch_server.url), run["id"], policy=policy, inbox=inbox)
    finally:
        thread.join(60)
    assert answers == [204]
    assert final.status is State.SUCCEEDED
    assert runwatch_server.stats()["runs"][run["id"]]["GET"] == 1


# ------------------------------------------------------------------------------------------ hostile senders


async def raw_request(port: int, head: str, chunks: int = 0, chunk: bytes = b"") -> tuple[str, int]:
    """Send a request head, then up to `chunks` chunked-encoded chunks until an answer comes: (status, sent)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    sent = 0
    try:
        writer.write(head.encode("latin-1"))
        await writer.drain()
        answer = asyncio.create_task(reader.readline())
        for _ in range(chunks):
            if answer.done():
                break
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            sent += len(chunk)
            await asyncio.sleep(0)
        line = await asyncio.wait_for(answer, 60)
        return line.decode("latin-1").split()[1], sent
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def test_headers_are_checked_before_the_body_is_read() -> None:
    secret = webhooks.generate_secret()
    inbox = WebhookInbox(secret)
    async with uvicorn_serving(inbox.asgi) as base:
        port = int(base.rsplit(":", 1)[1])
        # 200 MB announced, nothing sent: the answer comes from the headers alone.
        unsigned = "POST /hooks HTTP/1.1\r\nHost: x\r\nContent-Length: 209715200\r\n\r\n"
        assert (await raw_request(port, unsigned))[0] == "401"
        sig = "".join(f"{k}: {v}\r\n" for k, v in signed(secret, b"{}").items())
        too_big = f"POST /hooks HTTP/1.1\r\nHost: x\r\n{sig}Content-Length: {inbox.max_body + 1}\r\n\r\n"
        assert (await raw_request(port, too_big))[0] == "413"
        stale = sig.replace(signed(secret, b"{}")["webhook-timestamp"], "1000")
        assert (
            await raw_request(port, f"POST /hooks HTTP/1.1\r\nHost: x\r\n{stale}Content-Length: 5\r\n\r\n")
        )[0] == "401"


async def test_a_streamed_body_is_cut_at_the_cap() -> None:
    secret = webhooks.generate_secret()
    inbox = WebhookInbox(secret, max_body=64 * 1024)
    async with uvicorn_serving(inbox.asgi) as base:
        port = int(base.rsplit(":", 1)[1])
        sig = "".join(f"{k}: {v}\r\n" for k, v in signed(secret, b"{}").items())
        head = f"POST /hooks HTTP/1.1\r\nHost: x\r\n{sig}Transfer-Encoding: chunked\r\n\r\n"
        status, sent = await raw_request(port, head, chunks=4096, chunk=b"x" * 16 * 1024)  # up to 64 MiB
    assert status == "413"
    assert sent < 4096 * 16 * 1024  # the answer came while the sender was still streaming


HOSTILE_BODIES = {
    "not-json": b"<html>proxy error</html>",
    "not-utf8": b"\xff\xfe{\x00",
    "deep-nesting": b"[" * 200_000 + b"]" * 200_000,
    "a-list": b'[{"id": "r-1", "status": "SUCCEEDED"}]',
    "a-number": b"1" * 5000,
    "no-status": b'{"id": "r-1"}',
    "unmapped-status": b'{"id": "r-1", "status": "EXPLODED"}',
    "status-object": b'{"id": "r-1", "status": {"x": 1}}',
}
# Readable id and state with an auxiliary field that is not: the field is dropped and the delivery taken.
ODD_BUT_READABLE = {
    "infinite-version": b'{"id": "r-1", "status": "RUNNING", "version": Infinity}',
    "time-out-of-range": b'{"id": "r-1", "status": "RUNNING", "updated_at": "99999-01-01T00:00:00Z"}',
}


@pytest.mark.parametrize("body", list(HOSTILE_BODIES.values()), ids=list(HOSTILE_BODIES))
def test_a_signed_body_that_is_not_a_status_gets_400(body: bytes) -> None:
    secret = webhooks.generate_secret()
    inbox = WebhookInbox(secret)
    assert inbox.deliver(signed(secret, body), body) == 400


@pytest.mark.parametrize("body", list(ODD_BUT_READABLE.values()), ids=list(ODD_BUT_READABLE))
def test_a_signed_status_with_an_unreadable_auxiliary_field_is_taken(body: bytes) -> None:
    secret = webhooks.generate_secret()
    inbox = WebhookInbox(secret)
    assert inbox.deliver(signed(secret, body), body) == 204


async def test_hostile_bodies_over_http_get_4xx_never_500() -> None:
    secret = webhooks.generate_secret()
    inbox = WebhookInbox(secret)
    bodies = HOSTILE_BODIES | ODD_BUT_READABLE
    async with uvicorn_serving(inbox.asgi) as base:
        answers = {name: await post(f"{base}/h", body, signed(secret, body)) for name, body in bodies.items()}
    assert answers == dict.fromkeys(HOSTILE_BODIES, 400) | dict.fromkeys(ODD_BUT_READABLE, 204)


JSON = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=True) | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    extra=st.dictionaries(
        st.sampled_from(["id", "status", "updated_at", "version", "progress", "errors"]), JSON
    )
)
def test_any_signed_json_is_taken_or_refused_never_raised(extra: dict[str, Any]) -> None:
    secret = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo="
    inbox = WebhookInbox(secret)
    body = json.dumps(extra).encode()
    answer = inbox.deliver(signed(secret, body), body)
    required = extra.get("id") is not None and extra.get("status") is not None
    assert answer in ((204, 400) if required else (400,))
