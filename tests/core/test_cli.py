"""The `runwatch` command against the reference server over 127.0.0.1: flags, output, every exit code."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from runwatch import RunStatus, State
from runwatch.cli import main
from runwatch.server import ReferenceServer

pytestmark = pytest.mark.runwatch_server(retry_after=0)

FAST = ["--interval", "0.02", "--max-interval", "0.1"]


def lifecycle(final: str, running: float = 0.2, **last: Any) -> list[dict[str, Any]]:
    """QUEUED briefly, RUNNING a moment, then `final` (with `last` on the final step)."""
    return [
        {"status": "QUEUED", "for": 0.05},
        {"status": "RUNNING", "for": running},
        {"status": final, **last},
    ]


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """`runwatch ARGV` in this process: (exit code, stdout, stderr)."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def python_m(
    *argv: str, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """`python -m runwatch ARGV` in a real subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "runwatch", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def one_error_line(err: str) -> str:
    """The stderr of a failed command: exactly one line, `runwatch: ...`, no traceback."""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("runwatch: "), err
    assert "Traceback" not in err
    return lines[0]


# ------------------------------------------------------------------------------------------ exit codes


@pytest.mark.parametrize(
    ("body", "flags", "code", "message"),
    [
        ({"script": lifecycle("SUCCEEDED")}, [], 0, None),
        (
            {"script": lifecycle("FAILED", errors=[{"message": "out of memory"}])},
            [],
            1,
            "failed: out of memory",
        ),
        ({"script": lifecycle("CANCELLED")}, [], 2, "was cancelled"),
        ({"script": lifecycle("TIMED_OUT")}, [], 3, "timed out by the remote"),
        ({"script": lifecycle("PARTIAL_SUCCESS")}, [], 4, "partly succeeded"),
        ({"script": lifecycle("PARTIAL_SUCCESS")}, ["--partial-success", "succeed"], 0, None),
        ({"script": lifecycle("PARTIAL_SUCCESS")}, ["--partial-success", "fail"], 1, "only partly succeeded"),
        ({"script": lifecycle("SUCCEEDED", running=30)}, ["--timeout", "0.3"], 5, "gave up waiting"),
        (
            {
                "script": lifecycle("SUCCEEDED", running=30),
                "heartbeat_every": 0.05,
                "stop_heartbeat_after": 0.15,
            },
            ["--heartbeat-timeout", "0.3"],
            6,
            "heartbeat has not moved",
        ),
        (
            {"script": lifecycle("SUCCEEDED"), "faults": {"errors_5xx": {"every": 1}}},
            ["--unavailable-after", "0.3"],
            7,
            "status unreadable",
        ),
    ],
    ids=[
        "succeeded",
        "failed",
        "cancelled",
        "timed-out",
        "partial",
        "partial-succeed",
        "partial-fail",
        "deadline",
        "lost",
        "unavailable",
    ],
)
def test_exit_code_of_each_outcome(
    runwatch_server: ReferenceServer,
    capsys: pytest.CaptureFixture[str],
    body: dict[str, Any],
    flags: list[str],
    code: int,
    message: str | None,
) -> None:
    run = runwatch_server.create_run(**body)
    got, out, err = run_cli(capsys, "watch", run["url"], *FAST, *flags)
    assert got == code, err
    if message is None:
        assert err == ""
        assert f"run {run['id']} ended" in out
    else:
        assert message in one_error_line(err)


def test_cancel_mid_run_exits_2(runwatch_server: ReferenceServer, capsys: pytest.CaptureFixture[str]) -> None:
    run = runwatch_server.create_run(script=lifecycle("SUCCEEDED", running=30))
    canceller = threading.Timer(0.3, runwatch_server.cancel_run, [run["id"]])
    canceller.start()
    try:
        code, out, err = run_cli(capsys, "watch", run["url"], "--json", *FAST)
    finally:
        canceller.cancel()
    assert code == 2, err
    states = [json.loads(line)["status"] for line in out.splitlines()]
    assert "RUNNING" in states and states[-1] == "CANCELLED"
    assert "was cancelled" in one_error_line(err)


def test_what_we_could_not_tell_never_exits_1(
    runwatch_server_factory: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = runwatch_server_factory(token="t0k", retry_after=0)
    code, _, err = run_cli(capsys, "watch", f"{server.url}/runs/r-nope", *FAST)
    assert code == 9
    assert "access denied" in one_error_line(err)
    monkeypatch.setenv("RW_TOKEN", "t0k")
    code, _, err = run_cli(capsys, "watch", "r-nope", "--base-url", server.url, "--token-env", "RW_TOKEN")
    assert code == 8
    assert "no such run" in one_error_line(err)
    malformed = server.create_run(faults={"malformed": {"every": 1}})
    code, _, err = run_cli(
        capsys, "watch", malformed["url"], "--token-env", "RW_TOKEN", *FAST, "--unavailable-after", "0.3"
    )
    assert code == 7
    assert "not JSON" in one_error_line(err)
    illegal = server.create_run(
        script=[{"status": "RUNNING", "for": 1.0}, {"status": "QUEUED", "for": 30}, {"status": "SUCCEEDED"}]
    )
    argv = ["watch", illegal["url"], "--token-env", "RW_TOKEN", *FAST, "--on-illegal", "raise"]
    code, _, err = run_cli(capsys, *argv)
    assert code == 10
    assert "RUNNING -> QUEUED" in one_error_line(err)


def test_bad_profile_file_exits_64_in_one_line(runwatch_server: ReferenceServer, tmp_path: Path) -> None:
    bad = tmp_path / "mine.toml"
    bad.write_text('name = "mine"\nstatus_url = "{base_url}/x/{run_id}"\n[states]\nDONE = "FINISHED"\n')
    run = runwatch_server.create_run(script=lifecycle("SUCCEEDED"))
    proc = python_m("watch", run["url"], "--profile", str(bad))
    assert proc.returncode == 64
    line = one_error_line(proc.stderr)
    assert "states" in line and "FINISHED" in line
    assert proc.stdout == ""


def test_profile_that_does_not_map_a_value_exits_64(
    runwatch_server: ReferenceServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    narrow = tmp_path / "narrow.json"
    narrow.write_text(
        json.dumps(
            {"name": "narrow", "status_url": "{base_url}/runs/{run_id}", "states": {"SUCCEEDED": "SUCCEEDED"}}
        )
    )
    run = runwatch_server.create_run(script=lifecycle("SUCCEEDED"))
    code, _, err = run_cli(
        capsys, "watch", run["id"], "--base-url", runwatch_server.url, "--profile", str(narrow)
    )
    assert code == 64
    assert "does not map the remote status 'QUEUED'" in one_error_line(err)


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["watch", "r-1", "--bogus"], "unrecognized arguments: --bogus"),
        (["watch"], "required: RUN"),
        (["frobnicate"], "invalid choice"),
        ([], None),
        (["watch", "r-1"], "not a URL: give --base-url"),
        (["watch", "http://127.0.0.1:9/runs/r", "--interval", "-1"], "positive number of seconds"),
        (["watch", "http://127.0.0.1:9/runs/r", "--timeout", "soon"], "expected seconds"),
        (["watch", "http://127.0.0.1:9/runs/r", "--interval", "2", "--max-interval", "1"], "--max-interval"),
        (["watch", "http://127.0.0.1:9/runs/r", "--header", "no colon"], "--header expects"),
        (["watch", "http://127.0.0.1:9/runs/r", "--partial-success", "maybe"], "invalid choice"),
        (["watch", "http://127.0.0.1:9/runs/r", "--token-env", "RUNWATCH_TEST_UNSET"], "RUNWATCH_TEST_UNSET"),
        (["watch", "http://127.0.0.1:9/runs/r", "--profile", "nonesuch"], "no built-in profile 'nonesuch'"),
        (["demo", "--runs", "0"], "at least 1"),
        (["serve", "--port", "70000"], "out of range"),
        (["serve", "--host", "0.0.0.0"], "loopback"),
    ],
)
def test_usage_errors_exit_64(capsys: pytest.CaptureFixture[str], argv: list[str], says: str | None) -> None:
    code, out, err = run_cli(capsys, *argv)
    assert code == 64
    assert out == ""
    if says is None:
        assert "usage: runwatch" in err  # no command: the help, on stderr
    else:
        assert says in one_error_line(err)


def test_unknown_flag_in_a_subprocess_exits_64_without_traceback() -> None:
    proc = python_m("watch", "r-1", "--no-such-flag")
    assert proc.returncode == 64
    assert "--no-such-flag" in one_error_line(proc.stderr)


# ------------------------------------------------------------------------------------------ output


def test_json_lines_parse_and_the_last_is_terminal(
    runwatch_server: ReferenceServer, capsys: pytest.CaptureFixture[str]
) -> None:
    steps = [
        {"status": "QUEUED", "for": 0.05},
        {"status": "RUNNING", "for": 0.1, "progress": {"percent": 10}},
        {"status": "RUNNING", "for": 0.1, "progress": {"percent": 60, "message": "half"}},
        {"status": "SUCCEEDED", "output_ref": "s3://out"},
    ]
    run = runwatch_server.create_run(script=steps)
    code, out, err = run_cli(capsys, "watch", run["url"], "--json", *FAST)
    assert (code, err) == (0, "")
    statuses = [RunStatus.from_dict(json.loads(line)) for line in out.splitlines()]
    assert len(statuses) >= 2
    assert all(s.id == run["id"] for s in statuses)
    assert [s.is_terminal for s in statuses] == [False] * (len(statuses) - 1) + [True]
    assert statuses[-1].status is State.SUCCEEDED and statuses[-1].output_ref == "s3://out"
    ranks = [s.phase.rank for s in statuses]
    assert ranks == sorted(ranks)


def test_json_lines_on_failure_end_terminal_and_error_goes_to_stderr(
    runwatch_server: ReferenceServer, capsys: pytest.CaptureFixture[str]
) -> None:
    run = runwatch_server.create_run(script=lifecycle("FAILED", errors=[{"message": "disk full"}]))
    code, out, err = run_cli(capsys, "watch", run["url"], "--json", *FAST)
    assert code == 1
    last = json.loads(out.splitlines()[-1])
    assert last["status"] == "FAILED" and last["errors"][0]["message"] == "disk full"
    assert one_error_line(err) == f"runwatch: run {run['id']} failed: disk full"


def test_plain_lines_when_not_a_terminal(
    runwatch_server: ReferenceServer, capsys: pytest.CaptureFixture[str]
) -> None:
    steps = [
        {"status": "RUNNING", "for": 0.3, "progress": {"percent": 40, "message": "loading"}},
        {"status": "SUCCEEDED", "output_ref": "s3://done"},
    ]
    run = runwatch_server.create_run(script=steps)
    code, out, err = run_cli(capsys, "watch", run["url"], *FAST)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert "RUNNING" in lines[0] and "40% loading" in lines[0]
    assert "SUCCEEDED" in lines[-2]
    assert (
        lines[-1].startswith(f"run {run['id']} ended SUCCEEDED after ") and "output: s3://done" in lines[-1]
    )


def test_live_panel_on_a_terminal(runwatch_server: ReferenceServer) -> None:
    steps = [
        {"status": "RUNNING", "for": 0.5, "progress": {"percent": 50, "message": "[not markup"}},
        {"status": "SUCCEEDED", "output_ref": "s3://live"},
    ]
    run = runwatch_server.create_run(script=steps)
    parent, child = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "runwatch", "watch", run["url"], *FAST],
        stdout=child,
        stderr=subprocess.PIPE,
        env={**os.environ, "COLUMNS": "120", "TERM": "xterm"},
    )
    os.close(child)
    chunks = []
    with contextlib.suppress(OSError):  # EIO once the child has exited
        while chunk := os.read(parent, 65536):
            chunks.append(chunk)
    os.close(parent)
    assert proc.wait(10) == 0
    assert proc.stderr is not None and proc.stderr.read() == b""
    out = b"".join(chunks).decode()
    assert "\x1b[" in out  # drawn for a terminal, not plain lines
    assert f"runwatch {run['id']}" in out
    for text in ("SUCCEEDED", "TERMINAL", "s3://live", "succeeded", "elapsed"):
        assert text in out


def test_json_plain_and_profiles_need_no_rich(runwatch_server: ReferenceServer) -> None:
    run = runwatch_server.create_run(script=lifecycle("SUCCEEDED", running=0.05))
    code = (
        "import sys; sys.modules['rich'] = None\n"  # as if the [cli] extra were not installed
        "from runwatch.cli import main\n"
        f"codes = [main(['watch', {run['url']!r}, '--json']), main(['watch', {run['url']!r}]), main(['profiles'])]\n"
        "assert 'rich.console' not in sys.modules\n"
        "sys.exit(max(codes))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert '"status":"SUCCEEDED"' in proc.stdout and f"run {run['id']} ended SUCCEEDED" in proc.stdout


def test_run_as_id_with_base_url_and_as_full_url(
    runwatch_server: ReferenceServer, capsys: pytest.CaptureFixture[str]
) -> None:
    run = runwatch_server.create_run(script=lifecycle("SUCCEEDED", running=0.05))
    by_id = run_cli(capsys, "watch", run["id"], "--base-url", runwatch_server.url + "/", "--json", *FAST)
    by_url = run_cli(capsys, "watch", run["url"], "--json", *FAST)
    for code, out, _ in (by_id, by_url):
        assert code == 0
        assert json.loads(out.splitlines()[-1])["url"] == run["url"]


def test_token_comes_from_the_environment_is_sent_and_never_printed(
    runwatch_server_factory: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "tok-8f2e1d"
    server = runwatch_server_factory(token=secret, retry_after=0)
    monkeypatch.setenv("RW_SECRET", secret)
    run = server.create_run(script=lifecycle("SUCCEEDED", running=0.05))
    code, out, err = run_cli(capsys, "watch", run["url"], "--token-env", "RW_SECRET", "--json", "-v", *FAST)
    assert code == 0, err
    assert secret not in out + err
    code, _, err = run_cli(capsys, "watch", run["url"], *FAST)  # the same run, no token: the server checks
    assert code == 9  # access denied: never 1, which says the run failed
    assert "access denied" in one_error_line(err)
    failed = server.create_run(script=lifecycle("FAILED", running=0.05))
    code, out, err = run_cli(capsys, "watch", failed["url"], "--token-env", "RW_SECRET", *FAST)
    assert code == 1
    assert secret not in out + err


def test_extra_headers_are_sent(runwatch_server_factory: Any, capsys: pytest.CaptureFixture[str]) -> None:
    server = runwatch_server_factory(token="via-header", retry_after=0)
    run = server.create_run(script=lifecycle("SUCCEEDED", running=0.05))
    code, _, err = run_cli(
        capsys,
        "watch",
        run["url"],
        "--header",
        "Authorization: Bearer via-header",
        "--header",
        "X-Team: data",
        *FAST,
    )
    assert code == 0, err


def test_long_poll_ends_at_the_change_with_few_requests(
    runwatch_server: ReferenceServer, capsys: pytest.CaptureFixture[str]
) -> None:
    run = runwatch_server.create_run(script=[{"status": "RUNNING", "for": 1.2}, {"status": "SUCCEEDED"}])
    began = time.monotonic()
    code, _, err = run_cli(capsys, "watch", run["url"], "--long-poll", "10", "--interval", "5", "--json")
    assert code == 0, err
    assert time.monotonic() - began < 4  # polling every 5 s could not have seen it this soon
    assert runwatch_server.stats()["runs"][run["id"]]["GET"] <= 4


def test_profiles_lists_the_builtins(capsys: pytest.CaptureFixture[str]) -> None:
    import runwatch

    code, out, _ = run_cli(capsys, "profiles")
    assert code == 0
    names = runwatch.builtin_profiles()
    assert [line.split()[0] for line in out.splitlines()] == names
    assert "The runwatch standard status object" in out
    code, out, _ = run_cli(capsys, "profiles", "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["name"] for r in rows] == names
    standard = next(r for r in rows if r["name"] == "standard")
    assert standard["long_poll"] is True and standard["description"]


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    import runwatch

    assert run_cli(capsys, "--version")[:2] == (0, f"runwatch {runwatch.__version__}\n")


# ------------------------------------------------------------------------------------------ signals, serve


def _wait_for_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_ctrl_c_exits_130_quietly(runwatch_server: ReferenceServer) -> None:
    run = runwatch_server.create_run(script=lifecycle("SUCCEEDED", running=60))
    proc = subprocess.Popen(
        [sys.executable, "-X", "faulthandler", "-m", "runwatch", "watch", run["url"], "--json", *FAST],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    proc.stdout.readline()
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=30)  # far above the usual 0.1-0.4 s: it only tells a hang
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)  # faulthandler prints where every thread is
        raise AssertionError(f"no exit 30 s after Ctrl-C:\n{proc.communicate(timeout=30)[1]}") from None
    assert proc.returncode == 130
    assert err == ""


def test_serve_runs_the_reference_server_until_ctrl_c() -> None:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "runwatch", "serve", "--port", str(port), "--token-env", "RW_SERVE_TOKEN"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "RW_SERVE_TOKEN": "serve-secret"},
    )
    try:
        _wait_for_port(port)
        body = json.dumps({"script": lifecycle("SUCCEEDED", running=0.05)}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/runs",
            data=body,
            method="POST",
            headers={"Authorization": "Bearer serve-secret", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            run = json.loads(answer.read())
        watched = python_m(
            "watch",
            run["url"],
            "--token-env",
            "RW_SERVE_TOKEN",
            *FAST,
            env={"RW_SERVE_TOKEN": "serve-secret"},
        )
        assert watched.returncode == 0, watched.stderr
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=15)
    assert proc.returncode == 130
    assert "Traceback" not in err
    assert "serve-secret" not in err


def test_serve_on_a_busy_port_fails_in_one_line(
    runwatch_server: ReferenceServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(capsys, "serve", "--port", str(runwatch_server.port))
    assert code == 69
    assert f"cannot listen on 127.0.0.1:{runwatch_server.port}" in one_error_line(err)
