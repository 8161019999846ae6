"""Airflow suite: a private AIRFLOW_HOME (set before Airflow is imported), a migrated SQLite DB on demand,
and `runwatch` connections pointing at the reference server (fixture `runwatch_server`, plugin
runwatch.testing).

Under `./dev test` (RUNWATCH_ENV=airflow) the AIRFLOW_HOME that ./dev prepared is used; otherwise a
temporary one, so a developer's own Airflow is never touched.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import SyncToAsync

# Mutation testing runs each mutant's tests in a child forked from a process that has run them already.
# asgiref's single-thread executor, through which Airflow reads a connection in a trigger, keeps its thread
# only in the parent: in the child it queues every call for ever. The child gets a fresh one.
os.register_at_fork(
    after_in_child=lambda: setattr(SyncToAsync, "single_thread_executor", ThreadPoolExecutor(max_workers=1))
)


_PARENTS_API: list[object] = []


def _fresh_in_process_api() -> None:
    # dag.test() talks to an in-process execution API, cached with the event loop thread it runs on: in a
    # forked child that thread is gone and the first task would wait on it for ever. The child builds its
    # own; the parent's is kept referenced, as its finalizer would wait on the missing thread too.
    supervisor = sys.modules.get("airflow.sdk.execution_time.supervisor")
    if supervisor is not None:
        _PARENTS_API.append(supervisor.in_process_api_server())
        supervisor.in_process_api_server.cache_clear()


os.register_at_fork(after_in_child=_fresh_in_process_api)

if os.environ.get("RUNWATCH_ENV") != "airflow":
    _home = tempfile.mkdtemp(prefix="runwatch-airflow-home-")
    atexit.register(shutil.rmtree, _home, True)
    os.environ["AIRFLOW_HOME"] = _home
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(Path(_home) / "dags")
AIRFLOW_HOME = Path(os.environ["AIRFLOW_HOME"])
DAGS_FOLDER = Path(os.environ.get("AIRFLOW__CORE__DAGS_FOLDER", AIRFLOW_HOME / "dags"))
DAGS_FOLDER.mkdir(parents=True, exist_ok=True)
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{AIRFLOW_HOME / 'airflow.db'}"
for key, value in {
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
    "AIRFLOW__API__HOST": "127.0.0.1",
    "AIRFLOW__LOGGING__COLORED_CONSOLE_LOG": "False",
}.items():
    os.environ.setdefault(key, value)


AIRFLOW = str(Path(sys.executable).parent / "airflow")


@pytest.fixture
def canary() -> str:
    """A token that must never be printed, stored or sent anywhere but in the Authorization header."""
    return "rw-canary-7f3e9a1c5b"


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """The metadata DB, migrated once per session (`airflow db migrate`, about 3 s on SQLite)."""
    subprocess.run([AIRFLOW, "db", "migrate"], check=True, capture_output=True, timeout=300)
    return AIRFLOW_HOME / "airflow.db"


@pytest.fixture
def connection(monkeypatch: pytest.MonkeyPatch) -> Callable[..., str]:
    """Define a `runwatch` connection through its AIRFLOW_CONN_* variable; returns the conn id."""

    def define(conn_id: str = "runwatch_default", **fields: Any) -> str:
        fields.setdefault("conn_type", "runwatch")
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fields))
        return conn_id

    return define


@pytest.fixture
def dag_file() -> Iterator[Callable[[str, str], Path]]:
    """Write a DAG file into the dags folder (where `dag.test()` needs it); removed afterwards."""
    written: list[Path] = []

    def write(name: str, source: str) -> Path:
        path = DAGS_FOLDER / name
        path.write_text(source)
        written.append(path)
        return path

    yield write
    for path in written:
        path.unlink(missing_ok=True)
