"""pytest plugin (registered automatically): a reference server per test.

```
def test_my_dag_waits(runwatch_server):
    run = runwatch_server.create_run(script=[{"status": "RUNNING", "for": 0.2}, {"status": "SUCCEEDED"}])
    ...  # point the code under test at runwatch_server.url or run["url"]


@pytest.mark.runwatch_server(token="s3cret", retry_after=0)
def test_with_auth(runwatch_server): ...
```

Loading this plugin imports nothing heavy: Starlette and uvicorn (the `runwatch[server]` extra) are imported
only when a fixture is used.

For unit tests without a server: `runwatch.MockTransport` answers requests from a function, and `FakeClock`
lets a wait of hours run in milliseconds:

```
clock = FakeClock()
api = RunApi("https://jobs.test", transport=MockTransport(answer), clock=clock)
await wait_for_run(api, "r-1", policy=Policy(timeout=3600))  # clock.slept: every pause the engine took
```
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from runwatch.server import ReferenceServer

__all__ = ["FakeClock", "runwatch_server", "runwatch_server_factory"]


class FakeClock:
    """A `runwatch.Clock` whose time moves only when the engine sleeps (or when you `advance` it).

    `time()` starts at `start` (UNIX seconds), `monotonic()` at 0; `slept` lists every sleep asked for.
    """

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.start = start
        self.elapsed = 0.0
        self.slept: list[float] = []

    def time(self) -> float:
        return self.start + self.elapsed

    def monotonic(self) -> float:
        return self.elapsed

    def advance(self, seconds: float) -> None:
        self.elapsed += seconds

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.elapsed += seconds
        await asyncio.sleep(0)  # let other tasks run, as a real sleep would


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "runwatch_server(**options): options for the runwatch_server fixture's ReferenceServer "
        "(token=..., retry_after=..., cancel_delay=..., max_wait=...)",
    )


@pytest.fixture
def runwatch_server_factory() -> Iterator[Callable[..., ReferenceServer]]:
    """Start reference servers with any options (`factory(token="t")`); all stop when the test ends."""
    from runwatch.server import ReferenceServer

    servers: list[ReferenceServer] = []

    def factory(**options: Any) -> ReferenceServer:
        server = ReferenceServer(**options).start()
        servers.append(server)
        return server

    try:
        yield factory
    finally:
        for server in reversed(servers):
            server.stop()


@pytest.fixture
def runwatch_server(
    request: pytest.FixtureRequest, runwatch_server_factory: Callable[..., ReferenceServer]
) -> ReferenceServer:
    """A started reference server on 127.0.0.1 (a free port), stopped after the test.

    Options come from a `@pytest.mark.runwatch_server(...)` marker on the test, class or module.
    """
    marker = request.node.get_closest_marker("runwatch_server")
    options = dict(marker.kwargs) if marker is not None else {}
    return runwatch_server_factory(**options)
