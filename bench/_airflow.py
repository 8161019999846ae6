"""The Airflow sections, driven from .venv/core: each cell is `_triggerer.py` in a fresh .venv/bench process.

- `triggerer`: N triggers per subject in Airflow's TriggerRunner against runs that stay RUNNING, polling
  every `interval` s: client CPU per request, RSS per trigger, loop lag, blocked-loop warnings, served/asked.
- `ends`: runs that end at a uniformly random moment within D minutes, time-compressed by a factor k (the
  runs' lengths and every poll interval divided by k, so each run takes the same number of requests as it
  would at full length; detection latency is multiplied back by k): requests, client CPU and detection
  latency per run, for each anchor at its default interval and at 1 s, and for runwatch's patterns.
"""

from __future__ import annotations

import base64
import json
import os
import random
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from _anchors import SUBJECTS, connections, create_target
from _measure import percentile
from _report import Table, fmt, load_average

__all__ = ["ENDS_PATTERNS", "ends_table", "latencies", "run_ends", "run_triggerer", "triggerer_tables"]

HERE = Path(__file__).resolve().parent
BENCH_PYTHON = HERE.parent / ".venv" / "bench" / "bin" / "python"
TRIGGERER_ORDER = ("runwatch", "http", "runwatch-databricks", "databricks", "dbt-cloud")


def _environment(base: str, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_CONN_", "AIRFLOW__"))}
    env.update(connections(base))
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        # Trigger kwargs are stored encrypted; this run's own key (a deployment has one in its config).
        AIRFLOW__CORE__FERNET_KEY=_fernet_key(),
        VIRTUAL_ENV=str(BENCH_PYTHON.parent.parent),
    )
    return env


def _fernet_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def _cell(spec: dict[str, Any], base: str, timeout: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="runwatch-bench-") as tmp:
        out = Path(tmp) / "result.json"
        log = Path(tmp) / "stderr.txt"
        try:
            with log.open("w") as err:
                done = subprocess.run(
                    [str(BENCH_PYTHON), str(HERE / "_triggerer.py"), str(out)],
                    input=json.dumps(spec),
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                    text=True,
                    timeout=timeout,
                    cwd=HERE,
                    env=_environment(base, Path(tmp)),
                )
        except subprocess.TimeoutExpired:
            return {"failed": f"no answer within {timeout:.0f} s"}
        if done.returncode != 0 or not out.exists():
            lines = [line for line in log.read_text().splitlines() if line.strip()]
            return {"failed": (lines[-1:] or [f"exit code {done.returncode}"])[0][:200]}
        result: dict[str, Any] = json.loads(out.read_text())
        return result


# ---------------------------------------------------------------------------------------------- triggerer


def run_triggerer(base: str, sizes: list[int], args: Any, cpu: int | None) -> list[dict[str, Any]]:
    """Every subject at every size, interleaved (all subjects at one size, then the next size)."""
    results = []
    fixed_1s = {"interval": args.interval, "backoff": 1, "jitter": False}
    for n in sizes:
        load = load_average()
        for name in TRIGGERER_ORDER:
            subject = SUBJECTS[name]
            with ThreadPoolExecutor(16) as pool:  # control calls: thousands of runs to make
                targets = list(pool.map(lambda i, s=name: create_target(base, s, 86400.0, i), range(n)))
            spec = {
                "mode": "steady",
                "subject": name,
                "classpath": subject.classpath,
                "kwargs": [subject.kwargs(t, args.interval, fixed_1s) for t in targets],
                "server": base,
                "settle": args.settle,
                "duration": args.duration,
                "interval": args.interval,
                "deadline": 120.0,
                "cpu": cpu,
                "patch_dbt_scheme": name == "dbt-cloud",
            }
            print(f"  triggerer: {name} x {n:,} ...", file=sys.stderr, flush=True)
            result = _cell(spec, base, timeout=args.settle + args.duration + 300)
            results.append({"subject": name, "n": n, "load": load, **result})
    return results


def _per_request_us(r: dict[str, Any]) -> float | None:
    if "failed" in r or not r.get("served"):
        return None
    return float(r["cpu_s"]) / r["served"] * 1e6


def triggerer_tables(results: list[dict[str, Any]], interval: float, duration: float) -> list[Table]:
    table = Table(
        "Triggers in Airflow's own TriggerRunner (Airflow 3.3.2): N triggers polling runs that stay RUNNING, "
        f"one request per {interval:g} s each, measured over {duration:g} s (client process only)",
        [
            "trigger",
            "triggers",
            "served / asked",
            "CPU per request",
            "x RunStatusTrigger",
            "CPU, % of a core",
            "RSS per trigger",
            "loop lag p99 / max",
            "blocked-loop warnings",
            "waited for a CPU",
            "load average",
        ],
    )
    ours = {r["n"]: _per_request_us(r) for r in results if r["subject"] == "runwatch"}
    for r in results:
        label = SUBJECTS[r["subject"]].label
        if "failed" in r:
            table.add(label, fmt(r["n"]), f"failed: {r['failed']}", *["-"] * 8)
            continue
        us = _per_request_us(r)
        base = ours.get(r["n"])
        ratio = f"{us / base:.2f}x" if us and base else "-"
        asked = r["asked"]
        table.add(
            label,
            fmt(r["n"]),
            f"{fmt(r['served'])} / {fmt(asked)} ({100 * r['served'] / asked:.0f}%)",
            fmt(us, 0, " µs"),
            ratio,
            f"{100 * r['cpu_s'] / r['window_s']:.0f}%",
            fmt(r["rss_per_trigger_kb"], 1, " KB"),
            f"{fmt(r['lag_p99_ms'])} / {fmt(r['lag_max_ms'])} ms",
            f"{r['blocked_warnings']} (ramp {r['blocked_warnings_ramp']})",
            f"{r['cpu_wait_s']:.1f} s" + (" (!)" if r["cpu_wait_s"] > 0.2 * r["window_s"] else ""),
            r["load"],
        )
    table.notes += [
        "Each cell: a fresh process runs Airflow's TriggerRunner.arun() (what `airflow triggerer` runs in "
        "its "
        "trigger process) fed N RunTrigger workloads by a forked stand-in supervisor; the triggers start, "
        "settle, then the window is measured. The reference server runs in another process, pinned to "
        "the other CPU.",
        "served / asked: requests the server answered in the window / one per trigger per interval.",
        "CPU per request: the trigger process's CPU in the window / requests served (the runner's own "
        "loop included). RSS per trigger: peak RSS growth from before the first trigger / N.",
        "blocked-loop warnings: the runner's own `Triggerer's async thread was blocked` warnings (over "
        "0.2 s, Airflow's default threshold) in the window, and while the triggers started (ramp).",
        "waited for a CPU: time the process was ready but other processes held the CPU; (!) over 20% "
        "of the window: the absolute figures of that row are not to be trusted, the ratios less so.",
        "HttpSensorTrigger's run is a URL that answers 404 until the run ends (what it waits for); "
        "RunStatusTrigger reads runwatch's API, whose unchanged runs answer 304 (ETag); the "
        "Databricks-profile row reads the same Databricks shape DatabricksExecutionTrigger does.",
    ]
    return [table]


# ---------------------------------------------------------------------------------------------- ends

# (key, subject, interval in s at full scale (None: the trigger's default), runwatch policy at full scale)
ENDS_PATTERNS: list[tuple[str, str, float | None, dict[str, Any] | None]] = [
    ("DateTimeTrigger at each run's end (baseline)", "baseline", None, None),
    ("runwatch default Policy", "runwatch", None, {}),
    ("HttpSensorTrigger, default (5 s)", "http", None, None),
    ("runwatch long polling (holds of 30 s)", "runwatch", None, {"long_poll": 30.0}),
    ("runwatch webhook push (default Policy, inbox in the triggerer)", "runwatch-push", None, {}),
    ("DatabricksExecutionTrigger, default (30 s)", "databricks", None, None),
    ("runwatch, fixed 1 s", "runwatch", 1.0, {"interval": 1.0, "backoff": 1, "jitter": False}),
    ("DbtCloudRunJobTrigger, default (60 s)", "dbt-cloud", None, None),
    ("HttpSensorTrigger, 1 s", "http", 1.0, None),
    ("DatabricksExecutionTrigger, 1 s", "databricks", 1.0, None),
    ("DbtCloudRunJobTrigger, 1 s", "dbt-cloud", 1.0, None),
]
_SCALED = ("interval", "max_interval", "long_poll")


def _scaled_policy(policy: dict[str, Any], k: float) -> dict[str, Any]:
    full = {"interval": 2.0, "max_interval": 60.0, **policy}  # Policy's defaults, made explicit to scale them
    return {key: (value / k if key in _SCALED else value) for key, value in full.items()}


def run_ends(
    base: str,
    minutes: list[float],
    compress: dict[float, float],
    runs: int,
    cpu: int | None,
    seed: int,
    jobs: int = 1,
) -> list[dict[str, Any]]:
    """Each pattern for runs that end within each of `minutes`, one cell per pattern, interleaved.

    `jobs` cells at once (the quick form): each counts its own requests and CPU, but they share the CPUs,
    so their latencies are less exact."""
    rng = random.Random(seed)
    cells = []
    for d in minutes:
        k = compress[d]
        # Every pattern waits for runs with the same ends: the comparison is of the waiting alone.
        ends = [rng.uniform(0, d * 60) for _ in range(runs)]
        for key, name, interval, policy in ENDS_PATTERNS:
            subject = SUBJECTS[name]
            every = subject.default_interval if interval is None else interval
            spec = {
                "mode": "ends",
                "subject": name,
                "classpath": subject.classpath,
                "ends": [e / k for e in ends],
                "interval": every / k,
                "policy": None if policy is None else _scaled_policy(policy, k),
                "server": base,
                "deadline": (d * 60 + 4 * max(every, 60.0)) / k + 30,
                "cpu": cpu,
                "patch_dbt_scheme": name == "dbt-cloud",
            }
            cells.append(({"pattern": key, "subject": name, "minutes": d, "k": k}, spec))

    def one(cell: tuple[dict[str, Any], dict[str, Any]]) -> dict[str, Any]:
        about, spec = cell
        about["load"] = load_average()  # when the cell starts
        print(
            f"  ends: {about['pattern']}, runs within {about['minutes']:g} min (x{about['k']:g}) ...",
            file=sys.stderr,
            flush=True,
        )
        return {**about, **_cell(spec, base, timeout=spec["deadline"] + 120)}

    with ThreadPoolExecutor(max(1, jobs)) as pool:
        return list(pool.map(one, cells))


def latencies(r: dict[str, Any]) -> list[float]:
    """Detection latency of each run in seconds at full scale (long polling: as measured, see notes)."""
    fired = r.get("fired", {})
    scale = 1.0 if "long polling" in r["pattern"] or "push" in r["pattern"] else r["k"]
    return [
        (fired[str(i + 1)] - ended) * scale for i, ended in enumerate(r["ended_at"]) if str(i + 1) in fired
    ]


def ends_table(results: list[dict[str, Any]]) -> Table:
    table = Table(
        "Cost of watching a run to its end: runs ending at a uniformly random moment within D minutes, "
        "each pattern in Airflow's TriggerRunner (per run, client process only)",
        [
            "pattern",
            "runs end within",
            "time scale",
            "requests per run",
            "client CPU per run: all / above baseline",
            "x runwatch default",
            "detection latency p50 / p99",
            "detected",
            "load average",
        ],
    )

    def cpu_of(key: str) -> dict[float, float]:
        return {
            r["minutes"]: r["cpu_s"] / len(r["ended_at"])
            for r in results
            if r["pattern"] == key and "failed" not in r
        }

    idle, ours = cpu_of(ENDS_PATTERNS[0][0]), cpu_of(ENDS_PATTERNS[1][0])
    for r in results:
        if "failed" in r:
            table.add(
                r["pattern"], f"{r['minutes']:g} min", f"x{r['k']:g}", f"failed: {r['failed']}", *["-"] * 5
            )
            continue
        n = len(r["ended_at"])
        lat = latencies(r)
        cpu = r["cpu_s"] / n
        floor = idle.get(r["minutes"], 0.0)
        base = ours.get(r["minutes"], 0.0) - floor
        waiting = max(0.0, cpu - floor)
        table.add(
            r["pattern"],
            f"{r['minutes']:g} min",
            f"x{r['k']:g}",
            fmt(r["sent"] / n, 1),
            f"{fmt(cpu * 1000, 1)} / {fmt(waiting * 1000, 1)} ms",
            f"{waiting / base:.2f}x" if base > 0 and r["subject"] != "baseline" else "-",
            "-"
            if r["subject"] == "baseline"
            else f"{_seconds(percentile(lat, 50))} / {_seconds(percentile(lat, 99))}",
            f"{len(lat)} / {n}",
            r["load"],
        )
    table.notes += [
        "Every pattern waits for runs with the same end times (drawn once per D). Time scale xk: the runs' "
        "lengths and every poll interval (and runwatch's policy: interval, cap, long-poll hold) are divided "
        "by k, so a run costs the requests it would at full length; polling latencies are multiplied back "
        "by k, which multiplies a request's own round trip (a few ms here) by k too.",
        "Long polling's and push's latencies are shown as measured (not multiplied): the server answers a "
        "held request, or sends its webhook, when the run changes, whatever the interval.",
        "webhook push: runwatch's Airflow trigger polls, so this row is the core's own push path in the same "
        "TriggerRunner (bench/_push.py): `runwatch.wait_for_run(..., inbox=inbox)` with the default policy "
        "(it polls at the policy's cap while pushes come), one `WebhookInbox` per process served on "
        "127.0.0.1 by aiohttp's web server, the reference server subscribed to these runs and pushing a "
        "signed Standard Webhooks message at each change. Its requests per run are the waits' own reads; "
        "the server's deliveries (one per change of a run) come in on top, and receiving and verifying "
        "them is in the CPU.",
        "requests per run: requests the trigger process sent (counted around aiohttp's ClientSession) from "
        "the moment the runs started (the triggers start at once: their start is counted); client CPU per "
        "run: that process's CPU over the same span / "
        "runs, the TriggerRunner's own loop included.",
        "above baseline: minus the DateTimeTrigger row's CPU per run (the runner, its watchdog and the "
        "bench's 50 ms loop probe, paid whatever the trigger): what waiting by that pattern adds. The x "
        "column compares that.",
        "runwatch default Policy: 2 s between reads, x2 backoff with full jitter, capped at 60 s.",
    ]
    return table


def _seconds(value: float) -> str:
    if value != value:  # NaN
        return "-"
    return f"{value * 1000:,.0f} ms" if value < 1 else f"{value:,.1f} s"
