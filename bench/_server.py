"""The bench's server: a subprocess on 127.0.0.1, and the control calls made to it between measurements.

Control calls are blocking (urllib) or run in a loop of their own, and are never made inside a measured
window. Servers are started by `BenchServer` (a context manager that always ends the subprocess).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp

__all__ = ["BenchServer", "create_runs", "requests_served", "run_counters", "set_faults"]

HERE = Path(__file__).resolve().parent
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _call(base: str, method: str, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        base + path, data=data, method=method, headers={"content-type": "application/json"}
    )
    with _OPENER.open(request, timeout=60) as response:
        return json.loads(response.read())


def requests_served(base: str) -> int:
    """Requests the server has answered on its API (control calls excluded)."""
    return int(_call(base, "GET", "/_control/stats")["requests_total"])


def run_counters(base: str) -> dict[str, dict[str, int]]:
    """Per run: {"GET": n, "304": n, "429": n, ...}."""
    runs: dict[str, dict[str, int]] = _call(base, "GET", "/_control/stats")["runs"]
    return runs


def set_faults(base: str, faults: dict[str, Any] | None) -> None:
    """Global faults for every GET of a run (None clears them)."""
    _call(base, "POST", "/_control/faults", faults or {})


def create_runs(base: str, count: int, body: dict[str, Any], concurrency: int = 64) -> list[str]:
    """Create `count` runs with this body; their status URLs, in order."""

    async def create_all() -> list[str]:
        bound = asyncio.Semaphore(concurrency)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

            async def one() -> str:
                async with bound, session.post(f"{base}/runs", json=body) as response:
                    response.raise_for_status()
                    payload = await response.json()
                    return response.headers.get("location") or f"{base}/runs/{payload['id']}"

            return list(await asyncio.gather(*(one() for _ in range(count))))

    return asyncio.run(create_all())


class BenchServer:
    """`python bench/_serve.py KIND [CPU]` in a subprocess; `.url` once it answers."""

    def __init__(self, kind: str = "reference", cpu: int | None = None) -> None:
        self.kind, self.cpu = kind, cpu
        self.url = ""
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> BenchServer:
        args = [sys.executable, str(HERE / "_serve.py"), self.kind]
        if self.cpu is not None:
            args.append(str(self.cpu))
        self._process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert self._process.stdout is not None
            line = self._process.stdout.readline().strip()
            if not line.startswith("http://"):
                raise RuntimeError(f"the {self.kind} server did not start (said {line!r})")
            self.url = line
            self._wait_ready(timeout=30)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                requests_served(self.url)
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        try:
            if process.stdin is not None:
                process.stdin.close()  # the server's signal to stop
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        finally:
            if process.stdout is not None:
                process.stdout.close()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
