"""Webhook push in Airflow's TriggerRunner: the core's wait with a `WebhookInbox`, for the `ends` section.

runwatch's Airflow trigger polls (it has no inbox), so this bench-only trigger is the core's own push path
in the triggerer's process: `runwatch.wait_for_run(api, run, policy=..., inbox=inbox)`, with one inbox per
process served on 127.0.0.1 by aiohttp's web server (`inbox.deliver(headers, body)` from its one handler,
as docs/core-api.md shows for your own endpoint). The reference server delivers a signed Standard Webhooks
message to it at every change of the runs it was subscribed to; each wait subscribes after its first read and
polls slowly (the policy's cap) while pushes come. `start_receiver` runs before the runs are made, so the
receiver is up as a deployment's would be.

Runs in .venv/bench (imported by the TriggerRunner from `_triggerer.py`).
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

import runwatch

__all__ = ["PushedRunTrigger", "start_receiver"]

_state: dict[str, Any] = {}  # this process's inbox and API client


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def start_receiver(base: str) -> tuple[str, str]:
    """Serve this process's inbox on 127.0.0.1 in the running loop: its URL and its signing secret."""
    from aiohttp import web

    secret = runwatch.webhooks.generate_secret()
    inbox = runwatch.WebhookInbox(secret)

    async def receive(request: web.Request) -> web.Response:
        return web.Response(status=inbox.deliver(request.headers, await request.read()))

    app = web.Application()
    app.router.add_post("/", receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    _state.update(inbox=inbox, runner=runner, api=runwatch.RunApi(base))
    return f"http://127.0.0.1:{port}/", secret


class PushedRunTrigger(BaseTrigger):
    """Fires when the run ends, as RunStatusTrigger does, but a push from the server ends the wait at once."""

    def __init__(self, run: str, policy: dict[str, Any]) -> None:
        super().__init__()
        self.run_id = run
        self.policy = policy

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return ("_push.PushedRunTrigger", {"run": self.run_id, "policy": self.policy})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        policy = runwatch.Policy.from_dict(self.policy)
        final = await runwatch.wait_for_run(_state["api"], self.run_id, policy=policy, inbox=_state["inbox"])
        yield TriggerEvent({"status": final.status.value, "run": self.run_id})
