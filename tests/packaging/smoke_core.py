"""Run by a fresh environment's Python with only the `runwatch[server,cli]` wheel installed.

Proves the wheel works on its own: the package is imported from site-packages (never from the source tree),
the built-in profiles and py.typed are inside it, and one real wait against the reference server (started
from this environment, 127.0.0.1) ends with the run's terminal status, read through the `standard` profile.
Prints one JSON line for the test to check.
"""

from __future__ import annotations

import json
import sys
from importlib import metadata, resources

import runwatch
from runwatch.server import ReferenceServer

package = resources.files("runwatch")
with ReferenceServer() as server:
    created = server.create_run(script=[{"status": "RUNNING", "for": 0.2}, {"status": "SUCCEEDED"}])
    api = runwatch.RunApi(server.url, profile="standard")
    final = runwatch.wait_for_run_sync(
        api, created["id"], policy=runwatch.Policy(interval=0.05, max_interval=0.2)
    )

print(
    json.dumps(
        {
            "file": runwatch.__file__,
            "prefix": sys.prefix,
            "version": runwatch.__version__,
            "dist_version": metadata.version("runwatch"),
            "profiles": runwatch.builtin_profiles(),
            "py_typed": (package / "py.typed").is_file(),
            "profile_used": api.profile.name,
            "status": final.status.value,
            "run_id": final.id == created["id"],
        }
    )
)
