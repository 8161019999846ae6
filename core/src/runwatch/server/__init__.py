"""The reference run-status server (`runwatch[server]`: Starlette and uvicorn).

A small API that serves the standard status model with scripted lifecycles, ETags, long polling, cancel,
heartbeats and signed webhooks, and that misbehaves on request (429, 5xx, latency, dropped connections,
malformed bodies, illegal regressions, zombies). See docs/reference-server.md.
"""

from runwatch.server._app import create_app
from runwatch.server._server import ReferenceServer, ReferenceServerError, listen, serve
from runwatch.server._store import ServerConfig

__all__ = ["ReferenceServer", "ReferenceServerError", "ServerConfig", "create_app", "listen", "serve"]
