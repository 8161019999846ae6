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

__all__ = ["prefect_tables", "run_prefect"]

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
