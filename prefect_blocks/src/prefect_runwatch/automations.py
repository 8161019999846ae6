"""The push path: a `runwatch.run.terminal` event resumes the suspended flow run it names, via an automation.

A relay (a webhook receiver for the remote system, say) calls `push_run_status(flow_run_id, status)`; the
automation made by `create_resume_automation()` resumes that flow run at once, and the resumed flow reads the
run's final status once (Prefect's resume action carries no run input). The related flow run has the role
`waiting-flow-run`, so that events of waits that hold their process (role `flow-run`) never trigger it.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from prefect.automations import Automation, EventTrigger, Posture
from prefect.client.orchestration import get_client
from prefect.events.actions import ResumeFlowRun

from prefect_runwatch._observe import TERMINAL_EVENT, run_event
from runwatch import RunStatus

__all__ = ["AUTOMATION_NAME", "WAITING_ROLE", "create_resume_automation", "push_run_status"]

WAITING_ROLE = "waiting-flow-run"
AUTOMATION_NAME = "runwatch: resume flow runs when their remote run ends"


async def create_resume_automation(name: str = AUTOMATION_NAME) -> UUID:
    """Create the automation (once: an existing one of that name is kept); its id."""
    async with get_client() as client:
        existing = await client.read_automations_by_name(name)
    if existing:
        return existing[0].id
    automation = Automation(
        name=name,
        description="Resumes a suspended flow run when a runwatch.run.terminal event names it as the "
        f"{WAITING_ROLE!r} related resource (prefect-runwatch).",
        trigger=EventTrigger(
            expect={TERMINAL_EVENT},
            match_related={"prefect.resource.role": WAITING_ROLE},
            posture=Posture.Reactive,
            threshold=1,
        ),
        actions=[ResumeFlowRun()],
    )
    created = await automation.acreate()
    assert created.id is not None
    return created.id


def push_run_status(flow_run_id: UUID | str, status: RunStatus | dict[str, Any]) -> None:
    """Tell Prefect a remote run's status on behalf of the flow run waiting on it.

    A terminal status emits `runwatch.run.terminal`, which the resume automation acts on; any other emits
    `runwatch.run.<state>` for the record.
    """
    status = status if isinstance(status, RunStatus) else RunStatus.from_dict(status)
    related = [
        {"prefect.resource.id": f"prefect.flow-run.{flow_run_id}", "prefect.resource.role": WAITING_ROLE}
    ]
    name = TERMINAL_EVENT if status.is_terminal else f"runwatch.run.{status.status.value.lower()}"
    run_event(name, status, related)
