"""Remote text stays inert in Prefect: task logs and artifacts show control characters as escapes."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.runtime import flow_run
from prefect_harness import FAST, eventually

import runwatch
from prefect_runwatch import RunStatusApi, wait_for_run
from runwatch.server import ReferenceServer

HOSTILE = "boom\n::error file=flow.py::pwned\x1b[2J\x07"
SHOWN = "boom\\n::error file=flow.py::pwned\\x1b[2J\\x07"


async def test_logs_and_artifacts_show_remote_text_as_data(
    api: RunStatusApi, server: ReferenceServer
) -> None:
    script = [
        {"status": "QUEUED", "for": 1.0},
        {"status": "RUNNING", "for": 3.0, "progress": {"percent": 30, "message": HOSTILE}},
        {"status": "FAILED", "errors": [{"message": HOSTILE}]},
    ]
    run: dict[str, Any] = {}

    @flow
    async def pipeline() -> str:
        # Started here, not before the flow run: a flow run slow to start still sees every state.
        run.update(server.create_run(script=script))
        with pytest.raises(runwatch.RunFailed) as info:
            await wait_for_run(run["id"], api, FAST)
        assert str(info.value) == f"run {run['id']} failed: {SHOWN}"
        return str(flow_run.id)

    flow_run_id = UUID(await pipeline())

    async def failed_line() -> list[str] | None:
        async with get_client() as client:
            logs = await client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
        lines = [log.message for log in logs if log.message.startswith("remote run ")]
        return lines if any("FAILED" in line for line in lines) else None

    lines = await eventually(failed_line, 30, "the task's log lines")
    assert f"remote run {run['id']} is RUNNING (30%)" in lines
    assert f"remote run {run['id']} is FAILED ({SHOWN})" in lines

    async with get_client() as client:
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    by_type: dict[str, Any] = {a.type: a for a in artifacts}
    assert by_type["progress"].description == f"Remote run `{run['id']}`: {SHOWN}"
    assert f"| errors | {SHOWN} |" in by_type["markdown"].data.splitlines()
    for artifact in artifacts:
        text = f"{artifact.description}{artifact.data}"
        assert "\x1b" not in text and "\x07" not in text
