"""The event source of runs that end, on the harness's Prefect server and a reference server's Airflow-shaped
API: one `runwatch.run.ended` per run that ends, its cursor block, and a restart that neither loses nor
repeats one."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
import pytest
from prefect.blocks.core import Block
from prefect.settings import PREFECT_API_URL
from prefect.testing.standard_test_suites import BlockStandardTestSuite
from prefect_harness import CANARY, eventually

from prefect_runwatch import RunStatusApi
from prefect_runwatch.cli import main
from prefect_runwatch.run_ended import ENDED_EVENT, EndedRunsCursor, RunEndedEvents
from runwatch.server import ReferenceServer


class TestEndedRunsCursorConventions(BlockStandardTestSuite):
    test_has_a_valid_image = None  # Prefect's logo check downloads the image; the blocks ship no logo

    @pytest.fixture
    def block(self) -> type[Block]:
        return EndedRunsCursor


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"source": "Nightly Load"},
            "source must be lowercase letters, digits and dashes, not 'Nightly Load'",
        ),
        ({"outcomes": "failed"}, "outcomes must be one of succeeded, any, not 'failed'"),
        ({"interval": -1}, "interval must be a positive number of seconds, not -1"),
    ],
)
def test_bad_options_are_refused_in_one_line(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=f"^{message}$"):
        RunEndedEvents("api", **{"source": "load", **kwargs})


def test_the_command_refuses_a_filter_that_is_not_name_equals_value(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["events", "--api-block", "x", "--source", "load", "--param", "dag_id"])
    assert exited.value.code == 2
    assert "want NAME=VALUE, not 'dag_id'" in capsys.readouterr().err


async def _events(source: str) -> list[dict[str, Any]]:
    """The `runwatch.run.ended` events Prefect stored for this source."""
    body = {
        "filter": {"event": {"name": [ENDED_EVENT]}, "resource": {"labels": {"runwatch.source": [source]}}},
        "limit": 50,
    }
    async with httpx.AsyncClient() as client:
        answer = await client.post(f"{PREFECT_API_URL.value()}/events/filter", json=body)
    answer.raise_for_status()
    return list(answer.json()["events"])


class _Running:
    """A source running in this loop, stopped by `stop()`."""

    def __init__(self, source: RunEndedEvents) -> None:
        self.source = source
        self.stopping = asyncio.Event()
        self.task = asyncio.create_task(source.run(self.stopping))

    async def looked(self) -> None:
        """Once the source has read the list once (its cursor block is saved)."""

        async def saved() -> bool:
            assert not self.task.done(), self.task
            try:
                await EndedRunsCursor.aload(self.source.cursor_block)
            except ValueError:
                return False
            return True

        await eventually(saved, 60, f"the first look of {self.source.source}", every=0.1)

    async def emitted(self, count: int) -> None:
        async def enough() -> bool:
            assert not self.task.done(), self.task
            return self.source.emitted >= count

        await eventually(enough, 60, f"{count} events from {self.source.source}", every=0.1)

    async def stop(self) -> None:
        self.stopping.set()
        await self.task


async def test_one_event_per_run_that_ends_and_a_restart_neither_loses_nor_repeats_one(
    runwatch_server_factory: Any,
) -> None:
    server: ReferenceServer = runwatch_server_factory(token=CANARY)
    api = RunStatusApi(base_url=f"{server.url}/vendors/airflow", profile="airflow", token=CANARY)
    name = f"t-{uuid.uuid4().hex[:8]}"  # the harness's server is shared by the session: a name of our own
    history = server.create_vendor_run("airflow", [{"state": "success"}])["id"]  # ended before anyone looked
    first = RunEndedEvents(api, name, params={"dag_id": "upstream"}, interval=0.1)
    only_ok = RunEndedEvents(
        api, f"{name}-ok", params={"dag_id": "upstream"}, outcomes="succeeded", interval=0.1
    )
    sources = [_Running(first), _Running(only_ok)]
    await asyncio.gather(*(source.looked() for source in sources))
    ok = server.create_vendor_run("airflow", [{"state": "running", "for": 0.5}, {"state": "success"}])["id"]
    bad = server.create_vendor_run("airflow", [{"state": "running", "for": 0.5}, {"state": "failed"}])["id"]
    await asyncio.gather(sources[0].emitted(2), sources[1].emitted(1))
    await asyncio.gather(*(source.stop() for source in sources))

    # While the source is away, one more run ends; the next source of that name announces it, and only it.
    late = server.create_vendor_run("airflow", [{"state": "failed"}])["id"]
    cursor = await EndedRunsCursor.aload(f"runwatch-ended-{name}")
    assert {history, ok, bad} <= set(cursor.seen) and late not in cursor.seen
    again = RunEndedEvents(api, name, params={"dag_id": "upstream"}, interval=0.1)
    running = _Running(again)
    await running.emitted(1)
    await asyncio.sleep(0.5)  # several more reads: nothing more
    await running.stop()
    assert again.emitted == 1

    async def stored() -> list[dict[str, Any]] | None:
        events = await _events(name)
        return events if len(events) >= 3 else None

    events = await eventually(stored, 30, "the events in Prefect")
    ended = sorted((e["resource"]["prefect.resource.name"], e["payload"]["status"]["status"]) for e in events)
    assert ended == sorted([(ok, "SUCCEEDED"), (bad, "FAILED"), (late, "FAILED")])
    [event] = [e for e in events if e["resource"]["prefect.resource.name"] == ok]
    assert event["resource"]["prefect.resource.id"] == f"runwatch.run.{ok}"
    assert (event["resource"]["runwatch.source"], event["resource"]["runwatch.status"]) == (name, "SUCCEEDED")
    assert event["payload"]["status"]["url"].endswith(f"/dagRuns/{ok}")
    assert event["id"] == str(first.event(_status(event)).id)  # made again, the same id
    assert [(e["resource"]["prefect.resource.name"]) for e in await _events(f"{name}-ok")] == [ok]
    assert CANARY not in json.dumps(events)


def _status(event: dict[str, Any]) -> Any:
    from runwatch import RunStatus

    return RunStatus.from_dict(event["payload"]["status"])
