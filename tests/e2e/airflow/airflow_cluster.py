"""A real Airflow 3 (api server, scheduler, dag processor, triggerers; LocalExecutor) on PostgreSQL, in its
own AIRFLOW_HOME, every service in its own process group. The test process never imports Airflow: it reads
the metadata database (psycopg2) and the log files.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg2
from cryptography.fernet import Fernet

if TYPE_CHECKING:
    from postgres_server import PostgresServer

__all__ = ["AirflowCluster"]

BIN = Path(sys.executable).parent
SERVICES = ("api-server", "dag-processor", "scheduler", "triggerer")
HEALTH_CHECK_THRESHOLD = 10  # seconds without a heartbeat before a triggerer's triggers go to another one
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
    """Airflow's four services on 127.0.0.1, started and stopped by the test; more triggerers on demand."""

    def __init__(self, home: Path, dags: list[Path], env: dict[str, str], postgres: PostgresServer) -> None:
        self.home = home
        self.postgres = postgres
        self.db_url = postgres.create_database()
        self._db: Any = None
        fernet_key = Fernet.generate_key().decode()
        self.fernet = Fernet(fernet_key)
        self.api_port = free_port()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.killed: set[str] = set()
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
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.db_url,
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
            # Triggerer HA within a test's time: a triggerer silent for 10 s (default 30) is dead.
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
            "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": str(HEALTH_CHECK_THRESHOLD),
            # Two cores run all of this: give workers' calls to the api server time (defaults: 5 s, 3 tries).
            "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "30",
            "AIRFLOW__WORKERS__EXECUTION_API_RETRIES": "10",
            **env,
        }

    def start(self, env_later: Callable[[], dict[str, str]] | None = None) -> None:
        """Migrate the database, then start the services. `env_later` gives the environment that is made
        while the database migrates (another server that starts meanwhile); the services start with it."""
        migrate = subprocess.run(
            [str(BIN / "airflow"), "db", "migrate"], env=self.env, capture_output=True, text=True, timeout=300
        )
        if migrate.returncode != 0:
            raise RuntimeError(
                f"airflow db migrate failed:\n{migrate.stdout[-3000:]}{migrate.stderr[-3000:]}"
            )
        if env_later is not None:
            self.env.update(env_later())
        for name in SERVICES:
            self.start_service(name, name)
        wait_until("the api server answers", self._api_healthy, timeout=180)

    def start_service(self, name: str, command: str) -> None:
        """Start `airflow <command>` as service `name` (its log: service-logs/<name>.log)."""
        with (self.home / "service-logs" / f"{name}.log").open("wb") as log:
            self.procs[name] = subprocess.Popen(
                [str(BIN / "airflow"), command],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: LocalExecutor workers die with it
            )

    def kill(self, name: str) -> None:
        """SIGKILL a service's whole process group, as a lost machine would end it: no cleanup runs."""
        self.killed.add(name)
        _signal_group(self.procs[name], signal.SIGKILL)
        self.procs[name].wait(30)

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
            if proc.poll() is not None and name not in self.killed:
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
        if self._db is not None:
            self._db.close()

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.home / "service-logs" / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """A read-only query on the metadata DB (`%s` placeholders); one connection, reopened if it broke."""
        for attempt in range(3):
            try:
                if self._db is None or self._db.closed:
                    self._db = self.postgres.connect(self.db_url)
                    self._db.set_session(readonly=True, autocommit=True)
                with self._db.cursor() as cursor:
                    cursor.execute(sql, params or None)  # no parameters: a % is a plain %
                    return list(cursor.fetchall())
            except psycopg2.OperationalError:
                if self._db is not None:
                    self._db.close()
                if attempt == 2:
                    raise
                time.sleep(1)
        raise AssertionError("unreachable")

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
        rows = self.query("SELECT state FROM dag_run WHERE dag_id = %s", dag_id)
        return rows[0][0] if rows else None

    def task_states(self, dag_id: str) -> list[tuple[str, int, str | None, int]]:
        return self.query(
            "SELECT task_id, map_index, state, try_number FROM task_instance WHERE dag_id = %s "
            "ORDER BY task_id, map_index",
            dag_id,
        )

    def xcoms(self, dag_id: str) -> list[tuple[str, int, str, Any]]:
        rows = self.query("SELECT task_id, map_index, key, value FROM xcom WHERE dag_id = %s", dag_id)
        return [(task, index, key, _xcom_value(value)) for task, index, key, value in rows]

    def task_logs(self, dag_id: str, task_id: str) -> dict[str, str]:
        """A task's log files (the task's own and, for each triggerer that ran its trigger, the trigger's
        `…log.trigger.<triggerer job id>.log`): file name -> text."""
        found = (self.home / "logs").glob(f"dag_id={dag_id}/*/task_id={task_id}/*")
        return {p.name: p.read_text(errors="replace") for p in found if p.is_file()}

    def all_logs(self) -> str:
        parts = [p.read_text(errors="replace") for p in (self.home / "logs").rglob("*") if p.is_file()]
        parts += [p.read_text(errors="replace") for p in (self.home / "service-logs").glob("*.log")]
        return "\n".join(parts)


def _xcom_value(value: Any) -> Any:
    """An XCom value as Airflow reads it (psycopg2 decodes the JSONB column): the scheduler's writes (a
    TaskSuccessEvent's XComs) are JSON encoded twice, the workers' once; XComModel.deserialize_value undoes
    either."""
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return json.loads(value)
    return value


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)
