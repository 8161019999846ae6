"""The Prefect section, driven from .venv/core: `_prefect.py` in .venv/prefect, once as is, once under py-spy.

The first run gives the figures (py-spy samples without stopping the process, but it still takes CPU on a
2-core machine); the second, the same workload under `py-spy record --nonblocking`, gives where the flow
process's CPU goes (`_profile_prefect.py`).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _profile_prefect import summarize
from _report import Table, fmt

__all__ = ["prefect_tables", "run_prefect", "run_suspend", "suspend_tables"]

HERE = Path(__file__).resolve().parent
VENVS = HERE.parent / ".venv"


def _run(spec: dict[str, Any], profile: Path | None, timeout: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="runwatch-bench-") as tmp:
        out = Path(tmp) / "result.json"
        command = [str(VENVS / "prefect" / "bin" / "python"), str(HERE / "_prefect.py"), str(out)]
        if profile is not None:
            py_spy = [str(VENVS / "bench" / "bin" / "py-spy"), "record", "--threads", "--nonblocking"]
            command = [*py_spy, "--rate", "50", "--format", "raw", "-o", str(profile), "--", *command]
        try:
            done = subprocess.run(
                command, input=json.dumps(spec), capture_output=True, text=True, timeout=timeout, cwd=HERE
            )
        except subprocess.TimeoutExpired:
            return {"failed": f"no answer within {timeout:.0f} s"}
        if not out.exists():
            lines = [line for line in done.stderr.splitlines() if line.strip()]
            return {"failed": (lines[-1:] or [f"exit code {done.returncode}"])[0][:200]}
        result: dict[str, Any] = json.loads(out.read_text())
        return result


def run_prefect(
    base: str, waits: int, run_length: float, interval: float, unprofiled: bool = True
) -> dict[str, Any]:
    """The cell as is (unless not `unprofiled`: the quick form takes the profiled run's figures), then
    under py-spy."""
    spec = {"server": base, "waits": waits, "run_length": run_length, "interval": interval}
    timeout = 300 + 20 * run_length
    plain: dict[str, Any] = {}
    if unprofiled:
        print(
            f"  prefect: {waits:,} waits of {run_length:g} s in one flow run ...", file=sys.stderr, flush=True
        )
        plain = _run(spec, None, timeout)
    print(f"  prefect: {waits:,} waits under py-spy ...", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="runwatch-bench-") as tmp:
        raw = Path(tmp) / "profile.txt"
        profiled = _run(spec, raw, timeout)
        shares = summarize(raw) if raw.exists() else {}
    return {
        "plain": plain or profiled,
        "profiled": profiled,
        "cpu_shares": shares,
        "figures_profiled": not plain,
    }


def prefect_tables(result: dict[str, Any], load: str) -> list[Table]:
    plain = result["plain"]
    table = Table(
        "Prefect 3.9.1: N concurrent wait_for_run tasks gathered in one flow run (flow process only)",
        [
            "waits",
            "runs' own length",
            "flow wall time",
            "x runs' length (target 1.2x)",
            "CPU of the flow process",
            "peak RSS",
            "threads (most seen)",
            "status requests",
            "succeeded",
            "load average",
        ],
    )
    if "failed" in plain:
        table.add(f"failed: {plain['failed']}", *["-"] * 9)
    else:
        ratio = plain["since_runs_began_s"] / plain["run_length_s"]
        table.add(
            fmt(plain["waits"]),
            f"{plain['run_length_s']:g} s",
            f"{plain['wall_s']:.1f} s",
            f"{ratio:.2f}x" + ("" if ratio <= 1.2 else f" (missed by {ratio - 1.2:.2f}x)"),
            f"{plain['cpu_s']:.1f} s ({1000 * plain['cpu_s'] / plain['waits']:.1f} ms per wait)",
            f"{plain['peak_rss_mb']:.0f} MB",
            str(plain["peak_threads"]),
            fmt(plain["served"]),
            f"{plain['succeeded']} / {plain['waits']}",
            load,
        )
    if result.get("figures_profiled"):
        table.notes.append("These figures are the profiled run's (the quick form runs the cell once).")
    table.notes += [
        "The flow gathers the waits (`asyncio.gather(*(wait_for_run(run, api, policy) ...))`) with a fixed "
        "1 s policy, so that polling adds at most 1 s; Prefect's server (prefect_test_harness, SQLite) and "
        "the reference server run in processes of their own.",
        "x runs' length: from the moment the remote runs were made (just before the flow starts) to the "
        "flow's return, over the runs' own length.",
    ]
    tables = [table]
    shares = result["cpu_shares"]
    if shares:
        where = Table(
            "Where the flow process's CPU goes (py-spy, the same workload, samples inside the flow call)",
            ["owner of the code that ran", "share of CPU samples"],
        )
        for owner, share in shares.items():
            where.add(owner, f"{100 * share:.1f}%")
        profiled = result["profiled"]
        if "failed" not in profiled:
            where.notes.append(
                f"The profiled run: {profiled['wall_s']:.1f} s wall, {profiled['cpu_s']:.1f} s CPU (py-spy "
                "samples 50 times a second without stopping the process)."
            )
        where.notes.append(
            "Each sample goes to the innermost runwatch or Prefect frame on its stack: library code "
            "(pydantic, httpx, aiohttp, asyncio) counts for whoever called it."
        )
        tables.append(where)
    return tables


# ---------------------------------------------------------------------------------------------- suspend mode


def run_suspend(base: str, flows: int, workers: int, settle: float, window: float) -> dict[str, Any]:
    """One `prefect-runwatch watcher` and `flows` suspended flow runs (`_suspend.py` in .venv/prefect)."""
    spec = {
        "server": base,
        "flows": flows,
        "workers": workers,
        "watcher_start": 15.0,  # its first scan done: the idle RSS
        "settle": settle,
        "window": window,
        "resume_timeout": 600.0,
    }
    print(f"  suspend: {flows:,} suspended flow runs, one watcher ...", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="runwatch-bench-") as tmp:
        out = Path(tmp) / "result.json"
        raw = Path(tmp) / "resume-profile.txt"
        spec |= {"py_spy": str(VENVS / "bench" / "bin" / "py-spy"), "profile_out": str(raw)}
        command = [str(VENVS / "prefect" / "bin" / "python"), str(HERE / "_suspend.py"), str(out)]
        try:
            done = subprocess.run(
                command, input=json.dumps(spec), capture_output=True, text=True, timeout=2400, cwd=HERE
            )
        except subprocess.TimeoutExpired:
            return {"failed": "no answer within 2400 s"}
        if not out.exists():
            lines = [line for line in done.stderr.splitlines() if line.strip()]
            return {"failed": (lines[-1:] or [f"exit code {done.returncode}"])[0][:200]}
        result: dict[str, Any] = json.loads(out.read_text())
        result["resume_cpu_shares"] = summarize(raw) if raw.exists() else {}
        return result


def suspend_tables(result: dict[str, Any], load: str) -> list[Table]:
    table = Table(
        "Prefect suspend mode: one `prefect-runwatch watcher`, N flow runs suspended on runs kept RUNNING "
        "(watcher process only)",
        [
            "suspended flow runs",
            "watcher CPU, % of a core",
            "CPU per status read",
            "status reads per s",
            "watcher RSS: idle / watching / peak while resuming",
            "flow processes alive while waiting",
            "resumed after the runs end: half / all",
            "watcher CPU to resume all",
            "load average",
        ],
    )
    if "failed" in result:
        table.add(f"failed: {result['failed']}", *["-"] * 8)
        return [table]
    r = result
    reads = r["status_requests"]
    table.add(
        fmt(r["flows"]),
        f"{100 * r['watcher_cpu_s'] / r['window_s']:.1f}%",
        f"{1e6 * r['watcher_cpu_s'] / reads:,.0f} µs" if reads else "-",
        f"{reads / r['window_s']:.1f}",
        f"{r['watcher_idle_rss_kb'] / 1024:.0f} / {r['watcher_rss_kb'] / 1024:.0f} / "
        + (
            f"{r['watcher_peak_rss_resume_kb'] / 1024:.0f} MB"
            if "watcher_peak_rss_resume_kb" in r
            else "- MB"
        ),
        f"{max(r['flow_processes_alive'])} (of {r['most_worker_processes']} that ran them)",
        f"{r['resume_half_s']:.0f} / {r['resume_all_s']:.0f} s",
        f"{r['resume_cpu_s']:.1f} s ({1000 * r['resume_cpu_s'] / r['flows']:.1f} ms per flow run)",
        load,
    )
    if r["flows"] < r["flows_asked"]:
        table.notes.append(
            f"{r['flows_asked'] - r['flows']:,} of the {r['flows_asked']:,} flow runs made did not suspend "
            "(Prefect's SQLite test server refused some of their calls under the load): the figures are of "
            f"the {r['flows']:,} that did."
        )
    table.notes += [
        f"How the flow runs were made: a deployment whose flow calls `wait_for_run(run, block, "
        f"release_infrastructure=True)` (the default policy), {r['flows_asked']:,} flow runs of it made "
        "through Prefect's API, executed by Prefect's own flow engine (`run_flow_async`) in "
        f"{r['workers']} worker processes, {r['per_worker']} at a time each, instead of one process start "
        "per flow run. Each looked at its run once, wrote its watch record and suspended (the collection's "
        "own suspend path); "
        f"{r['flows']:,} were Suspended {r['suspended_after_s']:.0f} s after the workers started "
        f"({1000 * r['workers_cpu_s'] / r['flows']:.0f} ms of worker CPU per flow run, process starts "
        "included), and the workers then exited.",
        f"The watcher runs as users run it (`prefect-runwatch watcher`: a scan every 10 s), started before "
        f"the flow runs; it had read every run {r['watcher_read_all_after_s']:.0f} s after the workers "
        f"started. Measured over {r['window_s']:.0f} s, {r['settle_s']:g} s later (time for the default "
        "policy to back off towards its 60 s cap): the watcher's CPU (/proc, every thread: its scans of "
        "Prefect's API included) and the status reads it made (the reference server's counters); CPU per "
        "status read: that CPU over those reads. RSS: after the watcher's first scan, before the first flow "
        "run, and at the window's end.",
        "flow processes alive: the most processes seen in the window that carry the workers' mark in their "
        "environment (the workers and anything they started), sampled through /proc; the second figure is "
        "the most seen while the flow runs were being made (the check sees them).",
        "resumed: every remote run cancelled on the server at once, then the time until half and until "
        "none of the flow runs were left Suspended (the watcher read the end and resumed it: "
        f"{r['resuming']:,} flow runs in Prefect's `Resuming` state). The resumed flow runs were not "
        "executed (no runner serves the deployment here): their rerun is Prefect's cost and is not "
        "measured. Prefect's server: prefect_test_harness (SQLite).",
    ]
    tables = [table]
    shares = r.get("resume_cpu_shares") or {}
    if shares:
        where = Table(
            "Where the watcher's CPU goes while it resumes the flow runs (py-spy from outside, by owner)",
            ["owner of the code that ran", "share of CPU samples"],
        )
        for owner, share in shares.items():
            where.add(
                owner.replace("the task, its logs and events", "the watcher, its logs and events"),
                f"{100 * share:.1f}%",
            )
        where.notes.append(
            "From the cancel to the last resume, 50 samples a second of the watcher's threads when on a CPU; "
            "each sample goes to the innermost runwatch or Prefect frame on its stack (library code counts "
            "for whoever called it)."
        )
        tables.append(where)
    return tables
