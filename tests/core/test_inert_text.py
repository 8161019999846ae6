"""Remote text stays inert: control characters from the remote are shown as escapes, `--json` stays exact."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pty
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import uvicorn

from runwatch.cli import main
from runwatch.server import ReferenceServer
from runwatch.text import inert

pytestmark = pytest.mark.runwatch_server(retry_after=0)

HOSTILE = "loading\n::error file=a.py::pwned\x1b[2J\x07"
SHOWN = "loading\\n::error file=a.py::pwned\\x1b[2J\\x07"
FAST = ["--interval", "0.02", "--max-interval", "0.1"]


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (HOSTILE, SHOWN),
        ("a\r\nb\tc", "a\\r\\nb\\tc"),
        ("\x00\x7f\x9b", "\\x00\\x7f\\x9b"),  # NUL, DEL and the one-byte CSI
        ("line\u2028sep\u202eevil\u2066", "line\\u2028sep\\u202eevil\\u2066"),
        ("café 東京 🚀 C:\\path", "café 東京 🚀 C:\\path"),  # printable text is left alone
    ],
)
def test_inert_escapes_control_characters_only(text: str, shown: str) -> None:
    assert inert(text) == shown


def hostile_run(server: ReferenceServer) -> dict[str, object]:
    steps = [
        {"status": "RUNNING", "for": 0.3, "progress": {"percent": 40, "message": HOSTILE}},
        {"status": "FAILED", "errors": [{"message": "boom\n::error::again\x1b]0;title\x07"}]},
    ]
    return server.create_run(script=steps)


def test_plain_lines_show_remote_text_as_data(
    runwatch_server: ReferenceServer, capsys: pytest.CaptureFixture[str]
) -> None:
    run = hostile_run(runwatch_server)
    code = main(["watch", str(run["url"]), *FAST])
    out, err = capsys.readouterr()
    assert code == 1
    lines = out.splitlines()
    assert len(lines) == 2  # one line per change, none of the remote's making
    assert lines[0].endswith(f"RUNNING        40% {SHOWN}")
    assert lines[1].endswith("FAILED")
    assert err == f"runwatch: run {run['id']} failed: boom\\n::error::again\\x1b]0;title\\x07\n"
    assert not any(c in out + err.rstrip("\n") for c in "\x1b\x07\r")


def test_json_lines_stay_exact(runwatch_server: ReferenceServer, capsys: pytest.CaptureFixture[str]) -> None:
    run = hostile_run(runwatch_server)
    code = main(["watch", str(run["url"]), "--json", *FAST])
    out, _ = capsys.readouterr()
    assert code == 1
    first, last = (json.loads(line) for line in out.splitlines())
    assert first["progress"]["message"] == HOSTILE
    assert last["errors"][0]["message"] == "boom\n::error::again\x1b]0;title\x07"


def test_the_live_view_shows_remote_text_as_data(runwatch_server: ReferenceServer) -> None:
    steps = [
        {"status": "RUNNING", "for": 0.5, "progress": {"percent": 50, "message": "a\x1b[2Jb\x07c"}},
        # the last step says it all again, so a process that starts late still shows it
        {
            "status": "SUCCEEDED",
            "executor": "x\x1b[31my",
            "progress": {"percent": 100, "message": "a\x1b[2Jb\x07c"},
        },
    ]
    run = runwatch_server.create_run(script=steps)
    parent, child = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "runwatch", "watch", str(run["url"]), *FAST],
        stdout=child,
        stderr=subprocess.PIPE,
        env={**os.environ, "COLUMNS": "120", "TERM": "xterm"},
    )
    os.close(child)
    chunks = []
    with contextlib.suppress(OSError):  # EIO once the child has exited
        for _ in range(100_000):
            chunk = os.read(parent, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    os.close(parent)
    assert proc.wait(30) == 0
    out = b"".join(chunks).decode()
    assert "a\\x1b[2Jb\\x07c" in out
    assert "x\\x1b[31my" in out
    assert "\x1b[2J" not in out and "\x07" not in out and "\x1b[31my" not in out


async def test_a_servers_own_reason_is_shown_as_data_in_the_error_line() -> None:
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def denied(request: object) -> JSONResponse:
        return JSONResponse({"message": "go away\x1b[2J\n::error::x\x07"}, 403)

    app = Starlette(routes=[Route("/runs/{run}", denied)])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    for _ in range(1000):
        if server.started:
            break
        await asyncio.sleep(0.01)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/runs/r-1"
    try:
        cli = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "runwatch", "watch", url, stderr=subprocess.PIPE
        )
        _, err = await asyncio.wait_for(cli.communicate(), 60)
    finally:
        server.should_exit = True
        await task
        sock.close()
    assert err.decode() == f"runwatch: access denied to {url} (HTTP 403: go away\\x1b[2J ::error::x\\x07)\n"


def test_verbose_log_lines_show_remote_text_as_data(runwatch_server: ReferenceServer, tmp_path: Path) -> None:
    # A profile that takes the run's id from a field the remote writes freely; the run steps back once.
    profile = {
        "name": "id-from-executor",
        "status_url": "{base_url}/runs/{run_id}",
        "fields": {"id": "executor", "status": "status"},
        "states": {"QUEUED": "QUEUED", "RUNNING": "RUNNING", "SUCCEEDED": "SUCCEEDED"},
    }
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(profile))
    who = "node\n::error::x\x1b[2J"
    run = runwatch_server.create_run(
        script=[
            {"status": "RUNNING", "for": 8, "executor": who},  # outlasts the process's start, loaded
            {"status": "QUEUED", "for": 1, "executor": who},
            {"status": "SUCCEEDED", "executor": who},
        ]
    )
    done = subprocess.run(
        [sys.executable, "-m", "runwatch", "watch", str(run["url"]), "--profile", str(path), "-v", *FAST],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    warned = [line for line in done.stderr.splitlines() if "illegal transition" in line]
    assert warned == [
        "runwatch: WARNING runwatch: ignored an illegal transition: run node\\n::error::x\\x1b[2J: "
        "RUNNING -> QUEUED (QUEUED) is not a legal move"
    ]
    assert "\x1b" not in done.stderr
