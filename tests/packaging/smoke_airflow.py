"""Run by a fresh environment's Python with Airflow and the `airflow-provider-runwatch` wheel installed.

Proves the provider works from its wheel: Airflow's providers manager finds it (entry point, metadata
version, connection type), py.typed is inside it, and `RunStatusTrigger` waits for one real run on the
reference server (started from this environment, 127.0.0.1) through a `runwatch` connection. AIRFLOW_HOME
is set by the test. Prints one JSON line for the test to check.
"""

from __future__ import annotations

import asyncio
import json
import os
from importlib import metadata, resources
from typing import Any

from airflow.providers_manager import ProvidersManager

import runwatch_airflow
from runwatch.server import ReferenceServer
from runwatch_airflow.triggers.runwatch import RunStatusTrigger


async def first_event(trigger: RunStatusTrigger) -> dict[str, Any]:
    async for event in trigger.run():
        return dict(event.payload)
    raise AssertionError("the trigger ended without an event")


with ReferenceServer() as server:
    os.environ["AIRFLOW_CONN_RUNWATCH_DEFAULT"] = json.dumps({"conn_type": "runwatch", "host": server.url})
    created = server.create_run(script=[{"status": "RUNNING", "for": 0.2}, {"status": "SUCCEEDED"}])
    event = asyncio.run(first_event(RunStatusTrigger(run=created["id"], policy={"interval": 0.05})))

manager = ProvidersManager()
provider = manager.providers.get("airflow-provider-runwatch")
print(
    json.dumps(
        {
            "file": runwatch_airflow.__file__,
            "version": runwatch_airflow.__version__,
            "dist_version": metadata.version("airflow-provider-runwatch"),
            "provider_version": provider.version if provider else None,
            "connection_type": "runwatch" in manager.hooks,
            "py_typed": (resources.files("runwatch_airflow") / "py.typed").is_file(),
            "event": event["status"],
            "final": event["result"]["status"]["status"],
        }
    )
)
