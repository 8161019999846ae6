"""Webhook campaign: a real `WebhookInbox` over HTTP (uvicorn on 127.0.0.1) feeding a real wait.

The inbox holds two secrets (a rotation). Between good deliveries, every bad one we can think of is sent,
plus seeded random one-byte corruptions of a good one: forged and wrong-secret signatures, tampered body,
id and timestamp, missing, empty and malformed headers, timestamps outside the tolerance both ways, bodies
that are not a status, the wrong method. Every bad delivery must get a 4xx and change nothing (the wait sees
no change, and it does not end although each bad body says SUCCEEDED); every good one, signed with the
first or the last secret, matching first or last among several signatures, is applied once; replays of good
deliveries (the same `webhook-id`, as a sender's retry sends it) are acknowledged and never applied again.

Figures: docs/reliability.md ("Core: webhooks"). Reproduce with
`./dev pytest core tests/core/test_campaign_webhooks.py -q -s`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import time
from typing import Any

import aiohttp
import pytest
import uvicorn

import runwatch
from runwatch import Hooks, Policy, RunApi, RunStatus, State, wait_for_run, webhooks
from runwatch.server import ReferenceServer

pytestmark = pytest.mark.runwatch_server(retry_after=0)

SEED = 7
CORRUPTIONS = 200
TOLERANCE = 300
OLD, NEW, STRANGER = (webhooks.generate_secret() for _ in range(3))

Delivery = tuple[str, dict[str, str], bytes]


def body_of(run_id: str, status: str, version: int, **extra: Any) -> bytes:
    return json.dumps({"id": run_id, "status": status, "version": version, **extra}).encode()


def signed(secret: str, msg_id: str, body: bytes, *, ts: int | None = None) -> dict[str, str]:
    ts = int(time.time()) if ts is None else ts
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": webhooks.sign(secret, msg_id, ts, body),
    }


def bad_deliveries(run_id: str) -> list[Delivery]:
    """Every kind of bad delivery, each claiming the run SUCCEEDED."""
    win = body_of(run_id, "SUCCEEDED", 99, output_ref="s3://forged")
    now = int(time.time())
    good = signed(OLD, "evil-1", win)
    forged_sig = "v1," + base64.b64encode(os.urandom(32)).decode()
    out: list[Delivery] = [
        ("forged signature", {**good, "webhook-signature": forged_sig}, win),
        ("wrong secret", signed(STRANGER, "evil-1", win), win),
        ("tampered body", signed(OLD, "evil-1", body_of(run_id, "RUNNING", 99)), win),
        ("tampered id", {**good, "webhook-id": "evil-2"}, win),
        ("tampered timestamp", {**good, "webhook-timestamp": str(now - 1)}, win),
        ("too old", signed(OLD, "evil-1", win, ts=now - TOLERANCE - 30), win),
        ("too new", signed(NEW, "evil-1", win, ts=now + TOLERANCE + 30), win),
        ("replay of an expired delivery", signed(NEW, "evil-3", win, ts=now - 3600), win),
        (
            "signature of another scheme only",
            {**good, "webhook-signature": "v1a," + good["webhook-signature"][3:]},
            win,
        ),
        ("signature without version", {**good, "webhook-signature": good["webhook-signature"][3:]}, win),
        (
            "signature with a space for a comma",
            {**good, "webhook-signature": "v1 " + good["webhook-signature"][3:]},
            win,
        ),
        ("signature not base64", {**good, "webhook-signature": "v1,!!!not-base64!!!"}, win),
        ("signature empty after v1", {**good, "webhook-signature": "v1,"}, win),
        (
            "secret itself as signature",
            {**good, "webhook-signature": "v1," + OLD.removeprefix("whsec_")},
            win,
        ),
        ("timestamp in milliseconds", signed(OLD, "evil-1", win, ts=now * 1000), win),
        ("timestamp not an integer", {**good, "webhook-timestamp": "soon"}, win),
        ("timestamp with a fraction", {**good, "webhook-timestamp": f"{now}.5"}, win),
        ("timestamp in exponent form", {**good, "webhook-timestamp": "1.7e9"}, win),
        (
            "not a status, correctly signed",
            signed(OLD, "evil-4", b"<html>hello</html>"),
            b"<html>hello</html>",
        ),
        (
            "JSON without a status, correctly signed",
            signed(OLD, "evil-5", json.dumps({"id": run_id, "state": "done"}).encode()),
            json.dumps({"id": run_id, "state": "done"}).encode(),
        ),
        (
            "a state the profile does not map, correctly signed",
            signed(OLD, "evil-6", body_of(run_id, "EXPLODED", 99)),
            body_of(run_id, "EXPLODED", 99),
        ),
    ]
    for name in ("webhook-id", "webhook-timestamp", "webhook-signature"):
        out.append((f"missing {name}", {k: v for k, v in good.items() if k != name}, win))
        out.append((f"empty {name}", {**good, name: ""}, win))
    out.append(("no headers at all", {}, win))
    rng = random.Random(SEED)
    printable = [chr(c) for c in range(0x21, 0x7F)]
    for n in range(CORRUPTIONS):
        headers, body = dict(good), bytearray(win)
        target = rng.choice(["body", "webhook-id", "webhook-timestamp", "webhook-signature"])
        if target == "body":
            at = rng.randrange(len(body))
            body[at] ^= rng.randint(1, 255)
        else:
            value = list(headers[target])
            at = rng.randrange(len(value))
            value[at] = rng.choice([c for c in printable if c != value[at]])
            headers[target] = "".join(value)
        out.append((f"corruption {n} of {target}", headers, bytes(body)))
    return out


async def serve(inbox: runwatch.WebhookInbox) -> tuple[uvicorn.Server, asyncio.Task[None], str]:
    config = uvicorn.Config(
        inbox.asgi, host="127.0.0.1", port=0, log_level="warning", lifespan="off", interface="asgi3"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started:
            break
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    return server, task, f"http://127.0.0.1:{port}/hooks"


async def test_webhook_campaign(runwatch_server: ReferenceServer) -> None:
    run = runwatch_server.create_run(script=[{"status": "QUEUED"}])
    run_id = run["id"]
    inbox = runwatch.WebhookInbox([OLD, NEW], tolerance=TOLERANCE)
    server, task, url = await serve(inbox)
    seen: list[RunStatus] = []
    # Polling alone would take a minute: only pushes can move this wait on.
    policy = Policy(interval=60, max_interval=120, timeout=90)
    wait = asyncio.create_task(
        wait_for_run(
            RunApi(runwatch_server.url),
            run_id,
            policy=policy,
            inbox=inbox,
            hooks=Hooks(on_change=seen.append),
        )
    )
    answers: dict[str, int] = {}
    try:
        async with aiohttp.ClientSession() as http:

            async def post(headers: dict[str, str], body: bytes, method: str = "POST") -> int:
                async with http.request(method, url, headers=headers, data=body) as response:
                    await response.read()
                    return response.status

            async def settle() -> None:
                await asyncio.sleep(0.2)  # a delivery that were taken would be seen by now

            for _ in range(500):
                if seen:
                    break
                await asyncio.sleep(0.01)
            await settle()
            assert [s.status for s in seen] == [State.QUEUED]
            bad = bad_deliveries(run_id)

            async def bad_round(part: list[Delivery]) -> None:
                before = list(seen)
                for label, headers, body in part:
                    answers[label] = await post(headers, body)
                await settle()
                assert seen == before and not wait.done(), "a bad delivery changed the wait"

            third = len(bad) // 3
            await bad_round(bad[:third])
            answers["wrong method"] = await post({}, b"", method="GET")

            # Good 1: the first secret, one signature.
            running = body_of(run_id, "RUNNING", 2)
            good1 = signed(OLD, f"{run_id}.2", running)
            assert await post(good1, running) < 300
            await settle()
            assert [s.status for s in seen] == [State.QUEUED, State.RUNNING]
            # Replays: the very same request, and the same id re-signed later (a sender's retry).
            assert await post(good1, running) < 300
            assert await post(signed(NEW, f"{run_id}.2", running), running) < 300
            await bad_round(bad[third : 2 * third])

            # Good 2: the last secret, matching first among several signatures.
            progressed = body_of(run_id, "RUNNING", 3, progress={"percent": 50.0})
            good2 = signed(NEW, f"{run_id}.3", progressed)
            good2["webhook-signature"] += " v1,AAAA v1a,c29tZWVkMjU1MTk="
            assert await post(good2, progressed) < 300
            await settle()
            assert len(seen) == 3 and seen[-1].progress is not None and seen[-1].progress.percent == 50.0
            await bad_round(bad[2 * third :])

            # Good 3: the first secret, matching last after a stranger's and another scheme's signature.
            done = body_of(run_id, "SUCCEEDED", 4, output_ref="s3://out")
            good3 = signed(OLD, f"{run_id}.4", done)
            stranger = signed(STRANGER, f"{run_id}.4", done)["webhook-signature"]
            good3["webhook-signature"] = f"v1a,c29tZWVkMjU1MTk= {stranger} {good3['webhook-signature']}"
            assert await post(good3, done) < 300
            final = await asyncio.wait_for(wait, 30)
            for headers, body in ((good1, running), (good2, progressed), (good3, done)):
                assert await post(headers, body) < 300  # redelivered after the end: acknowledged, ignored
    finally:
        if not wait.done():
            wait.cancel()
        server.should_exit = True
        await task
    assert (final.status, final.output_ref) == (State.SUCCEEDED, "s3://out")
    assert [(s.status, s.version) for s in seen] == [
        (State.QUEUED, 1),
        (State.RUNNING, 2),
        (State.RUNNING, 3),
        (State.SUCCEEDED, 4),
    ], "every good delivery applied exactly once"
    accepted = {label: code for label, code in answers.items() if not 400 <= code < 500}
    print(
        f"\nwebhook campaign: {len(answers)} bad deliveries, {len(answers) - len(accepted)} refused with a 4xx"
    )
    assert accepted == {}
