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
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from runwatch.server import ReferenceServer

__all__ = ["runwatch_server", "runwatch_server_factory"]


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
