"""The deployments the end-to-end tests run, served by `python served_flows.py` in a subprocess.

`released_wait` holds its process for `hold` seconds first (so a test can see the process alive), then starts
a remote run and releases its infrastructure. `nightly_export` is the example flow users copy. `load_after`
starts from a `runwatch.run.ended` event of the source `e2e-upstream` (docs/events.md), with the run's id
and final state as parameters.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from prefect import flow, serve
from prefect.events import DeploymentEventTrigger

from prefect_runwatch import start_run_and_wait

POLICY = {"interval": 0.2, "max_interval": 0.5}
EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "prefect"


@flow(persist_result=True)
async def released_wait(script: list[dict[str, Any]], api_block: str, hold: float = 0.0) -> dict[str, Any]:
    if hold:
        await asyncio.sleep(hold)
    return await start_run_and_wait(api_block, {"script": script}, POLICY, release_infrastructure=True)


@flow
def load_after(run_id: str, status: str) -> dict[str, str]:
    return {"run_id": run_id, "status": status}


ON_UPSTREAM_END = DeploymentEventTrigger(
    expect={"runwatch.run.ended"},
    match={"runwatch.source": "e2e-upstream"},
    parameters={"run_id": "{{ event.resource.name }}", "status": "{{ event.payload.status.status }}"},
)


if __name__ == "__main__":
    sys.path.insert(0, str(EXAMPLES))
    from remote_jobs import nightly_export  # the example, as users copy it

    serve(
        released_wait.to_deployment("e2e"),
        nightly_export.to_deployment("example"),
        load_after.to_deployment("e2e", triggers=[ON_UPSTREAM_END]),
        limit=20,
    )
