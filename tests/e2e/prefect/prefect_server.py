"""A real Prefect server process (`prefect server start`) that a test can stop and start again.

Its own PREFECT_HOME and SQLite database, 127.0.0.1 and a free port that it keeps across restarts, so every
client (the test, the served flows, the watchers) finds it again at the same URL.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

__all__ = ["PrefectServer"]

PREFECT = str(Path(sys.executable).with_name("prefect"))
# As the test harness runs it: no UI; no schedules or late-run marking (the deployments have no schedule).
FLAGS = ("--no-ui", "--no-scheduler", "--no-late-runs")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrefectServer:
    """`prefect server start` on 127.0.0.1 in its own process group; output appended to `log`."""

    def __init__(self, home: Path, log: Path) -> None:
        self.home = home
        self.log = log
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/api"
        self.starts = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_")}
        self.env = {
            **inherited,
            "PREFECT_HOME": str(home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
        }

    def start(self, timeout: float = 120.0) -> None:
        """Start the server and return once its API answers /health."""
        with self.log.open("ab") as out:
            self._process = subprocess.Popen(
                [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(self.port), *FLAGS],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.starts += 1
        deadline = time.monotonic() + timeout
        while not self._healthy():
            if self._process.poll() is not None:
                raise RuntimeError(f"prefect server exited with {self._process.returncode}:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"prefect server did not answer in {timeout:.0f}s:\n{self.tail()}")
            time.sleep(0.5)

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """Stop the server (SIGTERM: a clean shutdown; SIGKILL: a crash) and wait until it is gone."""
        process = self._process
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(30)
        with contextlib.suppress(ProcessLookupError):  # whatever the group left behind
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(15)
        self._process = None

    def _healthy(self) -> bool:
        try:
            with self._opener.open(f"{self.url}/health", timeout=5) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])
