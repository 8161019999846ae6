"""The suspend-mode cell: one `prefect-runwatch watcher` and N flow runs suspended on remote runs that go on.

`python bench/_suspend.py OUT.json < spec.json` (.venv/prefect). A real Prefect server (prefect_test_harness:
Prefect's own server in a subprocess, SQLite) and the bench's reference server (another process). The flow
runs are made the way users make them, but without N process starts: a deployment `bench-suspend/bench` (its
flow calls `wait_for_run(run, block, release_infrastructure=True)` with the default policy), N flow runs of it
made through the API, and `workers` processes that each execute their share of those flow runs with Prefect's
own flow engine (`run_flow_async`, many at once). Each flow run looks at its remote run once, writes its watch
record and suspends (the collection's own suspend path); the worker process then exits. The watcher runs as
users run it (`prefect-runwatch watcher`, its default 10 s scan), started before the first flow run.

Measured from outside the watcher (/proc): its CPU and RSS over a steady window once every run was read and
the policy had time to back off, the status requests it made in the window (the server's per-run counters),
and the processes alive that carry this cell's mark (every worker and anything it started) while the flow
runs wait. Then every remote run is cancelled on the server at once: the time until no flow run is left
suspended (the watcher resumed it: Prefect's state left Paused) and the watcher's CPU over that span. The
resumed flow runs are not executed (no runner serves the deployment): their own rerun is Prefect's cost.
With `py_spy` in the spec, py-spy samples the watcher from outside while it resumes (`profile_out`).

`python bench/_suspend.py --worker < flow run ids` is one worker process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from _prefect_env import isolate

HOME = isolate(os.environ.get("RUNWATCH_BENCH_PREFECT_HOME"), keep_api_url=True)

from prefect import flow  # noqa: E402  (after the environment above: Prefect reads it on import)

from prefect_runwatch import wait_for_run  # noqa: E402

HERE = Path(__file__).resolve().parent
BLOCK = "bench-suspend"
MARK = "RUNWATCH_BENCH_SUSPEND"  # in the environment of every worker, inherited by whatever it starts
PER_WORKER = 15  # flow runs a worker runs at once (more make Prefect's SQLite server answer 503s)


@flow(name="bench-suspend")
async def released(run: str) -> dict[str, Any]:
    return await wait_for_run(run, BLOCK, release_infrastructure=True)


# ---------------------------------------------------------------------------------------------- /proc


def _proc_cpu_s(pid: int) -> float:
    """utime + stime of a process (every thread), in seconds."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _proc_status_kb(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(f"{key}:"):
                return int(line.split()[1])
    return 0


def _children_cpu_s() -> float:
    """CPU of this process's children that ended and were waited for (the workers)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _marked(mark: str) -> int:
    """Live processes whose environment holds `mark` ("NAME=value")."""
    needle, count = mark.encode(), 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes()
        except OSError:  # gone, or not ours to read
            continue
        count += needle in environ.split(b"\0")
    return count


# ---------------------------------------------------------------------------------------------- worker


async def _work(ids: list[str]) -> None:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import Pause
    from prefect.flow_engine import run_flow_async

    bound = asyncio.Semaphore(PER_WORKER)

    async def one(flow_run_id: str) -> None:
        async with bound:
            async with get_client() as client:
                flow_run = await client.read_flow_run(uuid.UUID(flow_run_id))
            # A suspension ends the flow run's execution with Prefect's Pause, as it ends a runner's process.
            with contextlib.suppress(Pause):
                await run_flow_async(
                    released, flow_run=flow_run, parameters=flow_run.parameters, return_type="state"
                )

    await asyncio.gather(*(one(i) for i in ids))


# ---------------------------------------------------------------------------------------------- the cell


async def _make_flow_runs(deployment_id: uuid.UUID, runs: list[str]) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import PrefectHTTPStatusError

    bound = asyncio.Semaphore(4)  # Prefect's SQLite server answers 503 to many writers at once
    async with get_client() as client:

        async def one(run: str) -> str:
            async with bound:
                for attempt in range(5):
                    try:
                        made = await client.create_flow_run_from_deployment(
                            deployment_id, parameters={"run": run}
                        )
                        return str(made.id)
                    except PrefectHTTPStatusError:
                        if attempt == 4:
                            raise
                        await asyncio.sleep(2**attempt)
                raise AssertionError("unreachable")

        return list(await asyncio.gather(*(one(r) for r in runs)))


async def _count(state: str) -> int:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateName

    async with get_client() as client:
        return await client.count_flow_runs(
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(name=FlowRunFilterStateName(any_=[state])))
        )


def _gets(base: str, run_ids: set[str]) -> int:
    from _server import run_counters

    return sum(c.get("GET", 0) for r, c in run_counters(base).items() if r in run_ids)


def _cancel_all(base: str, run_ids: list[str]) -> None:
    import aiohttp

    async def cancel() -> None:
        bound = asyncio.Semaphore(64)
        async with aiohttp.ClientSession() as session:

            async def one(run_id: str) -> None:
                async with bound, session.post(f"{base}/runs/{run_id}/cancel") as response:
                    response.raise_for_status()

            await asyncio.gather(*(one(r) for r in run_ids))

    asyncio.run(cancel())


def _until(test: Any, timeout: float, what: str, every: float = 1.0) -> float:
    """Poll `test()` until true: the seconds it took. Raises RuntimeError after `timeout` seconds."""
    began = time.monotonic()
    while not test():
        if time.monotonic() - began > timeout:
            raise RuntimeError(f"{what}: not within {timeout:.0f} s")
        time.sleep(every)
    return time.monotonic() - began


def cell(spec: dict[str, Any]) -> dict[str, Any]:
    from _server import create_runs
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    from prefect_runwatch import RunStatusApi

    n, base = spec["flows"], spec["server"]
    mark = f"{MARK}={uuid.uuid4()}"
    with prefect_test_harness(server_startup_timeout=120), tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "PREFECT_API_URL": str(PREFECT_API_URL.value()),
            "RUNWATCH_BENCH_PREFECT_HOME": HOME,
        }
        RunStatusApi(base_url=base).save(BLOCK, overwrite=True)
        deployment_id = released.to_deployment("bench").apply()
        log = open(Path(tmp) / "watcher.log", "wb")  # noqa: SIM115  (closed below, with the process)
        binary = str(Path(sys.executable).with_name("prefect-runwatch"))
        watcher = subprocess.Popen([binary, "watcher"], env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            time.sleep(spec["watcher_start"])
            idle_rss_kb = _proc_status_kb(watcher.pid, "VmRSS")

            body = {"script": [{"status": "RUNNING", "for": 86400}, {"status": "SUCCEEDED"}]}
            urls = create_runs(base, n, body)
            run_ids = [u.rsplit("/", 1)[1] for u in urls]
            made0 = time.monotonic()
            flow_run_ids = asyncio.run(_make_flow_runs(deployment_id, run_ids))
            made_s = time.monotonic() - made0

            # The flow runs, each executed by Prefect's engine in one of a few worker processes.
            started, children0 = time.monotonic(), _children_cpu_s()
            shares = [flow_run_ids[i :: spec["workers"]] for i in range(spec["workers"])]
            workers = [
                subprocess.Popen(
                    [sys.executable, str(HERE / "_suspend.py"), "--worker"],
                    env={**env, mark.split("=")[0]: mark.split("=")[1]},
                    stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    text=True,
                    cwd=HERE,
                )
                for _ in shares
            ]
            for worker, share in zip(workers, shares, strict=True):
                assert worker.stdin is not None
                worker.stdin.write("\n".join(share))
                worker.stdin.close()
            most_marked = 0
            while any(w.poll() is None for w in workers):
                most_marked = max(most_marked, _marked(mark))
                time.sleep(0.5)
            workers_cpu_s = _children_cpu_s() - children0
            failed = [w.stderr.read()[-300:] for w in workers if w.returncode != 0 and w.stderr is not None]
            suspended = asyncio.run(_count("Suspended"))
            suspend_s = time.monotonic() - started
            if suspended < n / 2:
                raise RuntimeError(f"{suspended} of {n} flow runs suspended; workers said: {failed[:1]}")

            # Waiting: every run read by the watcher, then the policy's backoff, then the window.
            ids = set(run_ids)
            first = _gets(base, ids)  # each flow run's own first look
            _until(lambda: _gets(base, ids) >= first + suspended, 300, "the watcher to read every run")
            seen_after = time.monotonic() - started
            time.sleep(spec["settle"])
            alive: list[int] = []
            cpu0, gets0, t0 = _proc_cpu_s(watcher.pid), _gets(base, ids), time.monotonic()
            while time.monotonic() - t0 < spec["window"]:
                alive.append(_marked(mark))
                time.sleep(min(5.0, spec["window"] / 4))
            window = time.monotonic() - t0
            cpu, gets = _proc_cpu_s(watcher.pid) - cpu0, _gets(base, ids) - gets0
            rss_kb, peak_kb = _proc_status_kb(watcher.pid, "VmRSS"), _proc_status_kb(watcher.pid, "VmHWM")

            # The end: every run cancelled at once; until no flow run is left suspended.
            cpu1, gets1, t1 = _proc_cpu_s(watcher.pid), _gets(base, ids), time.monotonic()
            profiler = None
            if spec.get("py_spy"):  # where the watcher's CPU goes while it resumes (samples from outside)
                sampler = [
                    spec["py_spy"],
                    "record",
                    "--pid",
                    str(watcher.pid),
                    "--nonblocking",
                    "--rate",
                    "50",
                ]
                profiler = subprocess.Popen(
                    [*sampler, "--format", "raw", "-o", spec["profile_out"]],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            _cancel_all(base, run_ids)
            timeline: list[tuple[float, int]] = []  # (seconds since the end, flow runs still suspended)

            def none_left() -> bool:
                timeline.append((time.monotonic() - t1, asyncio.run(_count("Suspended"))))
                return timeline[-1][1] == 0

            _until(none_left, spec["resume_timeout"], "every resume", 0.5)
            resume_s = time.monotonic() - t1
            half_s = next(t for t, left in timeline if left <= suspended / 2)
            resume_cpu = _proc_cpu_s(watcher.pid) - cpu1
            resume_gets = _gets(base, ids) - gets1
            resume_peak_kb = _proc_status_kb(watcher.pid, "VmHWM")
            if profiler is not None:
                profiler.send_signal(signal.SIGINT)  # py-spy writes its samples when interrupted
                try:
                    profiler.wait(60)
                except subprocess.TimeoutExpired:
                    profiler.kill()
                    profiler.wait()
            resuming = asyncio.run(_count("Resuming"))
        finally:
            watcher.terminate()
            try:
                watcher.wait(30)
            except subprocess.TimeoutExpired:
                watcher.kill()
                watcher.wait()
            log.close()
    return {
        "flows": suspended,
        "flows_asked": n,
        "workers": spec["workers"],
        "per_worker": PER_WORKER,
        "flow_runs_made_s": made_s,
        "suspended_after_s": suspend_s,
        "workers_cpu_s": workers_cpu_s,
        "most_worker_processes": most_marked,
        "watcher_read_all_after_s": seen_after,
        "settle_s": spec["settle"],
        "window_s": window,
        "watcher_cpu_s": cpu,
        "status_requests": gets,
        "watcher_idle_rss_kb": idle_rss_kb,
        "watcher_rss_kb": rss_kb,
        "watcher_peak_rss_kb": peak_kb,
        "flow_processes_alive": alive,
        "resume_all_s": resume_s,
        "resume_half_s": half_s,
        "resume_cpu_s": resume_cpu,
        "resume_status_requests": resume_gets,
        "watcher_peak_rss_resume_kb": resume_peak_kb,
        "resuming": resuming,
    }


def main() -> None:
    if sys.argv[1:] == ["--worker"]:
        ids = [line.strip() for line in sys.stdin if line.strip()]
        asyncio.run(_work(ids))
        return
    spec = json.load(sys.stdin)
    result = cell(spec)
    with open(sys.argv[1], "w", encoding="utf-8") as out:
        json.dump(result, out)


if __name__ == "__main__":
    main()
