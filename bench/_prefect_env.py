"""The environment Prefect reads on import, for the bench cells that run in .venv/prefect: call `isolate`
before `import prefect`."""

from __future__ import annotations

import os
import tempfile


def isolate(home: str | None = None, *, keep_api_url: bool = False) -> str:
    """A Prefect home of the cell's own (`home`, or a new temporary one), no telemetry, quiet logs, and none
    of the user's profile or key; `keep_api_url` keeps the server a parent process named. Returns the home."""
    home = home or tempfile.mkdtemp(prefix="runwatch-bench-prefect-")
    dropped = ("PREFECT_API_KEY", "PREFECT_PROFILE") + (() if keep_api_url else ("PREFECT_API_URL",))
    for name in dropped:
        os.environ.pop(name, None)
    os.environ.update(
        PREFECT_HOME=home,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        PREFECT_SERVER_LOGGING_LEVEL="WARNING",
        PREFECT_LOGGING_LEVEL="WARNING",
    )
    return home
