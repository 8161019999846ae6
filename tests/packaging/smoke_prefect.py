"""Run by a fresh environment's Python with Prefect and the `prefect-runwatch` wheel installed.

Proves the collection works from its wheel: Prefect finds it (entry point `prefect.collections`), py.typed is
inside it, and a flow waits for one real run on the reference server (started from this environment,
127.0.0.1) with the `start_run_and_wait` task; the flow runs against Prefect's own temporary local server,
as a flow run by hand does. PREFECT_HOME is set by the test. Prints one JSON line for the test to check.
"""

from __future__ import annotations

import asyncio
import json
from importlib import metadata, resources
from typing import Any

from prefect import flow
from prefect.plugins import load_prefect_collections

import prefect_runwatch
from prefect_runwatch import RunStatusApi, start_run_and_wait
from runwatch.server import ReferenceServer

SCRIPT = [{"status": "RUNNING", "for": 0.2}, {"status": "SUCCEEDED", "output_ref": "s3://bucket/out"}]


@flow
async def pipeline(url: str) -> dict[str, Any]:
    return await start_run_and_wait(RunStatusApi(base_url=url), {"script": SCRIPT}, {"interval": 0.05})


with ReferenceServer(retry_after=0) as server:
    final = asyncio.run(pipeline(server.url))

print(
    json.dumps(
        {
            "file": prefect_runwatch.__file__,
            "version": prefect_runwatch.__version__,
            "dist_version": metadata.version("prefect-runwatch"),
            # a module when Prefect imported it, the exception when that failed
            "collection": getattr(load_prefect_collections().get("prefect_runwatch"), "__name__", None),
            "py_typed": (resources.files("prefect_runwatch") / "py.typed").is_file(),
            "status": final["status"],
            "output_ref": final["output_ref"],
        }
    )
)
