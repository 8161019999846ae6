"""A throwaway PostgreSQL for the end-to-end Airflow deployment.

The server binaries come from the system packages (installed with apt-get when missing, as CI's root may do).
The cluster lives in a temporary directory, listens on a free 127.0.0.1 port (and a Unix socket inside that
directory), and is stopped and removed by `stop()`. PostgreSQL refuses to run as root: under root it runs as
the `postgres` user that the Debian package creates.
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import psycopg2
from airflow_cluster import free_port, wait_until

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests/: what the system-package servers share
from system_servers import apt_install, dies_with_parent, log_tail, stop_group

__all__ = ["PostgresServer", "find_binaries"]

PACKAGE = "postgresql"
SUPERUSER = "runwatch"


def find_binaries() -> Path | None:
    """The newest `/usr/lib/postgresql/<version>/bin` holding initdb and postgres, or the one on PATH."""
    found = []
    for path in Path("/usr/lib/postgresql").glob("*/bin"):
        if (path / "initdb").exists() and (path / "postgres").exists():
            digits = re.match(r"\d+", path.parent.name)
            found.append((int(digits.group()) if digits else 0, path))
    if found:
        return max(found)[1]
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def ensure_binaries() -> Path:
    """PostgreSQL's server binaries, installed from the system packages first if they are missing."""
    found = find_binaries()
    if found is not None:
        return found
    apt_install(PACKAGE, "PostgreSQL's server binaries (initdb, postgres) are")
    _stop_package_clusters()
    found = find_binaries()
    if found is None:
        raise RuntimeError(f"apt-get installed {PACKAGE!r} but no initdb was found under /usr/lib/postgresql")
    return found


def _stop_package_clusters() -> None:
    """The Debian package may create and start a default cluster: stop it, only ours may run."""
    if shutil.which("pg_lsclusters") is None:
        return
    listing = subprocess.run(["pg_lsclusters", "--no-header"], capture_output=True, text=True, timeout=60)
    for line in listing.stdout.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[3] == "online":
            subprocess.run(["pg_ctlcluster", fields[0], fields[1], "stop"], capture_output=True, timeout=120)


class PostgresServer:
    """One PostgreSQL cluster on 127.0.0.1 with password (SCRAM) authentication."""

    def __init__(self) -> None:
        self.bin = ensure_binaries()
        self.port = free_port()
        self.password = secrets.token_hex(16)
        self.root = Path(tempfile.mkdtemp(prefix="runwatch-e2e-pg-"))
        self.data = self.root / "data"
        self.log_path = self.root / "postgres.log"
        self._user = _run_as()
        self._process: subprocess.Popen[bytes] | None = None
        self._databases = 0

    def start(self) -> None:
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password)
        if self._user is not None:
            os.chown(self.root, self._user.pw_uid, self._user.pw_gid)
            os.chown(pwfile, self._user.pw_uid, self._user.pw_gid)
        self._run(
            str(self.bin / "initdb"),
            f"--pgdata={self.data}",
            f"--username={SUPERUSER}",
            f"--pwfile={pwfile}",
            "--auth=scram-sha-256",
            "--encoding=UTF8",
            "--no-sync",
        )
        pwfile.unlink()
        log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            [
                str(self.bin / "postgres"),
                "-D",
                str(self.data),
                "-p",
                str(self.port),
                "-k",
                str(self.root),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "max_connections=300",
                # A test database: durability buys nothing here, and the machine is small and shared.
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=dies_with_parent(signal.SIGINT),  # after it changed user
            **self._as_user(),
        )
        log.close()
        wait_until("PostgreSQL accepts connections", self._ready, timeout=120, every=0.5)

    def _ready(self) -> bool | None:
        assert self._process is not None
        if self._process.poll() is not None:
            raise RuntimeError(f"postgres exited with {self._process.returncode}:\n{self.log_tail()}")
        try:
            psycopg2.connect(**self._params("postgres"), connect_timeout=5).close()
        except psycopg2.OperationalError:
            return None
        return True

    def create_database(self) -> str:
        """A new, empty database; its SQLAlchemy URL (psycopg2 driver)."""
        self._databases += 1
        name = f"airflow_{self._databases}"
        db = psycopg2.connect(**self._params("postgres"), connect_timeout=10)
        try:
            db.autocommit = True
            with db.cursor() as cursor:
                cursor.execute(f"CREATE DATABASE {name}")
        finally:
            db.close()
        return f"postgresql+psycopg2://{SUPERUSER}:{self.password}@127.0.0.1:{self.port}/{name}"

    def connect(self, url: str) -> Any:
        """A psycopg2 connection to the database of `url` (from `create_database`)."""
        return psycopg2.connect(**self._params(url.rsplit("/", 1)[1]), connect_timeout=10)

    def _params(self, database: str) -> dict[str, Any]:
        return {
            "host": "127.0.0.1",
            "port": self.port,
            "user": SUPERUSER,
            "password": self.password,
            "dbname": database,
        }

    def stop(self) -> None:
        """Fast shutdown (SIGINT: clients are disconnected), then the directory is removed."""
        stop_group(self._process, signal.SIGINT, 60)
        shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        return log_tail(self.log_path, lines)

    def _run(self, *argv: str) -> None:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=300, **self._as_user())
        if done.returncode != 0:
            raise RuntimeError(f"{Path(argv[0]).name} failed ({done.returncode}): {done.stderr.strip()}")

    def _as_user(self) -> dict[str, Any]:
        if self._user is None:
            return {"cwd": self.root}
        home = {"HOME": self._user.pw_dir, "USER": self._user.pw_name, "PATH": os.environ.get("PATH", "")}
        return {
            "cwd": self.root,
            "user": self._user.pw_uid,
            "group": self._user.pw_gid,
            "extra_groups": [],
            "env": home,
        }


def _run_as() -> pwd.struct_passwd | None:
    """The account PostgreSQL runs as: ours, or `postgres` when we are root (it refuses root)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        raise RuntimeError("running as root, and there is no 'postgres' user to run PostgreSQL as") from None
