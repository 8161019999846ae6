"""A real Airflow 3 api-server, started from the Airflow environment (.venv/airflow) for Prefect-side tests.

The Prefect environment cannot import Airflow, so Airflow runs as subprocesses of `.venv/airflow/bin` on its
own AIRFLOW_HOME (SQLite), with the simple auth manager and a known user; DAG runs come from
`airflow dags test`, which runs a DAG's tasks for real and records the run where the api-server reads it.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

__all__ = ["AIRFLOW_BIN", "AirflowApiServer"]

# .venv/prefect/bin/python -> .venv/airflow/bin (./dev builds both before the suites run).
AIRFLOW_BIN = Path(sys.executable).parents[2] / "airflow" / "bin"
USER = "runwatch"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class AirflowApiServer:
    """`airflow api-server` on 127.0.0.1 with the DAG files given, and a user that can get a JWT."""

    def __init__(self, home: Path, dags: dict[str, str]) -> None:
        self.home = home
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.password = secrets.token_urlsafe(12)
        (home / "dags").mkdir(parents=True)
        for name, source in dags.items():
            (home / "dags" / name).write_text(source)
        passwords = home / "passwords.json"
        passwords.write_text(json.dumps({USER: self.password}))  # the simple auth manager keeps it
        inherited = {
            k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PREFECT_", "VIRTUAL_ENV"))
        }
        self.env = {
            **inherited,
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
            "AIRFLOW__LOGGING__COLORED_CONSOLE_LOG": "False",
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 300) -> None:
        """Migrate the DB and start the api-server; `wait_ready` waits for it to answer."""
        subprocess.run(
            [str(AIRFLOW_BIN / "airflow"), "db", "migrate"],
            env=self.env,
            check=True,
            capture_output=True,
            timeout=timeout,
        )
        self.proc = subprocess.Popen(
            [str(AIRFLOW_BIN / "airflow"), "api-server"],
            env=self.env,
            stdout=(self.home / "api-server.log").open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 300) -> None:
        assert self.proc is not None, "start() first"
        deadline = time.monotonic() + timeout
        while not self._healthy():
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"airflow api-server exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(f"airflow api-server did not answer in {timeout:.0f}s:\n{self.log_tail()}")
            time.sleep(0.5)

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/api/v2/monitor/health", timeout=5) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def token(self) -> str:
        """A JWT for the API, from /auth/token (the simple auth manager's login)."""
        body = json.dumps({"username": USER, "password": self.password}).encode()
        request = urllib.request.Request(
            f"{self.url}/auth/token", data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return str(json.load(response)["access_token"])

    def dags_test(self, dag_id: str) -> subprocess.Popen[bytes]:
        """`airflow dags test DAG_ID`: one real DAG run, its tasks run in that process."""
        return subprocess.Popen(
            [str(AIRFLOW_BIN / "airflow"), "dags", "test", dag_id],
            env=self.env,
            stdout=(self.home / f"dags-test-{dag_id}.log").open("wb"),
            stderr=subprocess.STDOUT,
        )

    def log_tail(self, name: str = "api-server", lines: int = 30) -> str:
        path = self.home / f"{name}.log"
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
