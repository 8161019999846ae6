"""What Prefect is told: an event per remote state change, a progress artifact, a final artifact."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from prefect import flow
from prefect.automations import Automation
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
from prefect.runtime import flow_run
from prefect_harness import FAST, eventually

from prefect_runwatch import RunStatusApi, create_resume_automation, wait_for_run
from prefect_runwatch.automations import WAITING_ROLE
from runwatch.server import ReferenceServer


async def _events(run_id: str) -> list[Any]:
    async with get_client() as client:
        page = await client.read_events(
            EventFilter(
                event=EventNameFilter(prefix=["runwatch.run."]),
                resource=EventResourceFilter(id=[f"runwatch.run.{run_id}"]),
            ),
            limit=50,  # the server's maximum (the client's default, 100, is refused)
        )
    return sorted(page.events, key=lambda e: e.occurred)


async def test_events_on_state_changes_and_artifacts(api: RunStatusApi, server: ReferenceServer) -> None:
    script = [
        {"status": "QUEUED", "for": 2.0},
        {"status": "RUNNING", "for": 0.6, "progress": {"percent": 30, "message": "reading"}},
        {"status": "RUNNING", "for": 0.6, "progress": {"items_done": 8, "items_total": 10}},
        {"status": "SUCCEEDED", "output_ref": "s3://lake/out/part-0.parquet"},
    ]
    run: dict[str, Any] = {}

    @flow
    async def pipeline() -> str:
        # Started here, not before the flow run: however long a loaded machine takes to start the flow run,
        # the first read still finds the run QUEUED.
        run.update(server.create_run(script=script))
        await wait_for_run(run["id"], api, FAST)
        return str(flow_run.id)

    flow_run_id = await pipeline()

    async def all_four() -> list[Any] | None:
        events = await _events(run["id"])
        return events if len(events) >= 4 else None

    events = await eventually(all_four, 30, "the run's events")
    assert [e.event for e in events] == [
        "runwatch.run.queued",
        "runwatch.run.running",  # once: progress alone is not a state change
        "runwatch.run.succeeded",
        "runwatch.run.terminal",
    ]
    last = events[-1]
    assert last.resource["runwatch.status"] == "SUCCEEDED"
    assert last.payload["status"]["output_ref"] == "s3://lake/out/part-0.parquet"
    assert f"prefect.flow-run.{flow_run_id}" in {r.id for r in last.related}

    async with get_client() as client:
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(flow_run_id)]))
        )
    by_type = {a.type: a for a in artifacts}
    assert by_type["progress"].data == 80.0  # 8 of 10 items, the last progress seen
    assert "[s3://lake/out/part-0.parquet](s3://lake/out/part-0.parquet)" in by_type["markdown"].data
    assert "SUCCEEDED" in by_type["markdown"].data


async def test_resume_automation_is_created_once() -> None:
    first = await create_resume_automation()
    assert await create_resume_automation() == first
    automation = await Automation.aread(id=first)
    assert automation.trigger.expect == {"runwatch.run.terminal"}
    assert automation.trigger.match_related.model_dump() == {"prefect.resource.role": WAITING_ROLE}
    assert [action.type for action in automation.actions] == ["resume-flow-run"]
