"""A real Prefect server, started from the Prefect environment (.venv/prefect) for Airflow-side tests.

The Airflow environment cannot import Prefect (they cannot share an environment), so the server and the flows
run as subprocesses of `.venv/prefect/bin`; this process only speaks HTTP to them.
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

__all__ = ["PREFECT_BIN", "PrefectServer"]

# .venv/airflow/bin/python -> .venv/prefect/bin (./dev builds both before the suites run).
PREFECT_BIN = Path(sys.executable).parents[2] / "prefect" / "bin"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrefectServer:
    """`prefect server start` on 127.0.0.1 with its own PREFECT_HOME (API only: no UI, no services)."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.port = _free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        inherited = {
            k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "AIRFLOW", "VIRTUAL_ENV"))
        }
        self.env = {
            **inherited,
            "PREFECT_HOME": str(home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 300) -> None:
        if not (PREFECT_BIN / "prefect").exists():
            raise RuntimeError(
                f"no {PREFECT_BIN / 'prefect'}: build the Prefect environment (./dev env prefect)"
            )
        log = (self.home / "server.log").open("wb")
        command = [
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--no-ui",
            "--no-services",
        ]
        self.proc = subprocess.Popen(
            [str(PREFECT_BIN / "prefect"), *command],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while not self._healthy():
            if self.proc.poll() is not None:
                raise RuntimeError(f"prefect server exited with {self.proc.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"prefect server did not answer in {timeout:.0f}s:\n{self.log_tail()}")
            time.sleep(0.5)

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.api_url}/health", timeout=5) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def run_script(self, path: Path, *args: str, stdin: int | None = None) -> subprocess.Popen[str]:
        """Run a Python file (with these arguments) in the Prefect environment against this server; stdout is
        a pipe, and stdin too with `stdin=subprocess.PIPE`."""
        env = {**self.env, "PREFECT_API_URL": self.api_url}
        return subprocess.Popen(
            [str(PREFECT_BIN / "python"), str(path), *args],
            env=env,
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=(self.home / f"{path.stem}.log").open("wb"),
            text=True,
        )

    def log_tail(self, lines: int = 30) -> str:
        path = self.home / "server.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def stop(self) -> None:
        if self.proc is None:
            return
        for sig, wait in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 10.0)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(wait)
                return
