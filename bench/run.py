"""runwatch benchmarks, side by side in one run: `./dev bench` (that is `python bench/run.py` in .venv/core).

Sections (all by default, about 40 minutes on 2 cores; `--quick`: the anchor sections, small, under 3 min):
  transport  N concurrent waits polling every second, per client pattern: client CPU per poll, RSS per wait,
             loop lag, requests served/asked; the reference server runs in another process.
  waits      many waits on one API: requests per run and detection latency (polling, backoff, long polling)
             and a 429 storm with Retry-After, runwatch against the Airflow trigger patterns.
  triggerer  N triggers in Airflow's own TriggerRunner (.venv/bench): RunStatusTrigger beside the anchors
             HttpSensorTrigger, DatabricksExecutionTrigger and DbtCloudRunJobTrigger, runs kept RUNNING.
  ends       the cost of watching a run to its end (runs ending within 1, 10, 60 minutes, time-compressed):
             requests, client CPU and detection latency per run, anchors and runwatch in the TriggerRunner.
  prefect    1,000 concurrent wait_for_run tasks in one Prefect flow run (.venv/prefect): wall time over the
             runs' own length, CPU, RSS, threads, and where the CPU goes (py-spy).
  suspend    Prefect suspend mode (.venv/prefect): one `prefect-runwatch watcher`, 1,000 flow runs suspended
             on runs kept RUNNING: its CPU, RSS, status reads, flow processes alive; then the runs end: time
             to resume every flow run.
  imports    what importing runwatch, the sensor module and the Prefect task module adds to the
             orchestrator's own import.
  profile    (only on request) cProfile of the waiter at 1,000 waits: where the client CPU goes.

Examples:
  ./dev bench                                         everything; rewrites docs/benchmarks.md and .json
  ./dev bench --quick                                 the anchor sections, small sizes (docs untouched)
  ./dev bench --render                                rewrite docs/benchmarks.md from docs/benchmarks.json
  ./dev bench --only triggerer --trigger-sizes 1000   one section, one size (docs untouched)
  ./dev bench --only transport --sizes 100,1000       one section, two sizes (docs untouched)
  ./dev bench --only transport --subjects aiohttp-shared,runwatch --sizes 10000
  ./dev bench --only waits
  ./dev bench --only profile --sizes 1000
  ./dev bench --only suspend,imports --write          refresh two sections of docs/benchmarks.md and .json
                                                      (the others are kept from the last run)
Results are ratios on the same machine in the same run; absolute figures move with the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _airflow import ends_table, run_ends, run_triggerer, triggerer_tables
from _clients import SUBJECTS
from _flows import prefect_tables, run_prefect, run_suspend, suspend_tables
from _guide import guide_lines
from _imports import imports_table, run_imports
from _report import Table, load_average, machine_facts
from _server import BenchServer, create_runs
from _tables import model_table, per_poll, profile_tables, targets_table, transport_table, waits_tables

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DOC = ROOT / "docs" / "benchmarks.md"
DATA = ROOT / "docs" / "benchmarks.json"
SECTIONS = ("transport", "waits", "triggerer", "ends", "prefect", "suspend", "imports", "profile")
DEFAULT_SECTIONS = ("transport", "waits", "triggerer", "ends", "prefect", "suspend", "imports")
# The suspend cell is not in the quick form (100 flow runs take about 5 minutes): `--only suspend --quick`.
QUICK_SECTIONS = ("triggerer", "ends", "prefect", "imports")
# Runs that end within D minutes, time-compressed by k (see _airflow.py): full length D / k of wall time.
COMPRESS = {1.0: 4.0, 10.0: 20.0, 60.0: 60.0}
QUICK_COMPRESS = {1.0: 20.0}
RUN_POOL = 1000  # distinct runs per kind; wait i polls run i % RUN_POOL


def _csv(kind: type, choices: tuple[str, ...] | None = None):  # -> argparse type
    def parse(text: str) -> list[Any]:
        values = [kind(v.strip().replace("_", "")) for v in text.split(",") if v.strip()]
        bad = [v for v in values if choices is not None and v not in choices]
        if bad or not values:
            raise argparse.ArgumentTypeError(f"expected a comma list of {', '.join(choices or ('numbers',))}")
        return values

    return parse


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--only", type=_csv(str, SECTIONS), default=list(DEFAULT_SECTIONS), help=f"of {','.join(SECTIONS)}"
    )
    parser.add_argument(
        "--sizes", type=_csv(int), default=[100, 1000, 10000], help="concurrent waits per cell"
    )
    parser.add_argument(
        "--subjects", type=_csv(str, tuple(SUBJECTS)), default=list(SUBJECTS), help=f"of {','.join(SUBJECTS)}"
    )
    parser.add_argument(
        "--quick", action="store_true", help="the anchor sections at small sizes, in parallel where it can"
    )
    parser.add_argument(
        "--trigger-sizes", type=_csv(int), default=None, help="triggers per triggerer cell (1000,5000)"
    )
    parser.add_argument(
        "--minutes", type=_csv(float), default=None, help="runs end within these minutes (1,10,60)"
    )
    parser.add_argument("--runs", type=int, default=None, help="runs per pattern in the ends section (10)")
    parser.add_argument("--duration", type=float, default=6.0, help="seconds of polling per transport cell")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between two polls of a wait")
    parser.add_argument(
        "--repeat", type=int, default=1, help="run each transport cell N times, keep the best"
    )
    parser.add_argument("--server", choices=("reference", "stub"), default="reference")
    parser.add_argument("--no-pin", action="store_true", help="do not pin client and server to CPUs 0 and 1")
    parser.add_argument(
        "--write",
        dest="write",
        action="store_true",
        default=None,
        help="write docs/benchmarks.md and .json (a partial run: its sections only, the rest kept)",
    )
    parser.add_argument(
        "--no-write", dest="write", action="store_false", help="leave docs/benchmarks.md alone"
    )
    args = parser.parse_args(argv)
    if args.write is None:  # the committed page only ever holds complete runs
        args.write = not argv
    if args.quick:
        if "--only" not in argv:
            args.only = list(QUICK_SECTIONS)
        args.trigger_sizes = args.trigger_sizes or [200]
        args.minutes = args.minutes or [1.0]
        args.runs = args.runs or 10
        args.trigger_duration, args.trigger_settle, args.import_repeat, args.jobs = 3.0, 1.0, 1, 5
        args.flow_waits, args.flow_run_length = 100, 5.0
        args.suspended, args.suspend_workers, args.suspend_settle, args.suspend_window = 100, 2, 10.0, 15.0
        args.compress = {m: QUICK_COMPRESS.get(m, 20.0) for m in args.minutes}
    else:
        args.trigger_sizes = args.trigger_sizes or [1000, 5000]
        args.minutes = args.minutes or [1.0, 10.0, 60.0]
        args.runs = args.runs or 10
        args.trigger_duration, args.trigger_settle, args.import_repeat, args.jobs = 10.0, 5.0, 5, 1
        args.flow_waits, args.flow_run_length = 1000, 20.0
        args.suspended, args.suspend_workers, args.suspend_settle, args.suspend_window = 1000, 4, 60.0, 60.0
        args.compress = {m: COMPRESS.get(m, max(1.0, m)) for m in args.minutes}
    if args.server == "stub" and "waits" in args.only:
        parser.error("the waits section needs the reference server (lifecycles, faults, long polling)")
    return args


def _cpus(args: argparse.Namespace) -> tuple[int | None, int | None]:
    usable = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if args.no_pin or len(usable) < 2:
        return None, None
    return usable[0], usable[1]


def _subprocess(script: str, spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    try:
        done = subprocess.run(
            [sys.executable, str(HERE / script)],
            input=json.dumps(spec),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=HERE,
        )
    except subprocess.TimeoutExpired:
        return {"failed": f"no answer within {timeout:.0f} s"}
    if done.returncode != 0 or not done.stdout.strip():
        tail = done.stderr.strip().splitlines()[-1:] or [f"exit code {done.returncode}"]
        return {"failed": tail[0][:200]}
    result: dict[str, Any] = json.loads(done.stdout)
    return result


# ---------------------------------------------------------------------------------------------- transport


def run_transport(
    server: BenchServer, args: argparse.Namespace, profile: bool = False
) -> list[dict[str, Any]]:
    body = {"script": [{"status": "RUNNING", "for": 86400}, {"status": "SUCCEEDED"}]}
    pools = {
        "quiet": create_runs(server.url, RUN_POOL, body),
        "beating": create_runs(server.url, RUN_POOL, {**body, "heartbeat_every": 0.5}),
    }
    client_cpu, _ = _cpus(args)
    smallest = min(args.sizes)
    results = []
    for n in args.sizes:
        for name in args.subjects:
            subject = SUBJECTS[name]
            if subject.small_only and n > smallest:
                continue
            pool = pools[subject.runs]
            spec = {
                "subject": name,
                "urls": [pool[i % len(pool)] for i in range(n)],
                "interval": args.interval,
                "duration": args.duration,
                "server": server.url,
                "cpu": client_cpu,
                "profile": profile,
            }
            print(f"  transport: {name} x {n:,} ...", file=sys.stderr, flush=True)
            runs = [
                _subprocess("_cell.py", spec, timeout=args.duration + 2 * args.interval + 120)
                for _ in range(max(1, args.repeat))
            ]
            # Other load on the machine only ever adds CPU: the least CPU per poll is the truest figure.
            best = min(runs, key=lambda r: per_poll(r) if "failed" not in r else float("inf"))
            results.append({"subject": name, "n": n, "runs": len(runs), **best})
    return results


# ---------------------------------------------------------------------------------------------- waits


def run_waits(server: BenchServer, args: argparse.Namespace) -> dict[str, Any]:
    client_cpu, _ = _cpus(args)
    spec = {
        "server": server.url,
        "cpu": client_cpu,
        "phases": ["lifecycle", "storm"],
        "lifecycle": {"run_length": 12.0, "runs_per_pattern": 10, "deadline": 45.0},
        "storm": {"runs_per_pattern": 10, "warm_up": 3.0, "storm": 10.0, "after": 4.0, "retry_after": 5.0},
    }
    print("  waits: lifecycle and 429 storm ...", file=sys.stderr, flush=True)
    return _subprocess("_waits.py", spec, timeout=180)


# ---------------------------------------------------------------------------------------------- output


def _commit() -> str:
    """The checked-out commit, and whether core/ has uncommitted changes (the waiter measured is core/)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "core"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" (core/ has uncommitted changes)" if dirty else "")


def command_line(argv: list[str]) -> str:
    return "./dev bench" + ("" if not argv else " " + shlex.join(argv))


def write_doc(
    path: Path,
    facts: dict[str, str],
    command: str,
    tables: list[Table],
    elapsed: float,
    guide: list[str],
    commit: str,
    refreshed: list[dict[str, Any]],
) -> None:
    lines = [
        "# Benchmarks",
        "",
        "Regenerated by `./dev bench` (`python bench/run.py` in `.venv/core`; the Airflow cells run in",
        "`.venv/bench`, the Prefect ones in `.venv/prefect`); do not edit by hand. The same figures,",
        "machine-readable: [benchmarks.json](benchmarks.json). What the transport figures decided:",
        "[transport.md](transport.md).",
        "",
        f"- Command: `{command}` ({elapsed:.0f} s)",
        *[f"- {key}: {value}" for key, value in facts.items()],
        f"- runwatch commit: {commit}",
        *[
            f"- Refreshed since ({', '.join(r['sections'])}): `{r['command']}` ({r['seconds']} s) on "
            f"{r['date']}: load average {r['load']}; runwatch commit {r['commit']}"
            for r in refreshed
        ],
        "- Setup: the reference server (`runwatch.server.ReferenceServer`: uvicorn, with uvloop and",
        "  httptools when installed) runs in its own process on 127.0.0.1, pinned to one CPU; each transport",
        "  cell runs in a fresh client process (asyncio's default loop) pinned to the other, so that one",
        "  subject's memory and caches never flatter the next.",
        "",
        "Absolute times move with the machine and with whatever else it runs (see the load averages and the",
        "`waited for a CPU` column); compare rows of the same run (the `x` columns).",
        "",
        "Run one section or a few cells (these leave this page alone unless `--write` is given):",
        "",
        "```",
        "./dev bench --quick                                           # anchor sections, small: < 3 min",
        "./dev bench --only triggerer --trigger-sizes 1000             # Airflow's TriggerRunner, one size",
        "./dev bench --only ends --minutes 10                          # watching runs to their end",
        "./dev bench --only transport --sizes 100,1000                 # transport cells, two sizes",
        "./dev bench --only transport --subjects aiohttp-shared,runwatch --sizes 10000 --repeat 3",
        "./dev bench --only waits                                      # many waits on one API, 429 storm",
        "./dev bench --only profile --sizes 1000                       # where the waiter's CPU goes",
        "./dev bench --only suspend --quick                            # Prefect suspend mode, 100 flow runs",
        "./dev bench --only suspend,imports --write                    # refresh two sections of this page",
        "./dev bench --help                                            # every option",
        "```",
        "",
    ]
    lines += guide
    for table in tables:
        lines += [f"## {table.title}", "", table.markdown(), ""]
    path.write_text("\n".join(lines), encoding="utf-8")


def tables_of(data: dict[str, Any], args: argparse.Namespace) -> list[Table]:
    """The tables of a run's results, in the page's order."""
    tables: list[Table] = []
    if "transport" in data:
        tables.append(transport_table(data["transport"], args.interval, args.duration))
        target = targets_table(data["transport"])
        if target is not None:
            tables.append(target)
    if "waits" in data:
        tables += waits_tables(data["waits"])
        tables.append(model_table())
    if "triggerer" in data:
        tables += triggerer_tables(data["triggerer"], args.interval, args.trigger_duration)
    if "ends" in data:
        tables.append(ends_table(data["ends"]))
    # Runs before these loads were recorded give the load at the end of the run instead.
    late = f"{data.get('load_at_end', 'unknown')} (at the end of the run)"
    if "prefect" in data:
        tables += prefect_tables(data["prefect"], data.get("prefect_load", late))
    if "suspend" in data:
        tables += suspend_tables(data["suspend"], data.get("suspend_load", late))
    if "imports" in data:
        tables.append(imports_table(data["imports"], data.get("imports_load", late)))
    return tables


def measure(args: argparse.Namespace) -> tuple[dict[str, Any], list[Table]]:
    """Run the chosen sections: their results, and the profile section's tables (never in the data)."""
    _, server_cpu = _cpus(args)
    client_cpu, _ = _cpus(args)
    data: dict[str, Any] = {}
    profile: list[Table] = []
    with BenchServer(args.server, server_cpu) as server:
        if "transport" in args.only:
            data["transport"] = run_transport(server, args)
        if "waits" in args.only:
            data["waits"] = run_waits(server, args)
        if "triggerer" in args.only:
            cell = argparse.Namespace(
                interval=args.interval, settle=args.trigger_settle, duration=args.trigger_duration
            )
            data["triggerer"] = run_triggerer(server.url, args.trigger_sizes, cell, client_cpu)
        if "ends" in args.only:
            data["ends"] = run_ends(
                server.url, args.minutes, args.compress, args.runs, client_cpu, seed=13, jobs=args.jobs
            )
        if "prefect" in args.only:
            data["prefect_load"] = load_average()
            data["prefect"] = run_prefect(
                server.url, args.flow_waits, args.flow_run_length, args.interval, unprofiled=not args.quick
            )
        if "suspend" in args.only:
            data["suspend_load"] = load_average()
            data["suspend"] = run_suspend(
                server.url, args.suspended, args.suspend_workers, args.suspend_settle, args.suspend_window
            )
        if "imports" in args.only:
            data["imports_load"] = load_average()
            with tempfile.TemporaryDirectory(prefix="runwatch-bench-") as home:
                data["imports"] = run_imports(args.import_repeat, Path(home))
        if "profile" in args.only:
            profiled = argparse.Namespace(
                **{**vars(args), "subjects": ["aiohttp-shared", "runwatch", "runwatch-changing"]}
            )
            profile = profile_tables(run_transport(server, profiled, profile=True))
    return data, profile


def _merged(record: dict[str, Any], sections: list[str]) -> dict[str, Any]:
    """`record` (a run of `sections` only) folded into the committed one: its sections replace theirs, the
    others stay as measured, and the page says which sections were refreshed by which command."""
    if not DATA.exists():
        return record
    old = json.loads(DATA.read_text())
    refreshed = {
        "sections": sections,
        "command": record["command"],
        "seconds": record["seconds"],
        "date": record["facts"]["Date"],
        "load": f"{record['facts']['Load average at start']} at start, "
        f"{record['facts']['Load average at the end']} at the end",
        "commit": record["commit"],
    }
    earlier = [r for r in old.get("refreshed", []) if set(r["sections"]) - set(sections)]
    results = {**old["results"], **record["results"]}
    return {**old, "results": results, "refreshed": [*earlier, refreshed]}


def _write(record: dict[str, Any]) -> None:
    """docs/benchmarks.json as `record`, and docs/benchmarks.md from it."""
    DATA.write_text(json.dumps(record, indent=1) + "\n")
    argv = shlex.split(record["command"])[2:]
    args = parse_args(argv)
    data = {**record["results"], "load_at_end": record["facts"].get("Load average at the end")}
    write_doc(
        DOC,
        record["facts"],
        record["command"],
        tables_of(data, args),
        record["seconds"],
        guide_lines(data),
        record["commit"],
        record.get("refreshed", []),
    )


def render() -> int:
    """Rewrite docs/benchmarks.md from docs/benchmarks.json (the page's wording changed, not the figures)."""
    _write(json.loads(DATA.read_text()))
    print(f"wrote {DOC.relative_to(ROOT)} from {DATA.relative_to(ROOT)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["--render"]:
        return render()
    args = parse_args(argv)
    started = time.monotonic()
    facts = machine_facts()
    data, profile = measure(args)
    tables = tables_of(data, args) + profile
    elapsed = time.monotonic() - started
    facts["Load average at the end"] = load_average()
    print()
    for key, value in facts.items():
        print(f"{key}: {value}")
    print(f"command: {command_line(argv)} ({elapsed:.0f} s)\n")
    for table in tables:
        print(table.text(), end="\n\n")
    guide = guide_lines(data)
    print("\n".join(guide))
    if args.write:
        record = {
            "command": command_line(argv),
            "seconds": round(elapsed),
            "facts": facts,
            "commit": _commit(),
            "results": data,
        }
        if argv:  # a run of some sections: the other sections stay as the last full run measured them
            record = _merged(record, list(args.only))
        _write(record)
        print(f"wrote {DOC.relative_to(ROOT)} and {DATA.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
