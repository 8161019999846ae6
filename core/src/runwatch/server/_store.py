"""The server's state: runs, idempotency keys, subscriptions, global faults and counters."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from runwatch.server._faults import FaultCounters, Quota
from runwatch.server._runs import Run, Snapshot, _resolve, new_run_id
from runwatch.server._spec import FaultSet, RunSpec, SubscriptionSpec
from runwatch.server._tokens import TokenIssuer
from runwatch.server._webhooks_out import Dispatcher, Subscription, new_subscription_id

__all__ = ["IdempotencyConflict", "ServerConfig", "Store"]


@dataclass(frozen=True)
class ServerConfig:
    """How a reference server behaves (see docs/reference-server.md)."""

    token: str | None = None
    retry_after: float = 1
    cancel_delay: float = 0.1
    max_wait: float = 60.0
    base_url: str | None = None
    allow_remote_webhooks: bool = False
    webhook_timeout: float = 5.0
    client_credentials: tuple[str, str] | None = None  # (client id, secret) that POST /oauth/token accepts
    token_lifetime: float = 3600.0  # seconds an issued token opens the API

    def __repr__(self) -> str:  # never show the token
        token = None if self.token is None else "***"
        return (
            f"ServerConfig(token={token}, retry_after={self.retry_after}, cancel_delay={self.cancel_delay}, "
            f"max_wait={self.max_wait}, base_url={self.base_url!r})"
        )


class IdempotencyConflict(Exception):
    """The Idempotency-Key was used before with a different body."""


class Store:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.dispatcher = Dispatcher(config.webhook_timeout)
        self.closing = False
        self._sleepers: set[asyncio.Future[None]] = set()
        self._init_state()

    def _init_state(self) -> None:
        self.runs: dict[str, Run] = {}
        self.idempotency: dict[str, tuple[str, str]] = {}
        self.subscriptions: dict[str, Subscription] = {}
        self.global_faults = FaultSet()
        self.global_quota: Quota | None = None
        self.generation = 0
        self.runs_created = 0
        self.requests_total = 0
        self.batch_requests = 0  # GET /runs?ids=...
        self.batch_runs = 0  # runs those answers held
        self.batch_faults = FaultCounters(self.generation)
        self.clients: set[tuple[Any, ...]] = set()
        pair = self.config.client_credentials
        self.tokens = TokenIssuer(*pair, self.config.token_lifetime) if pair else None

    # ---------------------------------------------------------------------------------------- runs

    def create(self, spec: RunSpec, base_url: str, key: str | None, canonical: str) -> tuple[Run, bool]:
        """The run for this request: a new one, or (same key, same body) the one made before."""
        if key is not None and key in self.idempotency:
            seen_body, run_id = self.idempotency[key]
            if seen_body != canonical:
                raise IdempotencyConflict(f"Idempotency-Key {key[:100]!r} was already used with another body")
            run = self.runs[run_id]
            run.counters.post += 1
            return run, False
        run_id = new_run_id()
        while run_id in self.runs:
            run_id = new_run_id()
        run = Run(run_id, f"{base_url}/runs/{run_id}", spec, time.monotonic(), self._on_change)
        run.counters.post += 1
        self.runs[run_id] = run
        self.runs_created += 1
        if key is not None:
            self.idempotency[key] = (canonical, run_id)
        if any(sub.matches(run_id) for sub in self.subscriptions.values()):
            run.collect = True
            self._on_change(run, [run.snapshot], run.next_change == float("inf"))
            run.ensure_timer()
        return run, True

    def counters_for(self, run: Run) -> list[tuple[FaultSet, FaultCounters]]:
        sets = []
        if not run.spec.faults.empty:
            sets.append((run.spec.faults, run.fault_counters))
        if not self.global_faults.empty:
            if run.global_counters.generation != self.generation:
                run.global_counters = FaultCounters(self.generation)
            sets.append((self.global_faults, run.global_counters))
        return sets

    # ---------------------------------------------------------------------------------------- webhooks

    def subscribe(self, spec: SubscriptionSpec) -> Subscription:
        sub = Subscription(new_subscription_id(), spec.url, spec.secret, spec.runs)
        now = time.monotonic()
        for run in self._matching(sub):
            run.advance(now)  # changes before the subscription are not delivered
            run.collect = True
            run.ensure_timer()
        self.subscriptions[sub.id] = sub
        return sub

    def unsubscribe(self, sub_id: str) -> bool:
        sub = self.subscriptions.pop(sub_id, None)
        if sub is None:
            return False
        for run in self._matching(sub):
            run.collect = any(other.matches(run.id) for other in self.subscriptions.values())
        return True

    def _matching(self, sub: Subscription) -> list[Run]:
        if sub.runs is None:
            return list(self.runs.values())
        return [self.runs[r] for r in sub.runs if r in self.runs]

    def _on_change(self, run: Run, changes: list[Snapshot], final: bool) -> None:
        for sub in self.subscriptions.values():
            if sub.matches(run.id):
                self.dispatcher.submit(
                    sub,
                    run.id,
                    changes,
                    final=final,
                    duplicate=run.spec.duplicate,
                    out_of_order=run.spec.out_of_order,
                )

    # ---------------------------------------------------------------------------------------- control

    def set_faults(self, faults: FaultSet) -> None:
        self.global_faults = faults
        self.generation += 1
        self.global_quota = Quota(faults.ratelimit_headers) if faults.ratelimit_headers else None
        self.batch_faults = FaultCounters(self.generation)

    def reset(self) -> None:
        for run in self.runs.values():
            run.collect = False
            run.wake_all()
        self.dispatcher.forget()
        self._init_state()

    def stats(self) -> dict[str, Any]:
        return {
            "runs_created": self.runs_created,
            "requests_total": self.requests_total,
            "connections": len(self.clients),
            "batch": {"requests": self.batch_requests, "runs": self.batch_runs},
            "runs": {run_id: run.counters.to_dict() for run_id, run in self.runs.items()},
            "traceparents": {run_id: dict(run.traceparents) for run_id, run in self.runs.items()},
            "tokens": {
                "issued": self.tokens.issued if self.tokens else 0,
                "expired_seen": self.tokens.expired_seen if self.tokens else 0,
            },
            "webhooks": {
                "subscriptions": len(self.subscriptions),
                "sent": self.dispatcher.sent,
                "failed": self.dispatcher.failed,
            },
        }

    # ---------------------------------------------------------------------------------------- lifecycle

    async def sleep(self, delay: float) -> None:
        """asyncio.sleep that ends early when the server shuts down."""
        if delay <= 0 or self.closing:
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._sleepers.add(waiter)
        handle = loop.call_later(delay, _resolve, waiter)
        try:
            await waiter
        finally:
            handle.cancel()
            self._sleepers.discard(waiter)

    def close(self) -> None:
        """Stop holding requests: wake every long poll and latency sleep, cancel timers."""
        self.closing = True
        for waiter in self._sleepers:
            _resolve(waiter)
        for run in self.runs.values():
            run.wake_all()

    async def aclose(self) -> None:
        self.close()
        await self.dispatcher.aclose()
