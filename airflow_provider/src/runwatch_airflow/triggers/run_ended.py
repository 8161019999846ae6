"""`RunEndedTrigger`: an event trigger for `AssetWatcher` that fires once for each remote run that ends.

It reads the runs a run API lists under a filter (the profile's `[list_runs]` endpoint, its parameters such
as `dag_id` or `deployment_id` given in `params`) and yields one `TriggerEvent` per run that reaches a
terminal state; the payload is that run's final status (`RunStatus.to_dict()` without `observed_at`), which
holds no credentials. A run is announced the first time it is seen ended, never again while the cursor
remembers it: "the job succeeded" staying true schedules nothing more.

Sharing and the cursor (docs/events.md has the guarantees):

- Assets whose watchers have equal kwargs share one trigger row (Airflow's `BaseEventTrigger.hash`), so one
  poll, and each event goes to every one of those assets.
- Triggers with the same connection, profile, params and interval share one poll in the triggerer
  (`shared_stream_key`) even when their `outcomes` differ; each applies its own cursor to every answer.
- The cursor is kept in the asset state store of every asset the trigger watches (Airflow 3.3), under a key
  derived from the kwargs. It is written `PERSIST_GRACE` seconds after the events it covers were handed to
  the triggerer, so that a restart repeats rather than loses an event whose storing was cut short.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Hashable, Mapping
from typing import Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

import runwatch
from runwatch import EndedRuns, RunStatus
from runwatch._ended import OUTCOMES, fires
from runwatch_airflow._connection import ProfileSpec
from runwatch_airflow.exceptions import RunwatchArgumentError
from runwatch_airflow.hooks.runwatch import RunStatusHook

__all__ = ["CURSOR_KEY_PREFIX", "PERSIST_GRACE", "RunEndedTrigger"]

CURSOR_KEY_PREFIX = "runwatch.ended."
PERSIST_GRACE = 5.0  # seconds: the triggerer stores an event within a sync or two (about 1 s each)


class RunEndedTrigger(BaseEventTrigger):
    """Fire one event per remote run that ends, among the runs a run API lists under a filter.

    `conn_id` is a `runwatch` connection (its token is read when the trigger runs, never stored in the
    kwargs); `profile` overrides the connection's profile and must have a `[list_runs]` section (built-in:
    `airflow`, `prefect`, `databricks`, `dbt-cloud`, `github-actions`...); `params` fills the list endpoint's
    placeholders (the filter: `{"dag_id": "load"}` for `airflow`, `{"deployment_id": ...}` for `prefect`) and
    wins over the connection's. `outcomes` is `"any"` (every terminal state) or `"succeeded"` (SUCCEEDED
    only). `interval` is the pause between two reads of the list, in seconds; a failed read is logged and
    retried later (the pause doubles, up to 5 minutes), and never fires.

    Raises `RunwatchArgumentError` for an unknown `outcomes` or an `interval` that is not positive.
    """

    def __init__(
        self,
        *,
        conn_id: str = RunStatusHook.default_conn_name,
        profile: ProfileSpec | None = None,
        params: Mapping[str, str] | None = None,
        outcomes: runwatch.Outcomes = "any",
        interval: float = 30.0,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Airflow's BaseEventTrigger.__init__ is untyped
        if outcomes not in OUTCOMES:
            raise RunwatchArgumentError(f"outcomes must be one of {', '.join(OUTCOMES)}, not {outcomes!r}")
        given: object = interval  # kwargs come from DAG files and storage: check, not trust, the type
        if not isinstance(given, (int, float)) or isinstance(given, bool) or given <= 0:
            raise RunwatchArgumentError(f"interval must be a positive number of seconds, not {interval!r}")
        self.conn_id = conn_id
        self.profile = profile
        self.params = {str(k): str(v) for k, v in (params or {}).items()}
        self.outcomes: runwatch.Outcomes = outcomes
        self.interval = float(interval)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "conn_id": self.conn_id,
                "profile": self.profile,
                "params": self.params,
                "outcomes": self.outcomes,
                "interval": self.interval,
            },
        )

    def shared_stream_key(self) -> Hashable:
        """One poll for every trigger that reads the same list the same way (`outcomes` aside)."""
        return ("runwatch.run_ended", *_poll_identity(self.serialize()[1]))

    @property
    def cursor_key(self) -> str:
        """The asset state store key of this trigger's cursor (the same kwargs give the same key)."""
        identity = [*_poll_identity(self.serialize()[1]), self.outcomes]
        return CURSOR_KEY_PREFIX + hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:16]

    @classmethod
    async def open_shared_stream(cls, kwargs: dict[str, Any]) -> AsyncIterator[list[RunStatus]]:
        """Every answer of the list endpoint, one read per `interval` seconds, for ever."""
        hook = RunStatusHook(kwargs.get("conn_id", RunStatusHook.default_conn_name), kwargs.get("profile"))
        api = await hook.aget_api()
        api.params.update(kwargs.get("params") or {})  # the filter wins over the connection's values
        async for runs in runwatch.run_lists(api, interval=float(kwargs.get("interval", 30.0))):
            yield runs

    async def filter_shared_stream(
        self, shared_stream: AsyncIterator[list[RunStatus]]
    ) -> AsyncIterator[TriggerEvent]:
        """This trigger's events from the list answers: one per run that ended, under `outcomes`."""
        cursor = await self._load_cursor()
        async for runs in shared_stream:
            first = not cursor.started
            ended = cursor.update(runs)
            for status in ended:
                self.log.info("run %s ended %s", runwatch.text.inert(status.id), status.status.value)
                if fires(status, self.outcomes):
                    yield TriggerEvent(_payload(status))
            if ended:
                await asyncio.sleep(PERSIST_GRACE)  # let the triggerer store those events first
            if ended or first:
                await self._save_cursor(cursor)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """The trigger's own poll (outside a triggerer's shared streams: `dag.test`, older triggerers)."""
        async for event in self.filter_shared_stream(self.open_shared_stream(self.serialize()[1])):
            yield event

    async def _load_cursor(self) -> EndedRuns:
        cursor = EndedRuns()
        for accessor in _accessors(self.asset_state_store):
            try:
                cursor.merge(EndedRuns.from_dict(await accessor.aget(self.cursor_key)))
            except ValueError as exc:  # not ours, or damaged: start afresh rather than guess
                self.log.warning("ignoring the stored cursor %s: %s", self.cursor_key, exc)
        return cursor

    async def _save_cursor(self, cursor: EndedRuns) -> None:
        for accessor in _accessors(self.asset_state_store):
            try:
                await accessor.aset(self.cursor_key, cursor.to_dict())
            except Exception as exc:  # the API server away: the next save carries it
                self.log.warning("could not store the cursor %s: %s", self.cursor_key, exc)


def _poll_identity(kwargs: Mapping[str, Any]) -> tuple[str, str, str, float]:
    profile = kwargs.get("profile")
    return (
        str(kwargs.get("conn_id", RunStatusHook.default_conn_name)),
        json.dumps(profile, sort_keys=True, default=str),
        json.dumps(dict(sorted((kwargs.get("params") or {}).items()))),
        float(kwargs.get("interval", 30.0)),
    )


def _accessors(store: Any) -> list[Any]:
    """The state store accessor of each asset the trigger watches (none outside a triggerer).

    Airflow 3.3 lists them only privately; a store of another shape gives none (the cursor is then in
    memory only, as it is in `dag.test`).
    """
    if store is None:
        return []
    return [*getattr(store, "_by_name", {}).values(), *getattr(store, "_by_uri", {}).values()]


def _payload(status: RunStatus) -> dict[str, Any]:
    """The final status as event data; `observed_at` is left out so that HA duplicates of an event match."""
    payload = status.to_dict()
    payload.pop("observed_at", None)
    return payload
