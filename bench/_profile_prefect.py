"""Where the flow process's CPU goes: py-spy's raw samples of the Prefect cell, summed by whose code ran.

py-spy (`record --threads --format raw`) writes one line per distinct stack: `frame;frame;... count`, a
frame being `function (file:line)`, the thread first. A sample of the main thread counts when it is inside
the flow call (`_flow_call`): imports and the test server's start are left out. Every sample is given to
its owner: walking from the innermost frame outwards, the first frame in runwatch's code (the core or
prefect_runwatch) or in Prefect's; a library frame (pydantic, httpx, aiohttp, asyncio) is the cost of
whoever called it. Prefect's share is split by module.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

__all__ = ["summarize"]

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^():]+):\d+\)$")
_PREFECT_PARTS = (
    ("prefect/task_engine", "task-run engine (prefect.task_engine)"),
    ("prefect/tasks.py", "task objects and calls (prefect.tasks)"),
    ("prefect/flow_engine", "flow-run engine (prefect.flow_engine)"),
    ("prefect/server/", "server code in the flow's process (prefect.server)"),
    ("prefect/settings/", "settings (prefect.settings)"),
    ("prefect/blocks/", "blocks (prefect.blocks)"),
    ("prefect/states", "states (prefect.states)"),
    ("prefect/client/", "API client (prefect.client)"),
    ("prefect/events/", "events (prefect.events)"),
    ("prefect/logging/", "logging to the API (prefect.logging)"),
    ("prefect/_internal/", "internals (prefect._internal: concurrency, portals)"),
    ("prefect/results", "results (prefect.results)"),
    ("prefect/context", "run contexts (prefect.context)"),
)


def _owner(files: list[str]) -> str:
    for file in reversed(files):  # innermost first
        if "prefect_runwatch/" in file:
            return "runwatch: prefect_runwatch (the task, its logs and events)"
        if "runwatch/" in file and "prefect" not in file:
            return "runwatch: core waiter (polling, parsing, state machine)"
        if file.startswith("prefect/") or "/prefect/" in file:
            for part, label in _PREFECT_PARTS:
                if part in file:
                    return f"Prefect: {label}"
            return "Prefect: other modules"
    return "event loop and libraries, with no runwatch or Prefect caller"


def summarize(raw: Path) -> dict[str, float]:
    """Share (0..1) of the flow-call CPU samples per owner; empty if py-spy wrote nothing usable."""
    owners: Counter[str] = Counter()
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = stack.split(";")
        files = [m.group("file") for f in frames if (m := _FRAME.match(f))]
        if frames[0].endswith(": MainThread") and not any(f.startswith("_flow_call ") for f in frames):
            continue
        owners[_owner(files)] += int(count)
    total = sum(owners.values())
    return {owner: n / total for owner, n in owners.most_common()} if total else {}
