"""What Prefect is told about a remote run: an event per state change, a progress artifact, a final artifact.

Events are named `runwatch.run.<state>` (`runwatch.run.running`, `runwatch.run.succeeded`, ...) and, once the
run ends, `runwatch.run.terminal`; their resource is the remote run (`runwatch.run.<id>`), their payload the
status object. Event ids are derived from the flow run, the remote run and the event name, so an observation
repeated by a resumed flow or a restarted watcher is one event, not two.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import ArtifactCreate, ArtifactUpdate
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterType,
)
from prefect.context import FlowRunContext, TaskRunContext
from prefect.events import emit_event

from runwatch import RunStatus
from runwatch.text import inert

__all__ = ["TERMINAL_EVENT", "Observer", "run_event", "run_resource"]

TERMINAL_EVENT = "runwatch.run.terminal"
_EVENT_IDS = uuid.UUID("5b0e7f62-8a43-4c1e-9d55-0c7f3e2a9b17")

Logger = logging.Logger | logging.LoggerAdapter[Any]


def run_resource(status: RunStatus) -> dict[str, str]:
    """The remote run as a Prefect event resource."""
    return {
        "prefect.resource.id": f"runwatch.run.{status.id}",
        "prefect.resource.name": status.id,
        "runwatch.status": status.status.value,
        "runwatch.phase": status.phase.value,
    }


def run_event(
    name: str, status: RunStatus, related: list[dict[str, str]], event_id: uuid.UUID | None = None
) -> None:
    """Emit one event about a remote run (payload: the status object, which never holds credentials)."""
    emit_event(
        event=name,
        resource=run_resource(status),
        related=related or None,
        payload={"status": status.to_dict()},
        id=event_id or uuid.uuid4(),
    )


def _percent(status: RunStatus) -> float | None:
    progress = status.progress
    if progress is None:
        return None
    if progress.percent is not None:
        return max(0.0, min(100.0, progress.percent))
    if progress.items_done is not None and progress.items_total:
        return max(0.0, min(100.0, 100.0 * progress.items_done / progress.items_total))
    return None


class Observer:
    """Tells Prefect about one remote run as a wait sees it change. Use as the waiter's `on_change`."""

    def __init__(self, logger: Logger, *, flow_run_id: uuid.UUID | None = None) -> None:
        """In a task or flow run the run ids come from the context; a watcher passes the flow run's id."""
        task_run = TaskRunContext.get()
        flow_run = FlowRunContext.get()
        self.task_run_id = task_run.task_run.id if task_run else None
        self.flow_run_id = flow_run_id or (
            task_run.task_run.flow_run_id
            if task_run
            else flow_run.flow_run.id
            if flow_run and flow_run.flow_run
            else None
        )
        # In a run context Prefect adds the flow run as a related resource itself; a watcher must say it.
        self.related = (
            [{"prefect.resource.id": f"prefect.flow-run.{flow_run_id}", "prefect.resource.role": "flow-run"}]
            if flow_run_id
            else []
        )
        self.logger = logger
        self.last: RunStatus | None = None
        self._progress: tuple[float | None, str | None] | None = None
        self._artifact: uuid.UUID | None = None

    async def __call__(self, status: RunStatus) -> None:
        previous, self.last = self.last, status
        if previous is None or previous.status is not status.status:
            self.logger.info("remote run %s is %s%s", inert(status.id), status.status.value, _detail(status))
            self._emit(f"runwatch.run.{status.status.value.lower()}", status)
            if status.is_terminal:
                self._emit(TERMINAL_EVENT, status)
        percent = _percent(status)
        # Artifacts belong to a run: outside one (a script using RemoteRunJob) there are none.
        if self.flow_run_id and percent is not None and (percent, _message(status)) != self._progress:
            self._progress = (percent, _message(status))
            await self._show_progress(status, percent)

    def _emit(self, name: str, status: RunStatus) -> None:
        seed = f"{self.flow_run_id}|{status.url or status.id}|{name}"
        run_event(name, status, self.related, uuid.uuid5(_EVENT_IDS, seed) if self.flow_run_id else None)

    async def _show_progress(self, status: RunStatus, percent: float) -> None:
        description = f"{_title(status)}: {inert(_message(status) or status.status.value)}"
        async with get_client() as client:
            if self._artifact is None:
                self._artifact = await self._existing_progress(client, status)
            if self._artifact is None:
                created = await client.create_artifact(
                    ArtifactCreate(
                        type="progress",
                        data=percent,
                        description=description,
                        flow_run_id=self.flow_run_id,
                        task_run_id=self.task_run_id,
                    )
                )
                self._artifact = created.id
            else:
                await client.update_artifact(
                    self._artifact, ArtifactUpdate(data=percent, description=description)
                )

    async def _existing_progress(self, client: Any, status: RunStatus) -> uuid.UUID | None:
        # A resumed flow or a restarted watcher carries on with the artifact an earlier observer made.
        if self.flow_run_id is None:
            return None
        found = await client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[self.flow_run_id]),
                type=ArtifactFilterType(any_=["progress"]),
            )
        )
        prefix = f"{_title(status)}:"
        mine = [a for a in found if (a.description or "").startswith(prefix)]
        return mine[-1].id if mine else None

    async def finish(self, status: RunStatus) -> None:
        """The final artifact: a summary of the run and a link to its result."""
        if self.flow_run_id is None:
            return
        async with get_client() as client:
            await client.create_artifact(
                ArtifactCreate(
                    type="markdown",
                    data=summary(status),
                    description=f"{_title(status)} ended {status.status.value}",
                    flow_run_id=self.flow_run_id,
                    task_run_id=self.task_run_id,
                )
            )


def summary(status: RunStatus) -> str:
    """A markdown summary of a terminal run, with its result link; the remote's words shown as data."""
    rows = [
        ("status", f"{status.status.value}" + (f" ({status.raw_status})" if status.raw_status else "")),
        ("started", status.started_at.isoformat() if status.started_at else None),
        ("ended", status.ended_at.isoformat() if status.ended_at else None),
        ("duration", f"{status.duration:.1f} s" if status.duration is not None else None),
        ("executor", status.executor),
        ("errors", status.error_message),
        ("run", status.url),
    ]
    lines = [f"### {_title(status)}", "", "| | |", "| --- | --- |"]
    lines += [f"| {name} | {_cell(value)} |" for name, value in rows if value]
    if status.output_ref:
        link = inert(status.output_ref)
        lines += ["", f"**Result:** [{link}]({link})"]
    return "\n".join(lines)


def _title(status: RunStatus) -> str:
    return f"Remote run `{inert(status.id)}`"


def _cell(value: str) -> str:
    return inert(value).replace("|", "\\|")


def _message(status: RunStatus) -> str | None:
    return status.progress.message if status.progress else None


def _detail(status: RunStatus) -> str:
    parts = []
    percent = _percent(status)
    if percent is not None:
        parts.append(f"{percent:.0f}%")
    if status.error_message:
        parts.append(inert(status.error_message))
    return f" ({'; '.join(parts)})" if parts else ""
