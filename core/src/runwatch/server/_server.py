"""Running the reference server: in a background thread (tests, the demo) or in the foreground."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from types import TracebackType
from typing import Any

import uvicorn

from runwatch.server._app import create_app, install_log_filter
from runwatch.server._spec import is_loopback
from runwatch.server._store import ServerConfig, Store

__all__ = ["ReferenceServer", "ReferenceServerError", "serve"]


class ReferenceServerError(RuntimeError):
    """A helper call to the reference server got an error answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"reference server answered {status}: {message}")
        self.status = status


class _Uvicorn(uvicorn.Server):
    """uvicorn, told to stop by an event rather than by a 0.1 s poll, and that releases held requests."""

    def __init__(self, config: uvicorn.Config, store: Store, ready: threading.Event | None = None) -> None:
        super().__init__(config)
        self._store = store
        self._ready = ready
        self._exit: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        self._exit = asyncio.Event()
        install_log_filter()
        await super().startup(sockets=sockets)
        if self._ready is not None:
            self._ready.set()

    async def main_loop(self) -> None:
        assert self._exit is not None
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 10) % 864000  # on_tick refreshes the Date header when counter % 10 == 0
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._exit.wait(), 1.0)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's shutdown, polling every 5 ms instead of 100 ms (tests start and stop many servers)."""
        self._store.close()  # long polls and latency sleeps answer now, so connections can close
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        state = self.server_state
        for connection in list(state.connections):
            connection.shutdown()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.config.timeout_graceful_shutdown or 2)
        # uvicorn's connection set offers no event to wait on; poll it as uvicorn does, only faster.
        while (state.connections or state.tasks) and not self.force_exit and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        for task in list(state.tasks):
            task.cancel()
        if not self.force_exit:
            await self.lifespan.shutdown()

    def request_exit(self) -> None:
        """Thread-safe (and signal-safe): stop serving."""
        self.should_exit = True
        if self._loop is not None and self._exit is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._exit.set)

    def handle_exit(self, sig: int, frame: Any) -> None:
        super().handle_exit(sig, frame)
        self.request_exit()


def _new_loop(kind: str) -> asyncio.AbstractEventLoop:
    if kind in ("auto", "uvloop"):
        try:
            import uvloop  # type: ignore[import-not-found, unused-ignore]
        except ImportError:
            if kind == "uvloop":
                raise
        else:
            loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
            return loop
    return asyncio.new_event_loop()


def _check_host(host: str, allow_remote: bool) -> None:
    if not allow_remote and not is_loopback(host):
        raise ValueError(
            f"refusing to bind {host!r}: the reference server binds loopback addresses only "
            "(pass allow_remote=True if you really mean it)"
        )


class ReferenceServer:
    """The reference run-status server on its own thread and event loop.

    ```
    with ReferenceServer() as server:
        run = server.create_run(script=[{"status": "RUNNING", "for": 0.2}, {"status": "SUCCEEDED"}])
        ...  # point any client at run["url"]
    ```
    Helpers (`create_run`, `get_run`, `cancel_run`, `stats`, `set_faults`, `reset`, `subscribe`) speak plain
    HTTP through urllib, so they work from any thread, sync or async test alike.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        token: str | None = None,
        retry_after: float = 1,
        cancel_delay: float = 0.1,
        max_wait: float = 60.0,
        webhook_timeout: float = 5.0,
        client_credentials: tuple[str, str] | None = None,
        token_lifetime: float = 3600.0,
        allow_remote: bool = False,
        loop: str = "auto",
        log_level: str = "warning",
    ) -> None:
        _check_host(host, allow_remote)
        self.host = host
        self.port = port
        self.token = token
        self._client = client_credentials
        self._helper_token: tuple[str, float] | None = None  # (token, monotonic expiry) for helper calls
        self._options: dict[str, Any] = {
            "token": token,
            "retry_after": retry_after,
            "cancel_delay": cancel_delay,
            "max_wait": max_wait,
            "webhook_timeout": webhook_timeout,
            "allow_remote_webhooks": allow_remote,
            "client_credentials": client_credentials,
            "token_lifetime": token_lifetime,
        }
        self._loop_kind = loop
        self._log_level = log_level
        self._thread: threading.Thread | None = None
        self._server: _Uvicorn | None = None
        self._error: BaseException | None = None
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<ReferenceServer {self.url if self._server else self.host} {state}>"

    # ---------------------------------------------------------------------------------------- lifecycle

    @property
    def url(self) -> str:
        """`http://127.0.0.1:<port>` (the real port once started)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, timeout: float = 10.0) -> ReferenceServer:
        if self._server is not None:
            raise RuntimeError("this ReferenceServer was already started (make a new one)")
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and accepted
        # sockets inherit it. With proto 0, every keep-alive response waits ~40 ms for a delayed ACK.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        config = ServerConfig(base_url=self.url, **self._options)
        app = create_app(config)
        store: Store = app.state.store
        uv_config = uvicorn.Config(
            app,
            log_config=None,
            log_level=self._log_level,
            access_log=False,
            lifespan="on",
            ws="none",
            proxy_headers=False,  # clients are counted by their real address, never by X-Forwarded-For
            backlog=4096,
            timeout_graceful_shutdown=2,
        )
        ready = threading.Event()
        self._server = _Uvicorn(uv_config, store, ready)
        self._thread = threading.Thread(
            target=self._run, args=(sock, ready), name=f"runwatch-server:{self.port}", daemon=True
        )
        self._thread.start()
        if not ready.wait(timeout) or self._error is not None or not self._server.started:
            self.stop()
            raise RuntimeError(f"the reference server did not start: {self._error!r}")
        return self

    def _run(self, sock: socket.socket, ready: threading.Event) -> None:
        assert self._server is not None
        loop = _new_loop(self._loop_kind)
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._server.serve(sockets=[sock]))
        except BaseException as exc:  # SystemExit from a failed startup included
            self._error = exc
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                asyncio.set_event_loop(None)
                loop.close()
                sock.close()
                ready.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving (held long polls are answered first); returns once the thread has ended."""
        if self._server is None or self._thread is None:
            return
        self._server.request_exit()
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(timeout)

    def __enter__(self) -> ReferenceServer:
        return self.start() if self._server is None else self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ---------------------------------------------------------------------------------------- helpers

    def _token_for_helpers(self) -> str:
        """A token from this server's own token endpoint, for helper calls (not counted as issued)."""
        held = self._helper_token
        if held is None or held[1] <= time.monotonic():
            assert self._client is not None
            form = urllib.parse.urlencode(
                {
                    "grant_type": "client_credentials",
                    "client_id": self._client[0],
                    "client_secret": self._client[1],
                }
            ).encode()
            req = urllib.request.Request(
                self.url + "/oauth/token",
                data=form,
                headers={"content-type": "application/x-www-form-urlencoded", "x-runwatch-helper": "1"},
                method="POST",
            )
            with self._opener.open(req, timeout=30) as response:
                answer = json.loads(response.read())
            held = self._helper_token = (answer["access_token"], time.monotonic() + answer["expires_in"] / 2)
        return held[0]

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], Any]:
        """One HTTP call to this server: (status, headers, parsed JSON body or None).

        Helper calls are not counted in `requests_total` or `connections` (they are in `runs_created` and the
        per-run counters).
        """
        data = None if body is None else json.dumps(body).encode()
        all_headers = {"content-type": "application/json", "x-runwatch-helper": "1", **(headers or {})}
        if self.token is not None:
            all_headers.setdefault("authorization", f"Bearer {self.token}")
        elif self._client is not None and path != "/oauth/token":
            all_headers.setdefault("authorization", f"Bearer {self._token_for_helpers()}")
        req = urllib.request.Request(self.url + path, data=data, headers=all_headers, method=method)
        try:
            with self._opener.open(req, timeout=30) as response:
                status, raw, answer_headers = response.status, response.read(), dict(response.headers)
        except urllib.error.HTTPError as exc:
            status, raw, answer_headers = exc.code, exc.read(), dict(exc.headers)
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode("utf-8", "replace")
        return status, {k.lower(): v for k, v in answer_headers.items()}, parsed

    def _call(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
        status, _, parsed = self.request(method, path, body, headers)
        if status >= 400:
            message = parsed.get("error", parsed) if isinstance(parsed, dict) else parsed
            raise ReferenceServerError(status, str(message))
        return parsed

    def run_url(self, run_id: str) -> str:
        return f"{self.url}/runs/{run_id}"

    def create_run(self, idempotency_key: str | None = None, **body: Any) -> dict[str, Any]:
        """POST /runs with this body (script=..., heartbeat_every=..., faults=..., ...); the status object."""
        headers = {} if idempotency_key is None else {"idempotency-key": idempotency_key}
        result: dict[str, Any] = self._call("POST", "/runs", body, headers)
        return result

    def get_run(self, run_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/runs/{run_id}")
        return result

    def cancel_run(self, run_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", f"/runs/{run_id}/cancel")
        return result

    def subscribe(self, url: str, secret: str, runs: list[str] | None = None) -> str:
        """Subscribe a webhook receiver; returns the subscription id."""
        result = self._call("POST", "/webhooks", {"url": url, "secret": secret, "runs": runs})
        return str(result["id"])

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/_control/stats")
        return result

    def set_faults(self, **faults: Any) -> dict[str, Any]:
        """Global faults for every run's GET (same shape as a run's `faults`); no arguments clears them."""
        result: dict[str, Any] = self._call("POST", "/_control/faults", faults)
        return result

    def reset(self) -> None:
        """Forget every run, key, subscription, fault and counter."""
        self._call("POST", "/_control/reset")


def serve(
    host: str = "127.0.0.1",
    port: int = 8765,
    token: str | None = None,
    *,
    allow_remote: bool = False,
    retry_after: float = 1,
    cancel_delay: float = 0.1,
    max_wait: float = 60.0,
    log_level: str = "info",
    access_log: bool = False,
) -> None:
    """Run the reference server in the foreground until Ctrl-C (`runwatch serve`).

    Held long polls are answered first; then the KeyboardInterrupt propagates (shutdown is already complete).
    """
    _check_host(host, allow_remote)
    shown = f"[{host}]" if ":" in host else host
    specific = host not in ("0.0.0.0", "::", "")
    config = ServerConfig(
        token=token,
        retry_after=retry_after,
        cancel_delay=cancel_delay,
        max_wait=max_wait,
        base_url=f"http://{shown}:{port}" if specific else None,
        allow_remote_webhooks=allow_remote,
    )
    app = create_app(config)
    uv_config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=access_log,
        lifespan="on",
        ws="none",
        proxy_headers=False,
        backlog=4096,
        timeout_graceful_shutdown=2,
    )
    # After a clean shutdown uvicorn re-raises the signal it caught: Ctrl-C ends as KeyboardInterrupt (the CLI
    # turns it into exit code 130), SIGTERM as SIGTERM.
    _Uvicorn(uv_config, app.state.store).run()
