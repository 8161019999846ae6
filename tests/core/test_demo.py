"""`runwatch demo`, the main job: every scenario ends as expected, on a pipe, on a terminal and as JSON."""

from __future__ import annotations

import io
import json
import os
import pty
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from runwatch.cli import main
from runwatch.cli._demo import Row, pick_scenarios
from runwatch.cli._demo_view import PlainView
from runwatch.cli._scenarios import SCENARIOS

pytestmark = pytest.mark.slow

NAMES = [s.name for s in SCENARIOS]


@dataclass
class Demo:
    """A `python -m runwatch demo` running in a subprocess, its output read as it comes."""

    proc: subprocess.Popen[bytes]
    read_fd: int
    chunks: list[bytes] = field(default_factory=list)
    reader: threading.Thread | None = None

    def start_reading(self) -> None:
        def drain() -> None:
            while True:
                try:
                    chunk = os.read(self.read_fd, 65536)
                except OSError:  # EIO: the terminal's other side is closed
                    return
                if not chunk:
                    return
                self.chunks.append(chunk)

        self.reader = threading.Thread(target=drain, daemon=True)
        self.reader.start()

    def finish(self, timeout: float = 60) -> tuple[int, str]:
        code = self.proc.wait(timeout)
        assert self.reader is not None
        self.reader.join(timeout)
        return code, b"".join(self.chunks).decode("utf-8", "replace")


def _spawn(tty: bool) -> Demo:
    env = {**os.environ, "COLUMNS": "160", "LINES": "50", "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    argv = [sys.executable, "-m", "runwatch", "demo"]
    if tty:
        parent, child = pty.openpty()
        proc = subprocess.Popen(argv, stdout=child, stderr=subprocess.DEVNULL, env=env)
        os.close(child)
        demo = Demo(proc, parent)
    else:
        read, write = os.pipe()
        proc = subprocess.Popen(argv, stdout=write, stderr=subprocess.DEVNULL, env=env)
        os.close(write)
        demo = Demo(proc, read)
    demo.start_reading()
    return demo


@pytest.fixture(scope="module")
def demos() -> Iterator[dict[str, Demo]]:
    """The demo on a pipe and on a terminal, both running while the other tests of this module run."""
    running = {"plain": _spawn(tty=False), "tty": _spawn(tty=True)}
    try:
        yield running
    finally:
        for demo in running.values():
            if demo.proc.poll() is None:
                demo.proc.kill()
                demo.proc.wait()
            os.close(demo.read_fd)


def test_demo_as_json_lines_in_process(demos: dict[str, Demo], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--json"]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    results = [e for e in events if e["event"] == "result"]
    assert [r["scenario"] for r in results] == NAMES
    assert all(r["ok"] and r["outcome"] == r["expected"] for r in results), results
    assert all(r["requests"] >= 1 for r in results)
    by_name = {r["scenario"]: r for r in results}
    assert by_name["rate limited"]["counters"]["429"] >= 1
    assert by_name["5xx burst"]["counters"]["5xx"] >= 1
    assert by_name["404 lag"]["counters"]["404"] >= 1
    assert by_name["cancel"]["counters"]["cancel"] == 1
    assert by_name["illegal regression"]["illegal_ignored"] >= 1
    assert by_name["webhook"]["pushes"] >= 2
    changes = [e for e in events if e["event"] == "change"]
    assert {e["scenario"] for e in changes} == set(NAMES)
    summary = events[-1]
    assert summary["event"] == "summary" and summary["ok"] is True and summary["runs"] == len(NAMES)


def test_demo_on_a_pipe_exits_0_and_its_summary_lists_every_scenario(demos: dict[str, Demo]) -> None:
    code, out = demos["plain"].finish()
    assert code == 0, out
    assert "\x1b[" not in out  # plain text: no terminal control codes
    summary = out[out.index("#   scenario") :].splitlines()
    rows = summary[2 : 2 + len(NAMES)]
    for name, row in zip(NAMES, rows, strict=True):
        assert name in row and " yes " in row, row
    assert summary[-1].startswith(f"{len(NAMES)} runs, {len(NAMES)} ended as expected (all as expected)")


def test_demo_on_a_terminal_draws_live_and_summary_tables(demos: dict[str, Demo]) -> None:
    code, out = demos["tty"].finish()
    assert code == 0, out
    assert "\x1b[" in out  # the live table redraws in place
    assert "runwatch demo: summary" in out
    final = out[out.rindex("runwatch demo: summary") :]
    for name in NAMES:
        assert name in final
    assert f"{len(NAMES)} ended as expected (all as expected)" in final


def test_runs_cycle_through_the_scenarios() -> None:
    picked = pick_scenarios(len(SCENARIOS) + 2)
    assert [s.name for s in picked] == [*NAMES, NAMES[0], NAMES[1]]
    assert [s.name for s in pick_scenarios(3)] == NAMES[:3]


def test_summary_flags_a_run_that_did_not_end_as_expected() -> None:
    good = Row(SCENARIOS[0], 0, run_id="r-1", outcome=SCENARIOS[0].expect, counters={"GET": 4, "POST": 1})
    bad = Row(SCENARIOS[1], 1, run_id="r-2", outcome="succeeded", counters={"GET": 2, "POST": 1, "429": 2})
    out = io.StringIO()
    PlainView(out).summary([good, bad], {"requests_total": 8, "connections": 1}, 1.5)
    lines = out.getvalue().splitlines()
    assert "yes" in next(line for line in lines if "r-1" in line)
    bad_line = next(line for line in lines if "r-2" in line)
    assert " NO " in bad_line and "2x429" in bad_line and " 3 " in bad_line
    assert lines[-1].startswith(
        "2 runs, 1 ended as expected (1 NOT as expected); 8 requests over 1 connection"
    )
