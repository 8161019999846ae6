"""A real Airflow 3 (api server, scheduler, dag processor, triggerer; LocalExecutor on SQLite) in its own
AIRFLOW_HOME, every service in its own process group. The test process never imports Airflow: it reads the
SQLite DB read-only and the log files.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from cryptography.fernet import Fernet

__all__ = ["AirflowCluster"]

BIN = Path(sys.executable).parent
SERVICES = (
    ("api-server", ["api-server"]),
    ("dag-processor", ["dag-processor"]),
    ("scheduler", ["scheduler"]),
    ("triggerer", ["triggerer"]),
)
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(what: str, check: Callable[[], T | None], timeout: float, every: float = 1.0) -> T:
    """Poll `check` until it returns a value other than None (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not after {timeout:.0f}s")
        time.sleep(every)


class AirflowCluster:
    """Airflow's four services on 127.0.0.1, started and stopped by the test."""

    def __init__(self, home: Path, dags: list[Path], env: dict[str, str]) -> None:
        self.home = home
        self.db_path = home / "airflow.db"
        fernet_key = Fernet.generate_key().decode()
        self.fernet = Fernet(fernet_key)
        self.api_port = free_port()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        (home / "dags").mkdir(parents=True)
        (home / "service-logs").mkdir()
        for dag in dags:
            shutil.copy(dag, home / "dags" / dag.name)
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "RW_E2E"))}
        self.env = {
            **inherited,
            "PATH": f"{BIN}{os.pathsep}{inherited.get('PATH', '')}",
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.db_path}",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__FERNET_KEY": fernet_key,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.api_port}/execution/",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.api_port),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
            "AIRFLOW__LOGGING__COLORED_CONSOLE_LOG": "False",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            "AIRFLOW__SCHEDULER__TRIGGER_TIMEOUT_CHECK_INTERVAL": "5",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
            # Two cores run all of this: give workers' calls to the api server time (defaults: 5 s, 3 tries).
            "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "30",
            "AIRFLOW__WORKERS__EXECUTION_API_RETRIES": "10",
            **env,
        }

    def start(self) -> None:
        subprocess.run(
            [str(BIN / "airflow"), "db", "migrate"],
            env=self.env,
            check=True,
            capture_output=True,
            timeout=300,
        )
        for name, args in SERVICES:
            log = (self.home / "service-logs" / f"{name}.log").open("wb")
            self.procs[name] = subprocess.Popen(
                [str(BIN / "airflow"), *args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: LocalExecutor workers die with it
            )
        wait_until("the api server answers", self._api_healthy, timeout=180)

    def _api_healthy(self) -> bool | None:
        self.check_alive()
        url = f"http://127.0.0.1:{self.api_port}/api/v2/monitor/health"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return True if response.status == 200 else None
        except OSError:
            return None

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"airflow {name} exited with {proc.returncode}:\n{self.log_tail(name)}")

    def stop(self) -> None:
        for proc in self.procs.values():
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.1, deadline - time.monotonic()))
            _signal_group(proc, signal.SIGKILL)  # stragglers in the group (workers, gunicorn children)
            proc.wait(10)

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.home / "service-logs" / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """A read-only query on the metadata DB (retried while Airflow holds the write lock)."""
        for _ in range(20):
            try:
                with sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=5) as db:
                    return db.execute(sql, params).fetchall()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "no such table" not in str(exc):
                    raise
                time.sleep(0.2)
        raise TimeoutError(f"database stayed locked: {sql}")

    def trigger_kwargs(self) -> dict[int, tuple[str, str]]:
        """Every trigger row now in the DB: id -> (classpath, decrypted kwargs as stored, JSON text)."""
        rows = self.query("SELECT id, classpath, kwargs FROM trigger")
        out = {}
        for trigger_id, classpath, encrypted in rows:
            text = (
                encrypted if encrypted.startswith("{") else self.fernet.decrypt(encrypted.encode()).decode()
            )
            out[trigger_id] = (classpath, text)
        return out

    def dag_run_state(self, dag_id: str) -> str | None:
        rows = self.query("SELECT state FROM dag_run WHERE dag_id = ?", dag_id)
        return rows[0][0] if rows else None

    def task_states(self, dag_id: str) -> list[tuple[str, int, str | None, int]]:
        return self.query(
            "SELECT task_id, map_index, state, try_number FROM task_instance WHERE dag_id = ? "
            "ORDER BY task_id, map_index",
            dag_id,
        )

    def xcoms(self, dag_id: str) -> list[tuple[str, int, str, Any]]:
        rows = self.query("SELECT task_id, map_index, key, value FROM xcom WHERE dag_id = ?", dag_id)
        return [(task, index, key, _xcom_value(value)) for task, index, key, value in rows]

    def all_logs(self) -> str:
        parts = [p.read_text(errors="replace") for p in (self.home / "logs").rglob("*") if p.is_file()]
        parts += [p.read_text(errors="replace") for p in (self.home / "service-logs").glob("*.log")]
        return "\n".join(parts)


def _xcom_value(stored: str | None) -> Any:
    """An XCom value as Airflow reads it: the scheduler's writes (a TaskSuccessEvent's XComs) are JSON
    encoded twice, the workers' once; Airflow's XComModel.deserialize_value undoes either."""
    value = json.loads(stored) if stored else None
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return json.loads(value)
    return value


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)
