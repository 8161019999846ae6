"""One cell of the Airflow sections: N triggers of one subject in Airflow's TriggerRunner, in this process.

Runs in .venv/bench (`python bench/_triggerer.py OUT.json < spec.json`). `TriggerRunner.arun()` is the loop
the `airflow triggerer` command runs in its trigger process (airflow/jobs/triggerer_job_runner.py): it reads
RunTrigger workloads from its supervisor over the socket on fd 0, decrypts their kwargs, runs each trigger
as a task, watches for a blocked loop and reports events back. The supervisor (which in a deployment reads
the triggers from the database) is a forked child of this process speaking the same frames: it hands over
the N workloads at the first sync and records nothing else, so its CPU is not this process's.

Modes:
- `steady`: every run stays RUNNING. After the triggers start and `settle` seconds pass, a window of
  `duration` seconds measures this process's CPU, the requests the server answered, loop lag (a 50 ms
  ticker beside the runner's own watchdog), peak RSS and the runner's blocked-loop warnings.
- `ends`: the cell makes its runs, each RUNNING for its time in `ends`, and starts the runner at once; from
  then on it counts the requests it sends and its CPU (the triggers' start included) until every trigger
  fired (or `deadline`), and records when each fired.

The logs Airflow writes per trigger go to /dev/null here (a triggerer ships them to its supervisor).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import sys
import threading
import time
from typing import Any

from _measure import LoopProbe, cpu_seconds, pin_to_cpu, raise_fd_limit, rss_kb, runqueue_wait_s
from _server import _call, requests_served

BLOCKED = "Triggerer's async thread was blocked"


class _CountingLog:
    """The runner's logger, unchanged, counting its blocked-loop warnings and noting when triggers fired."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.blocked: list[float] = []
        self.fired: dict[int, float] = {}
        self.failed = 0

    def _note(self, message: Any, kw: dict[str, Any]) -> None:
        text = str(message)
        if text.startswith(BLOCKED):
            self.blocked.append(time.monotonic())
        elif text == "Trigger fired event":
            name = str(kw.get("name", ""))
            if "ID " in name:
                self.fired.setdefault(int(name.rsplit("ID ", 1)[1].rstrip(")")), time.time())
        elif "exited with error" in text or "failed to" in text.lower():
            self.failed += 1

    async def ainfo(self, message: Any, *args: Any, **kw: Any) -> Any:
        self._note(message, kw)
        return await self._inner.ainfo(message, *args, **kw)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name in ("info", "warning", "error", "exception"):

            def noted(message: Any, *args: Any, **kw: Any) -> Any:
                self._note(message, kw)
                return attr(message, *args, **kw)

            return noted
        return attr


def _supervisor(
    sock: socket.socket, workloads: list[Any], base: str, creates: list[tuple[float, int]]
) -> None:
    """The stand-in supervisor: StartTriggerer, then every workload at the first sync, then empty syncs."""
    import msgspec
    from _anchors import create_http_run
    from airflow.jobs.triggerer_job_runner import messages
    from airflow.sdk.execution_time.comms import _RequestFrame, _ResponseFrame

    if creates:

        def make_runs() -> None:
            for at, index in sorted(creates):
                time.sleep(max(0.0, at - time.time()))
                create_http_run(base, index)

        threading.Thread(target=make_runs, daemon=True).start()
    decoder = msgspec.msgpack.Decoder(_RequestFrame)
    sock.sendall(_ResponseFrame(id=0, body=messages.StartTriggerer().model_dump()).as_bytes())
    pending = list(workloads)
    reader = sock.makefile("rb")
    while True:
        head = reader.read(4)
        if len(head) < 4:
            return
        frame = decoder.decode(reader.read(int.from_bytes(head, "big")))
        body = frame.body or {}
        if body.get("type") == "TriggerStateChanges":
            answer = messages.TriggerStateSync(to_create=pending, to_cancel=set())
            pending = []
            sock.sendall(_ResponseFrame(id=frame.id, body=answer.model_dump()).as_bytes())
        else:  # nothing else is expected: the connections come from AIRFLOW_CONN_* variables
            sock.sendall(_ResponseFrame(id=frame.id, body=None).as_bytes())


def _patch_dbt_scheme() -> None:
    # DbtCloudHook writes `https://` into every URL; the bench server speaks plain HTTP (see _anchors.py).
    from airflow.providers.dbt.cloud.hooks.dbt import DbtCloudHook

    original = DbtCloudHook.get_request_url_params

    def plain_http(*args: Any, **kwargs: Any) -> Any:
        url, params = original(*args, **kwargs)
        return url.replace("https://", "http://", 1), params

    DbtCloudHook.get_request_url_params = staticmethod(plain_http)  # type: ignore[method-assign]


SENT = [0]  # requests this process sent (ends mode), counted around aiohttp's ClientSession._request


def _count_requests() -> None:
    # Every subject's HTTP goes through aiohttp (the providers' hooks and runwatch's default transport).
    import aiohttp

    original = aiohttp.ClientSession._request

    async def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        SENT[0] += 1
        return await original(self, *args, **kwargs)

    aiohttp.ClientSession._request = counted  # type: ignore[method-assign]


def _make_runs(spec: dict[str, Any]) -> tuple[list[dict[str, Any]], list[tuple[float, int]]]:
    """The runs of an `ends` cell, made just before the runner starts, and the kwargs of their triggers.

    Each run is RUNNING for its time in `ends`, from when it is made. `http` runs are made when they end
    instead (`creates`: when, as a UNIX time, and which), under ids no other cell used."""
    from _anchors import SUBJECTS, create_target

    subject = SUBJECTS[spec["subject"]]
    kwargs, creates, ended_at = [], [], []
    spec["origin"] = time.time()
    offset = random.randrange(10**6, 10**8)  # the triggerer section's http runs are below 10**6
    for index, end in enumerate(spec["ends"]):
        made = time.time()
        target = create_target(spec["server"], subject.name, end, offset + index)
        if subject.name == "http":
            creates.append((made + end, offset + index))
        ended_at.append(made + end)
        kwargs.append(subject.kwargs(target, spec["interval"], spec.get("policy")))
    spec["ended_at"] = ended_at
    if subject.name == "runwatch-push":  # the server signs and pushes every change of these runs
        subscription = {
            "url": spec["inbox_url"],
            "secret": spec["inbox_secret"],
            "runs": [k["run"] for k in kwargs],
        }
        _call(spec["server"], "POST", "/webhooks", subscription)
    return kwargs, creates


async def _measure(runner: Any, log: _CountingLog, spec: dict[str, Any], base_rss: int) -> dict[str, Any]:
    n = len(spec["kwargs"])
    probe = LoopProbe()
    probe.start()
    loop = asyncio.get_running_loop()
    started = time.monotonic()
    while (  # noqa: ASYNC110 - the runner's state has no event to wait on
        len(runner.triggers) + len(log.fired) + log.failed < n
        and time.monotonic() - started < spec["deadline"]
    ):
        await asyncio.sleep(0.05)
    ramp_s = time.monotonic() - started
    ramp_end = loop.time()
    result: dict[str, Any] = {"n": n, "ramp_s": ramp_s, "started": len(runner.triggers) + len(log.fired)}
    if spec["mode"] == "steady":
        await asyncio.sleep(spec["settle"])
        served0, cpu0, wait0, blocked0 = (
            requests_served(spec["server"]),
            cpu_seconds(),
            runqueue_wait_s(),
            len(log.blocked),
        )
        t0 = loop.time()
        await asyncio.sleep(spec["duration"])
        t1 = loop.time()
        cpu1, wait1 = cpu_seconds(), runqueue_wait_s()
        served = requests_served(spec["server"]) - served0
        await probe.stop()
        result |= {
            "window_s": t1 - t0,
            "cpu_s": cpu1 - cpu0,
            "served": served,
            "asked": n * (t1 - t0) / spec["interval"],
            "lag_p99_ms": probe.lag_ms(99, since=t0, until=t1),
            "lag_max_ms": probe.lag_ms(None, since=t0, until=t1),
            "ramp_lag_max_ms": probe.lag_ms(None, until=ramp_end),
            "blocked_warnings": len(log.blocked) - blocked0,
            "blocked_warnings_ramp": blocked0,
            "cpu_wait_s": wait1 - wait0,
            "rss_per_trigger_kb": (probe.peak_rss_kb - base_rss) / n,
            "still_waiting": len(runner.triggers),
        }
    else:
        cpu0 = spec["cpu_at_origin"]
        while len(log.fired) + log.failed < n and time.monotonic() - started < spec["deadline"]:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        result |= {
            "cpu_s": cpu_seconds() - cpu0,
            "sent": SENT[0],
            "ended_at": spec["ended_at"],
            "fired": {str(k): v for k, v in log.fired.items()},
            "trigger_failures": log.failed,
            "blocked_warnings": len(log.blocked),
            "lag_p99_ms": probe.lag_ms(99),
            "lag_max_ms": probe.lag_ms(None),
            "cpu_wait_s": runqueue_wait_s(),
        }
        await probe.stop()
    return result


def main() -> None:
    spec = json.load(sys.stdin)
    out_path = sys.argv[1]
    pin_to_cpu(spec.get("cpu"))
    raise_fd_limit(65536)
    # Airflow's logs (every trigger's, and the runner's) would be this process's stdout.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    from airflow._shared.module_loading import import_string
    from airflow.executors.workloads import RunTrigger
    from airflow.jobs.triggerer_job_runner import TriggerRunner
    from airflow.models.trigger import Trigger

    import_string(spec["classpath"])  # the trigger's module, imported before measuring (a triggerer has it)
    if spec.get("patch_dbt_scheme"):
        _patch_dbt_scheme()
    creates: list[tuple[float, int]] = []
    loop = asyncio.new_event_loop()
    if spec["subject"] == "runwatch-push":  # the receiver is up before any run is made, as in a deployment
        import _push

        spec["inbox_url"], spec["inbox_secret"] = loop.run_until_complete(
            _push.start_receiver(spec["server"])
        )
    if spec["mode"] == "ends":
        _count_requests()
        spec["kwargs"], creates = _make_runs(spec)
        spec["cpu_at_origin"] = cpu_seconds()
    workloads = [
        RunTrigger(id=i + 1, classpath=spec["classpath"], encrypted_kwargs=Trigger.encrypt_kwargs(kw))
        for i, kw in enumerate(spec["kwargs"])
    ]
    ours, theirs = socket.socketpair()
    child = os.fork()
    if child == 0:
        ours.close()
        try:
            _supervisor(theirs, workloads, spec["server"], creates)
        finally:
            os._exit(0)
    theirs.close()
    os.dup2(ours.fileno(), 0)
    runner = TriggerRunner()
    log = _CountingLog(runner.log)
    runner.log = log
    base_rss = rss_kb()

    async def drive() -> dict[str, Any]:
        task = asyncio.create_task(runner.arun())
        try:
            return await _measure(runner, log, spec, base_rss)
        finally:
            task.cancel()

    # Not asyncio.run: its teardown would cancel and await every trigger before the result is written.
    outcome = loop.run_until_complete(drive())
    with open(out_path, "w", encoding="utf-8") as out:
        json.dump(outcome, out)
    os.kill(child, 9)
    os._exit(0)  # thousands of sessions and tasks: the process ends without tearing each down


if __name__ == "__main__":
    main()
