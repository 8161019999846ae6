"""What the throwaway servers from the system packages share (tests/redis_server.py, and the e2e suite's
PostgreSQL): installing the package when it is missing, a child that stops with the test process, stopping its
process group, and the tail of its log.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

__all__ = ["apt_install", "dies_with_parent", "log_tail", "stop_group"]

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def apt_install(package: str, missing: str) -> None:
    """Install a Debian package (as CI's root may); `missing` names what is missing when we cannot.

    Raises RuntimeError when not root or without apt-get, subprocess.CalledProcessError when apt-get fails.
    """
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise RuntimeError(
            f"{missing} missing: install the {package!r} system package (Debian: apt-get install -y {package})"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update"], env=env, check=True, capture_output=True, timeout=600)
    subprocess.run(
        ["apt-get", "install", "-y", "--no-install-recommends", package],
        env=env,
        check=True,
        capture_output=True,
        timeout=900,
    )


def dies_with_parent(sig: signal.Signals) -> Callable[[], None]:
    """A `preexec_fn`: the child gets `sig` if the test process dies without stopping it."""

    def arm() -> None:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, sig)

    return arm


def stop_group(process: subprocess.Popen[bytes] | None, sig: signal.Signals, wait: float) -> None:
    """`sig` to the process's group, then SIGKILL if it has not exited within `wait` seconds."""
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
    try:
        process.wait(wait)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(30)


def log_tail(path: Path, lines: int = 30) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
