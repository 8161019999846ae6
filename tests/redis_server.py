"""A throwaway Redis for the request-budget tests (the core's, the Airflow provider's and the Prefect
collection's: each suite puts tests/ on sys.path, as for docs_snippets.py).

The server binary comes from the system packages (installed with apt-get when missing, as CI's root may do).
It listens on a free 127.0.0.1 port with no persistence (no RDB snapshots, no AOF) in a temporary directory,
and `stop()` shuts it down and removes that directory.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from system_servers import apt_install, dies_with_parent, log_tail, stop_group

__all__ = ["RedisServer", "ensure_binary"]

PACKAGE = "redis-server"


def ensure_binary() -> str:
    """The path of `redis-server`, installed from the system packages first if it is missing."""
    found = shutil.which("redis-server")
    if found is not None:
        return found
    apt_install(PACKAGE, "redis-server is")
    # Without systemd the package's init script may have started a server on 6379: only ours may run.
    if shutil.which("service") is not None:
        subprocess.run(["service", PACKAGE, "stop"], capture_output=True, timeout=60)
    found = shutil.which("redis-server")
    if found is None:
        raise RuntimeError(f"apt-get installed {PACKAGE!r} but no redis-server is on PATH")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One redis-server on 127.0.0.1, without persistence; `url` is its `redis://` address (with the
    password in it when the server asks for one)."""

    def __init__(self, password: str | None = None) -> None:
        self.password = password
        self.binary = ensure_binary()
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="runwatch-redis-"))
        self.log_path = self.root / "redis.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 30.0) -> RedisServer:
        self._process = subprocess.Popen(
            [
                self.binary,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.root),
                "--logfile",
                str(self.log_path),
                *(["--requirepass", self.password] if self.password else []),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=dies_with_parent(signal.SIGTERM),
        )
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self._process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self._process.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"redis-server did not answer on port {self.port} within {timeout:.0f}s")
            time.sleep(0.05)
        return self

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as sock:
                # Without the password the server answers NOAUTH: it is up all the same.
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith((b"+PONG", b"-NOAUTH"))
        except OSError:
            return False

    def stop(self) -> None:
        """SIGTERM (no save: persistence is off), then the directory is removed."""
        stop_group(self._process, signal.SIGTERM, 30)
        shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        return log_tail(self.log_path, lines)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
