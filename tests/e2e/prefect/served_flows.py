"""The deployments the end-to-end tests run, served by `python served_flows.py` in a subprocess.

`released_wait` holds its process for `hold` seconds first (so a test can see the process alive), then starts
a remote run and releases its infrastructure. `nightly_export` is the example flow users copy.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from prefect import flow, serve

from prefect_runwatch import start_run_and_wait

POLICY = {"interval": 0.2, "max_interval": 0.5}
EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "prefect"


@flow(persist_result=True)
async def released_wait(script: list[dict[str, Any]], api_block: str, hold: float = 0.0) -> dict[str, Any]:
    if hold:
        await asyncio.sleep(hold)
    return await start_run_and_wait(api_block, {"script": script}, POLICY, release_infrastructure=True)


if __name__ == "__main__":
    sys.path.insert(0, str(EXAMPLES))
    from remote_jobs import nightly_export  # the example, as users copy it

    serve(released_wait.to_deployment("e2e"), nightly_export.to_deployment("example"), limit=20)
