"""Shared by the Prefect suites' conftests: a private PREFECT_HOME and one real Prefect server per session.

Imported before Prefect reads any setting, so that nothing here talks to a server or home configured
outside the project.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

HOME = tempfile.mkdtemp(prefix="runwatch-prefect-home-")
CANARY = "canary-7f3c9e1d2b4a4c8e9f00d1e2a3b4c5d6"  # the token every authenticated test server asks for

SHARED = "RUNWATCH_PREFECT_SHARED_API"
"""Already running test servers (API URLs, space-separated) to use instead of starting one: mutation/run.py
starts one per mutant it tests at once, for the many short test sessions of a mutation run (each would
otherwise start its own, about 8 s). A session takes one that no other session holds: two sessions writing
to one server's SQLite database meet "database is locked", which would fail a test for no fault of its own."""

for _name in ("PREFECT_API_URL", "PREFECT_API_KEY", "PREFECT_PROFILE"):
    os.environ.pop(_name, None)
os.environ.update(
    {
        "PREFECT_HOME": HOME,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
        "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_FLUSH_INTERVAL": "0.5",
    }
)

FAST: dict[str, Any] = {"interval": 0.1, "max_interval": 0.3}
"""A policy that polls fast enough for tests."""

_stack = contextlib.ExitStack()
_url: str | None = None
T = TypeVar("T")


def start() -> str:
    """The API URL of the session's Prefect test server (started on first use: about 8 s)."""
    global _url
    if _url is None and os.environ.get(SHARED):
        from prefect.settings import PREFECT_API_URL, temporary_settings

        _url = _claim(os.environ[SHARED].split())
        _stack.enter_context(temporary_settings({PREFECT_API_URL: _url}))
    if _url is None:
        from prefect.settings import PREFECT_API_URL
        from prefect.testing.utilities import prefect_test_harness

        _stack.enter_context(prefect_test_harness(server_startup_timeout=90))
        _url = PREFECT_API_URL.value()
    return _url


def _claim(urls: list[str], wait: float = 600.0) -> str:
    """The first of `urls` that no other process holds, held until `stop()` or this process's exit (a lock
    file per server: the kernel releases it with the process)."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        for url in urls:
            name = hashlib.sha256(url.encode()).hexdigest()[:16]
            lock = os.open(
                Path(tempfile.gettempdir()) / f"runwatch-prefect-{name}.lock", os.O_CREAT | os.O_RDWR
            )
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(lock)
                continue
            _stack.callback(os.close, lock)  # closing the file releases the lock
            return url
        time.sleep(0.2)
    raise RuntimeError(f"no shared Prefect test server came free in {wait:g}s: {' '.join(urls)}")


def stop() -> None:
    global _url
    _stack.close()
    _url = None


async def eventually(
    probe: Callable[[], Awaitable[T | None]], timeout: float, what: str, every: float = 0.5
) -> T:
    """Poll `probe` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(every)


def subprocess_env(**extra: Any) -> dict[str, str]:
    """The environment for a subprocess that must talk to the session's Prefect server."""
    return {**os.environ, "PREFECT_API_URL": start(), **{k: str(v) for k, v in extra.items()}}
