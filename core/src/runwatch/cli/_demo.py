"""`runwatch demo`: the reference server in-process, a dozen runs watched at once by the core waiter."""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import time
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any

from runwatch import webhooks
from runwatch._api import RunApi
from runwatch._errors import RunwatchError
from runwatch._hooks import Hooks
from runwatch._inbox import WebhookInbox
from runwatch._machine import Anomaly
from runwatch._policy import Policy
from runwatch._status import RunStatus
from runwatch._waiter import wait_for_run
from runwatch.cli._outcomes import outcome_of
from runwatch.cli._receiver import HookReceiver
from runwatch.cli._scenarios import BASE_POLICY, SCENARIOS, Scenario

if TYPE_CHECKING:
    from runwatch.cli._demo_view import DemoView

__all__ = ["Row", "import_server", "pick_scenarios", "run_demo"]

STATS_EVERY = 0.5  # seconds between two reads of the server's counters


def import_server() -> ModuleType:
    """`runwatch.server`, or a clear error when the `runwatch[server]` extra is missing."""
    try:
        import runwatch.server as server
    except ImportError as exc:
        raise RunwatchError(
            f"the reference server needs the server extra (missing {exc.name}): "
            "pip install 'runwatch[server]'"
        ) from None
    return server


@dataclass
class Row:
    """One run of the demo as it goes: what we saw, and how it ended."""

    scenario: Scenario
    index: int
    run_id: str | None = None
    last: RunStatus | None = None
    changes: int = 0
    outcome: str | None = None
    message: str = ""
    began: float = field(default_factory=time.monotonic)
    ended: float | None = None
    counters: dict[str, int] = field(default_factory=dict)
    anomalies: int = 0
    pushes: int = 0

    @property
    def ok(self) -> bool:
        return self.outcome == self.scenario.expect

    @property
    def seconds(self) -> float:
        return (self.ended if self.ended is not None else time.monotonic()) - self.began

    @property
    def requests(self) -> int:
        """HTTP requests this run cost the server: reads, the start, the cancel."""
        c = self.counters
        return c.get("GET", 0) + c.get("POST", 0) + c.get("cancel", 0)


def pick_scenarios(runs: int | None) -> list[Scenario]:
    """`runs` runs, cycling through the scenarios (all of them once by default)."""
    count = len(SCENARIOS) if runs is None else runs
    return [SCENARIOS[i % len(SCENARIOS)] for i in range(count)]


async def _watch_one(
    api: RunApi, server: Any, inbox: WebhookInbox, hook: tuple[str, str], row: Row, view: DemoView
) -> None:
    """Start one scripted run, watch it to its end with the core waiter, and note how it ended."""
    s = row.scenario
    canceller: asyncio.Task[None] | None = None
    try:
        started = await api.start_run(
            s.body, idempotency_key=f"runwatch-demo-{secrets.token_hex(4)}-{row.index}"
        )
        row.run_id, row.last = started.id, started.status
        view.change(row, started.status)
        if s.webhook:
            await asyncio.to_thread(server.subscribe, hook[0], hook[1], [started.id])
        if s.cancel_after is not None:
            canceller = asyncio.create_task(_cancel_later(api, started.id, s.cancel_after))

        def on_change(status: RunStatus) -> None:
            seen, row.last, row.changes = row.last, status, row.changes + 1
            if seen is None or (seen.status, seen.version) != (status.status, status.version):
                view.change(row, status)

        def on_anomaly(anomaly: Anomaly) -> None:
            row.anomalies += 1
            view.note(row, f"ignored {anomaly.current.status.value} -> {anomaly.observed.status.value}")

        policy = Policy(**{**BASE_POLICY, **s.policy})
        hooks = Hooks(on_change=on_change, on_anomaly=on_anomaly)
        final = await wait_for_run(
            api, started, policy=policy, inbox=inbox if s.webhook else None, hooks=hooks
        )
        row.outcome, row.message = outcome_of(None), f"run {final.id} {final.status.value}"
    except RunwatchError as exc:
        row.outcome, row.message = outcome_of(exc), str(exc)
    finally:
        row.ended = time.monotonic()
        if canceller is not None:
            canceller.cancel()
        if row.outcome is not None:  # None: the demo itself was interrupted
            view.ended(row)


async def _cancel_later(api: RunApi, run_id: str, delay: float) -> None:
    await asyncio.sleep(delay)
    await api.cancel_run(run_id)


async def _poll_stats(server: Any, rows: list[Row]) -> None:
    """Copy the server's per-run request counters onto the rows, now and then until cancelled."""
    while True:
        await _read_stats(server, rows)
        await asyncio.sleep(STATS_EVERY)


async def _read_stats(server: Any, rows: list[Row]) -> dict[str, Any]:
    stats: dict[str, Any] = await asyncio.to_thread(server.stats)
    runs = stats.get("runs", {})
    for row in rows:
        if row.run_id in runs:
            row.counters = dict(runs[row.run_id])
    return stats


async def run_demo(args: argparse.Namespace) -> int:
    """Watch every scenario at once; 0 if each run ended as expected, else 1."""
    from runwatch.cli._demo_view import pick_view

    server_mod = import_server()
    rows = [Row(s, i) for i, s in enumerate(pick_scenarios(args.runs))]
    view = pick_view(args.json, sys.stdout)
    secret = webhooks.generate_secret()
    inbox = WebhookInbox(secret)
    receiver = HookReceiver(inbox)
    began = time.monotonic()
    with server_mod.ReferenceServer(retry_after=0.25, cancel_delay=0.5) as server:
        async with receiver.running() as hook_url:
            api = RunApi(server.url)
            view.start(rows, server.url)
            try:
                poller = asyncio.create_task(_poll_stats(server, rows))
                hook = (hook_url, secret)
                await asyncio.gather(*(_watch_one(api, server, inbox, hook, row, view) for row in rows))
                poller.cancel()
                stats = await _read_stats(server, rows)
            finally:
                view.stop()
    for row in rows:
        row.pushes = receiver.received[row.run_id or ""]
    view.summary(rows, stats, time.monotonic() - began)
    return 0 if all(r.ok for r in rows) else 1
