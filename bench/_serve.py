"""The server side of the bench, in a process of its own.

`python bench/_serve.py reference|stub [CPU]` prints its base URL on the first line of stdout, then serves
until its stdin closes (the bench closes it, or dies) or it is terminated.

- `reference`: runwatch's reference server (`runwatch.server.ReferenceServer`: Starlette + uvicorn, with
  uvloop and httptools when they are installed).
- `stub`: a trivial Starlette app that answers every GET /runs/{id} with the same RUNNING status JSON, the
  setup of reference/measurements.md; no lifecycles, no ETag, no faults, no long polling.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import threading

from _measure import pin_to_cpu, raise_fd_limit


def _stub_app():  # -> Starlette
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    counts = {"requests_total": 0, "runs_created": 0}

    def body(run_id: str) -> bytes:
        status = {
            "id": run_id,
            "status": "RUNNING",
            "created_at": "2026-01-01T00:00:00.000000+00:00",
            "updated_at": "2026-01-01T00:00:01.000000+00:00",
            "started_at": "2026-01-01T00:00:01.000000+00:00",
            "ended_at": None,
            "duration": None,
            "executor": "stub",
            "progress": None,
            "errors": [],
            "output_ref": None,
            "heartbeat_at": None,
            "version": 2,
            "url": None,
        }
        return json.dumps(status, separators=(",", ":")).encode()

    async def get_run(request: Request) -> Response:
        counts["requests_total"] += 1
        return Response(body(request.path_params["run_id"]), 200, media_type="application/json")

    async def create_run(request: Request) -> Response:
        counts["runs_created"] += 1
        return Response(body(f"stub-{counts['runs_created']}"), 202, media_type="application/json")

    async def stats(request: Request) -> Response:
        return Response(json.dumps({**counts, "runs": {}}), media_type="application/json")

    routes = [
        Route("/runs", create_run, methods=["POST"]),
        Route("/runs/{run_id}", get_run, methods=["GET"]),
        Route("/_control/stats", stats, methods=["GET"]),
    ]
    return Starlette(routes=routes)


def _serve_stub() -> None:
    import uvicorn

    # IPPROTO_TCP, not 0: asyncio only sets TCP_NODELAY on sockets that say they are TCP; without it,
    # keep-alive replies wait ~40 ms for a delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    print(f"http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    config = uvicorn.Config(_stub_app(), log_level="warning", access_log=False, backlog=4096, lifespan="off")
    server = uvicorn.Server(config)
    threading.Thread(target=_exit_on_eof, args=(server,), daemon=True).start()
    asyncio.run(server.serve(sockets=[sock]))


def _exit_on_eof(server) -> None:  # server: uvicorn.Server
    sys.stdin.read()
    server.should_exit = True


def _serve_reference() -> None:
    from runwatch.server import ReferenceServer

    with ReferenceServer(port=0, max_wait=60) as server:
        print(server.url, flush=True)
        sys.stdin.read()


def main() -> None:
    kind = sys.argv[1]
    pin_to_cpu(int(sys.argv[2]) if len(sys.argv) > 2 else None)
    raise_fd_limit(65536)
    if kind == "stub":
        _serve_stub()
    elif kind == "reference":
        _serve_reference()
    else:
        raise SystemExit(f"unknown server kind {kind!r}")


if __name__ == "__main__":
    main()
