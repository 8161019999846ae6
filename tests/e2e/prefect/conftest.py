"""End-to-end Prefect suite: a Prefect server process of its own (restartable), deployments served in a
subprocess, the watcher as a subprocess, a reference server that asks for a canary token. Every subprocess
runs in its own process group, killed at the end."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "prefect"))
import prefect_harness  # first: it sets PREFECT_HOME and friends before Prefect reads them
from prefect.client.orchestration import get_client
from prefect.events.worker import EventsWorker
from prefect.exceptions import ObjectNotFound
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect_server import PrefectServer

from prefect_runwatch import RunStatusApi
from runwatch.server import ReferenceServer

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
API_BLOCK = "e2e-api"
BASIC_BLOCK = "e2e-basic"  # basic auth, on the open server
USERINFO_BLOCK = "e2e-userinfo"  # a password in the base URL, on the open server
USER = "rw-user"
BASIC_CANARY = "rw-e2e-basic-canary-3a9f51c0"
URL_CANARY = "rw-e2e-url-canary-c24e7b19"


_server: PrefectServer | None = None


@pytest.fixture(scope="session", autouse=True)
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """`prefect server start` for the session (a test may restart it); this process talks to it."""
    global _server
    root = tmp_path_factory.mktemp("prefect-server")
    (root / "home").mkdir()
    _server = PrefectServer(root / "home", root / "server.log")
    try:
        _server.start()
        with temporary_settings(updates={PREFECT_API_URL: _server.url}):
            # The events worker is one per process and keeps the server it started with (the quick suite's
            # harness, when both suites share the session): a new one must send to this server.
            EventsWorker.drain_all(timeout=30, at_exit=False)
            yield _server
            EventsWorker.drain_all(timeout=30, at_exit=False)
    finally:
        _server.stop()
        _server = None


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment of a subprocess that talks to the session's Prefect server."""
    assert _server is not None, "the prefect_server fixture is not up"
    return {**os.environ, "PREFECT_API_URL": _server.url, **extra}


class Processes:
    """Subprocesses of one scope, each in its own process group, output to a file."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.started: list[subprocess.Popen[bytes]] = []
        self.mark = f"RUNWATCH_E2E_GROUP={uuid.uuid4()}"  # inherited by every descendant

    def start(self, name: str, *argv: str) -> subprocess.Popen[bytes]:
        out = (self.logs / f"{name}.log").open("ab")
        process = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=subprocess_env(RUNWATCH_E2E_GROUP=self.mark.partition("=")[2]),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        out.close()
        self.started.append(process)
        return process

    def stop(self, process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(15)
        with contextlib.suppress(ProcessLookupError):  # whatever the group left behind
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(15)

    def stop_all(self) -> None:
        for process in reversed(self.started):
            self.stop(process)
        # Flow run processes a runner started, whatever their process group: they carry our mark.
        for pid in pids_with_env(self.mark):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def output(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.logs.glob("*.log")))


def pids_with_env(entry: str) -> list[int]:
    """The live processes whose environment holds `entry` ("NAME=value")."""
    needle = entry.encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            environ = (proc / "environ").read_bytes()
        except OSError:  # gone, or not ours to read
            continue
        if needle in environ.split(b"\0"):
            found.append(int(proc.name))
    return found


@pytest.fixture(scope="session")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e-logs")


class _Collect(logging.Handler):
    def __init__(self, into: list[str]) -> None:
        super().__init__(logging.DEBUG)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(self.format(record))


@pytest.fixture(scope="module")
def server_logs() -> Iterator[list[str]]:
    """Everything the reference servers and runwatch log in this process (debug level)."""
    lines: list[str] = []
    handler = _Collect(lines)
    # Each by name: a logging config may stop uvicorn.error from propagating.
    loggers = [logging.getLogger(name) for name in ("uvicorn.error", "uvicorn.access", "runwatch")]
    for logger in loggers:
        logger.addHandler(handler)
    yield lines
    for logger in loggers:
        logger.removeHandler(handler)


@pytest.fixture(scope="module")
def reference(server_logs: list[str]) -> Iterator[ReferenceServer]:
    with ReferenceServer(retry_after=0, token=prefect_harness.CANARY, log_level="debug") as server:
        yield server


@pytest.fixture(scope="module")
def open_reference(server_logs: list[str]) -> Iterator[ReferenceServer]:
    """A reference server that asks for no token: the basic auth and URL userinfo blocks talk to it."""
    with ReferenceServer(retry_after=0, log_level="debug") as server:
        yield server


@pytest.fixture(scope="module")
def api_block(reference: ReferenceServer, open_reference: ReferenceServer) -> str:
    RunStatusApi(base_url=reference.url, token=prefect_harness.CANARY).save(API_BLOCK, overwrite=True)
    RunStatusApi(base_url=open_reference.url, auth_style="basic", username=USER, token=BASIC_CANARY).save(
        BASIC_BLOCK, overwrite=True
    )
    userinfo_url = open_reference.url.replace("http://", f"http://{USER}:{URL_CANARY}@")
    RunStatusApi(base_url=userinfo_url).save(USERINFO_BLOCK, overwrite=True)
    return API_BLOCK


@pytest.fixture(scope="module")
def served(logs: Path, api_block: str) -> Iterator[subprocess.Popen[bytes]]:
    """`served_flows.py` serving its deployments; ready once both deployments exist."""
    processes = Processes(logs)
    process = processes.start("serve", sys.executable, str(HERE / "served_flows.py"))
    try:
        deadline = time.monotonic() + 120
        with get_client(sync_client=True) as client:
            for name in ("released-wait/e2e", "nightly-export/example", "load-after/e2e"):
                while True:
                    assert process.poll() is None, processes.output()
                    try:
                        client.read_deployment_by_name(name)
                        break
                    except ObjectNotFound:
                        assert time.monotonic() < deadline, f"deployment {name} never appeared"
                        time.sleep(0.5)
        yield process
    finally:
        processes.stop_all()


@pytest.fixture
def watchers(logs: Path) -> Iterator[Callable[[], subprocess.Popen[bytes]]]:
    """Start `prefect-runwatch watcher` processes; all are stopped when the test ends."""
    processes = Processes(logs)
    binary = str(Path(sys.executable).with_name("prefect-runwatch"))
    yield lambda: processes.start("watcher", binary, "watcher", "--scan-interval", "1")
    processes.stop_all()


@pytest.fixture(scope="session")
def all_output(logs: Path) -> Callable[[], str]:
    return lambda: Processes(logs).output()
