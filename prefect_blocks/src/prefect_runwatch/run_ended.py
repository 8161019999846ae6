"""The event source: one Prefect event per remote run that ends, for deployments to start from.

`RunEndedEvents` reads the runs a `RunStatusApi` lists under a filter (the profile's `[list_runs]` endpoint,
its placeholders filled from `params`: `{"dag_id": "load"}` for the `airflow` profile, `{"deployment_id":
...}` for `prefect`) and emits `runwatch.run.ended` once for each run that reaches a terminal state. The
event's resource is the remote run (`runwatch.run.<id>`, named by the run id, labelled with its status and
with `runwatch.source`, the source's name); its payload is `{"status": <final status>}`, without secrets.
A deployment starts from it with a `DeploymentEventTrigger` (docs/events.md).

The cursor (which runs are known to have ended) is an `EndedRunsCursor` block named
`runwatch-ended-<source>`, saved after the events it covers were sent. Event ids are derived from the source
and the run, so an event sent again after a crash between the send and the save has the id of the first
one, and Prefect's automations act on an event id once.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import Mapping
from typing import Any

from prefect.blocks.core import Block
from prefect.events import Event
from prefect.events.clients import get_events_client
from prefect.exceptions import ObjectAlreadyExists
from pydantic import Field

import runwatch
from prefect_runwatch._observe import run_resource
from prefect_runwatch.blocks import DOCS_URL, RunStatusApi
from runwatch import EndedRuns, RunStatus
from runwatch._ended import OUTCOMES, fires
from runwatch.text import inert

__all__ = ["ENDED_EVENT", "EndedRunsCursor", "RunEndedEvents"]

ENDED_EVENT = "runwatch.run.ended"
_EVENT_IDS = uuid.UUID("0c4e3a52-6f0b-4d4e-9a63-2f1b8d7c5e90")
_SOURCE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")

log = logging.getLogger("prefect_runwatch.run_ended")


class EndedRunsCursor(Block):
    """Which remote runs under one event source's filter are known to have ended (kept by the source)."""

    _block_type_name = "runwatch Ended Runs Cursor"
    _block_type_slug = "runwatch-ended-runs-cursor"
    _description = (
        "The cursor of a runwatch event source: the ids of the remote runs it has already announced as "
        "ended, so that a restarted source neither repeats nor loses one. Written by the source itself."
    )
    _documentation_url = DOCS_URL
    _code_example = """
```python
from prefect_runwatch.run_ended import EndedRunsCursor

cursor = EndedRunsCursor.load("BLOCK_NAME")
print(len(cursor.seen), "runs known to have ended")
```
"""

    seen: list[str] = Field(
        default_factory=list, description="Ids of the runs known to have ended, the oldest first."
    )


class RunEndedEvents:
    """Emit `runwatch.run.ended` once per remote run that ends among those an API lists under a filter.

    `api` is a `RunStatusApi` or its block name; its profile needs a `[list_runs]` section. `source` names
    this watch (lowercase letters, digits and dashes): it labels each event (`runwatch.source`) and names
    the cursor block. `params` fills the list endpoint's placeholders and wins over the block's. `outcomes`
    is `"any"` (every terminal state) or `"succeeded"`. `interval` is the pause between two reads, in
    seconds; a failed read is logged and retried later, and never emits.

    Raises ValueError for a bad `source`, `outcomes` or `interval`.
    """

    def __init__(
        self,
        api: RunStatusApi | str,
        source: str,
        *,
        params: Mapping[str, str] | None = None,
        outcomes: runwatch.Outcomes = "any",
        interval: float = 30.0,
    ) -> None:
        if not _SOURCE.fullmatch(source):
            raise ValueError(f"source must be lowercase letters, digits and dashes, not {source!r}")
        if outcomes not in OUTCOMES:
            raise ValueError(f"outcomes must be one of {', '.join(OUTCOMES)}, not {outcomes!r}")
        given: object = interval
        if not isinstance(given, (int, float)) or isinstance(given, bool) or given <= 0:
            raise ValueError(f"interval must be a positive number of seconds, not {interval!r}")
        self.api = api
        self.source = source
        self.params = {str(k): str(v) for k, v in (params or {}).items()}
        self.outcomes: runwatch.Outcomes = outcomes
        self.interval = float(interval)
        self.emitted = 0
        self._announcing = asyncio.Lock()

    @property
    def cursor_block(self) -> str:
        return f"runwatch-ended-{self.source}"

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Watch and emit until `stop` is set (or for ever).

        A stop never cuts an announcement short: the events of a read and the cursor that covers them are
        sent and saved together first.
        """
        loop = asyncio.create_task(self._loop(), name=f"runwatch-ended-{self.source}")
        try:
            if stop is None:
                await loop
                return
            stopped = asyncio.create_task(stop.wait())
            await asyncio.wait({loop, stopped}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            if loop.done():
                loop.result()  # an error of the source itself (a bad block): raised here
        finally:
            async with self._announcing:  # not in the middle of one
                loop.cancel()
            await asyncio.gather(loop, return_exceptions=True)

    async def _loop(self) -> None:
        block = self.api if isinstance(self.api, RunStatusApi) else await RunStatusApi.aload(self.api)
        api = block.get_api()
        api.params.update(self.params)  # the filter wins over the block's values
        cursor = await self._load_cursor()
        log.info("source %s: watching %s for runs that end", self.source, api.base_url)
        async for runs in runwatch.run_lists(api, interval=self.interval):
            async with self._announcing:
                attempt = cursor.copy()
                ended = attempt.update(runs)
                try:
                    await self._emit([status for status in ended if fires(status, self.outcomes)])
                    if ended or not cursor.started:
                        await self._save_cursor(attempt)
                except Exception as exc:  # Prefect's API away: the next read announces these again, same ids
                    log.warning("source %s: could not tell Prefect (%s); trying again", self.source, exc)
                else:
                    cursor = attempt

    async def _load_cursor(self) -> EndedRuns:
        try:
            stored: EndedRunsCursor = await EndedRunsCursor.aload(self.cursor_block)
        except ValueError:  # no such block yet: a new source, which does not replay the past
            return EndedRuns()
        return EndedRuns(stored.seen)

    async def _save_cursor(self, cursor: EndedRuns) -> None:
        block = EndedRunsCursor(seen=cursor.seen)
        try:
            await block.asave(self.cursor_block, overwrite=True)
        except ObjectAlreadyExists:  # another source registered the block type just now: it is there
            await block.asave(self.cursor_block, overwrite=True)

    async def _emit(self, ended: list[RunStatus]) -> None:
        if not ended:
            return
        # Sent and awaited one by one before the cursor is saved: a crash loses no event, and one sent
        # twice keeps its id.
        async with get_events_client() as client:
            for status in ended:
                await client.emit(self.event(status))
                self.emitted += 1
                log.info("source %s: run %s ended %s", self.source, inert(status.id), status.status.value)

    def event(self, status: RunStatus) -> Event:
        """The `runwatch.run.ended` event of one run (its id is the same each time it is made)."""
        payload = status.to_dict()
        payload.pop("observed_at", None)
        resource: dict[str, Any] = {**run_resource(status), "runwatch.source": self.source}
        return Event(
            event=ENDED_EVENT,
            resource=resource,
            payload={"status": payload},
            id=uuid.uuid5(_EVENT_IDS, f"{self.source}/{status.id}"),
        )
