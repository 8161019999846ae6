"""Fault campaign: 500 seeded runs against reference servers whose fault modes are mixed at random.

Every run's outcome must be the one its script decides (the terminal state, `RunLost` for a zombie,
`WaitTimeout` for a run that outlasts the deadline, `IllegalTransition` for a regression under "raise"), or,
for runs scripted to be unreadable for good, the documented "cannot tell" (`StatusUnavailable`, or
`BadStatusPayload` for bodies that never parse). Runs whose faults are bounded have no excuse to be blind.
No wait may outlive its deadline, raise anything but a typed outcome, or leave a socket or file open.

Figures: docs/reliability.md ("Core: faults"). Reproduce with
`./dev pytest core tests/core/test_campaign_faults.py -q -s` (the summary line is printed).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn

import runwatch
from runwatch import Policy, RunApi, RunwatchError, StartedRun, load_profile, wait_for_run
from runwatch.server import ReferenceServer

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(900),
    pytest.mark.filterwarnings("error::ResourceWarning"),
    pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning"),
]

SEED = 20261129
RUNS = 500
SERVERS = 5  # one origin each: a rate limit pauses every wait on its origin, as it should
CONCURRENT = 100  # waits in flight at once, in one event loop
OVERSIZE = 8 * 1024 * 1024  # above the default status body cap
REQUEST_TIMEOUT = 2.0
DEADLINE = 30.0  # every wait's own timeout
TOO_LONG = 4.0  # the deadline of runs scripted to outlast it
HANG_MARGIN = 20.0  # "ended by its deadline" means by deadline + this, on a loaded shared machine
BOUNDED_TOLERANCE = (
    12.0  # bounded faults (a dozen faulted polls at most, in a row) never blind a run this long
)
BLIND_TOLERANCE = 1.5

FINAL_OUTCOME = {
    "SUCCEEDED": "SUCCEEDED",
    "FAILED": "RunFailed",
    "CANCELLED": "RunCancelled",
    "TIMED_OUT": "RunTimedOut",
    "PARTIAL_SUCCESS": "RunPartiallySucceeded",
}
# The server's counters of deliberately bad answers (404: read-after-write lag).
KINDS = ("403", "429", "5xx", "404", "drop", "malformed", "slow", "truncated", "oversized", "etag_lies")
# "Cannot tell" when answers arrive but never hold a status (a body that does not parse) or none arrive.
CANNOT_TELL = frozenset({"StatusUnavailable", "BadStatusPayload"})


@dataclass
class Case:
    index: int
    server: int
    body: dict[str, Any]
    policy: Policy
    accept: frozenset[str]
    faults: list[str] = field(default_factory=list)
    push: bool = False
    start: bool = False  # started through the API (202 + Location), then watched: read-after-write lag

    @property
    def rate_limited_by_403(self) -> bool:
        """Whether the run's API speaks rate limits as 403 too, as GitHub does (its profile must say so)."""
        return any(label.startswith(("rate_limit:403", "blind:rate_limit:403")) for label in self.faults)


# ------------------------------------------------------------------------------------------------ the mix


def _trigger(rng: random.Random) -> dict[str, int]:
    return {"first": rng.randint(1, 3)} if rng.random() < 0.6 else {"every": rng.randint(3, 5)}


def _rate_limit(rng: random.Random) -> tuple[str, dict[str, Any]]:
    # Whole-second forms (an HTTP-date, GitHub's epoch reset) pause the origin for up to 2 s: rarer, first only.
    form = rng.choices(
        ["429-seconds", "429-ms", "429-none", "403-secondary", "429-date", "403-primary"],
        weights=[4, 4, 2, 4, 1, 1],
    )[0]
    trigger = (
        _trigger(rng) if form in ("429-seconds", "429-ms", "429-none", "403-secondary") else {"first": 1}
    )
    spec: dict[str, Any] = {
        "429-seconds": {"retry_after": rng.choice([0.1, 0.2, 0.3])},
        "429-ms": {"hint": "ms", "retry_after": rng.choice([0.1, 0.25])},
        "429-none": {"hint": "none"},
        "403-secondary": {"status": 403, "retry_after": 0.2},
        "429-date": {"hint": "date", "retry_after": 0.5},
        "403-primary": {"status": 403, "hint": "reset", "retry_after": 0.5},
    }[form]
    return f"rate_limit:{form}", {**trigger, **spec}


def _bounded_faults(rng: random.Random) -> tuple[list[str], dict[str, Any]]:
    """Up to four faults that each hit a few requests only."""
    kinds = rng.sample(
        ["rate_limit", "errors_5xx", "drop", "malformed", "truncated", "slow", "etag_lies", "oversized"],
        k=rng.choice([0, 1, 2, 2, 3, 4]),
    )
    labels, faults = [], {}
    for kind in kinds:
        if kind == "rate_limit":
            label, faults["rate_limit"] = _rate_limit(rng)
            labels.append(label)
            continue
        if kind == "errors_5xx":
            faults[kind] = {**_trigger(rng), "status": rng.choice([500, 502, 503, 504])}
        elif kind == "malformed":
            faults[kind] = {**_trigger(rng), "shape": rng.choice(["text", "wrong"])}
        elif kind == "slow":  # latency past the request timeout
            faults[kind] = {"first": 1, "seconds": REQUEST_TIMEOUT + 0.5}
        elif kind == "oversized":
            faults[kind] = {"first": 1, "size": OVERSIZE, "chunked": rng.random() < 0.5}
        elif kind == "etag_lies":
            faults[kind] = (
                {"first": rng.randint(1, 3)} if rng.random() < 0.5 else {"every": rng.randint(2, 3)}
            )
        else:
            faults[kind] = _trigger(rng)
        labels.append(kind)
    if rng.random() < 0.25:
        mode = rng.choice(["no_etag", "no_304", "omit"])
        faults.update({"omit": ["updated_at", "version"]} if mode == "omit" else {mode: True})
        labels.append(mode)
    return labels, faults


def _lifecycle(rng: random.Random, final: str) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = [
        {"status": rng.choice(["QUEUED", "PENDING"]), "for": rng.uniform(0.05, 0.3)}
    ]
    for i in range(rng.randint(1, 3)):
        progress = {"percent": 30.0 * (i + 1), "message": f"step {i}"}
        steps.append({"status": "RUNNING", "for": rng.uniform(0.1, 0.6), "progress": progress})
    last: dict[str, Any] = {"status": final}
    if final == "SUCCEEDED":
        last["output_ref"] = "s3://campaign/out"
    elif final != "PARTIAL_SUCCESS":
        last["errors"] = [{"code": "E1", "message": f"{final.lower()} on purpose"}]
    steps.append(last)
    return steps


def _policy(**changes: Any) -> Policy:
    base = {
        "interval": 0.05,
        "max_interval": 0.25,
        "timeout": DEADLINE,
        "unavailable_after": BOUNDED_TOLERANCE,
        "request_timeout": REQUEST_TIMEOUT,
    }
    return Policy(**(base | changes))


def make_case(rng: random.Random, index: int) -> Case:
    server = index % SERVERS
    kind = rng.choices(
        ["mixed", "started", "zombie", "too_long", "regression", "illegal", "blind", "push"],
        weights=[54, 6, 6, 4, 5, 5, 12, 8],
    )[0]
    final = rng.choice(list(FINAL_OUTCOME))
    labels, faults = _bounded_faults(rng)
    if kind == "mixed":
        body: dict[str, Any] = {"script": _lifecycle(rng, final), "faults": faults}
        options: dict[str, Any] = {}
        # Racing heartbeats move on every read: they must neither end the wait nor keep it from ending.
        if rng.random() < 0.4:
            body["heartbeat_every"] = rng.choice([0.01, 0.03, 0.1])
            options["heartbeat_timeout"] = 5.0
            labels.append("racing_heartbeats")
        if rng.random() < 0.3:
            options["long_poll"] = 2.0
            labels.append("long_poll")
        policy = _policy(**options)
        return Case(index, server, body, policy, frozenset({FINAL_OUTCOME[final]}), labels)
    if kind == "push":
        webhook = {"duplicate": rng.random() < 0.6, "out_of_order": rng.random() < 0.6}
        labels += [f"webhook_{k}" for k, on in webhook.items() if on]
        body = {"script": _lifecycle(rng, final), "faults": faults, "webhook": webhook}
        # Hybrid: pushes end the wait, slower polls are the net; up to a dozen faulted polls in a row at this
        # pace is a longer blind spot than at the others', hence a longer tolerance.
        policy = _policy(interval=0.3, max_interval=1.0, unavailable_after=2 * BOUNDED_TOLERANCE)
        return Case(index, server, body, policy, frozenset({FINAL_OUTCOME[final]}), labels, push=True)
    if kind == "started":  # our own start, then a run that answers 404 for a moment (dbt Cloud does)
        body = {"script": _lifecycle(rng, final), "faults": faults, "not_found_for": rng.uniform(0.1, 0.6)}
        accept = frozenset({FINAL_OUTCOME[final]})
        return Case(index, server, body, _policy(), accept, [*labels, "not_found_for"], start=True)
    if kind == "zombie":
        body = {
            "script": [
                {"status": "QUEUED", "for": 0.1},
                {"status": "RUNNING", "for": 0.3},
                {"status": "SUCCEEDED"},
            ],
            "heartbeat_every": 0.05,
            "stop_heartbeat_after": 0.5,
            "faults": faults,
        }
        policy = _policy(heartbeat_timeout=1.5)
        return Case(index, server, body, policy, frozenset({"RunLost"}), [*labels, "stopped_heartbeat"])
    if kind == "too_long":
        body = {"script": [{"status": "RUNNING", "for": 600}, {"status": final}], "faults": faults}
        return Case(index, server, body, _policy(timeout=TOO_LONG), frozenset({"WaitTimeout"}), labels)
    if kind == "regression":  # an illegal move back from RUNNING to QUEUED, ignored by policy
        script = [
            {"status": "RUNNING", "for": 0.4},
            {"status": "QUEUED", "for": 0.6},
            {"status": "RUNNING", "for": 0.2},
            {"status": final},
        ]
        body = {"script": script, "faults": faults}
        accept = frozenset({FINAL_OUTCOME[final]})
        return Case(index, server, body, _policy(), accept, [*labels, "illegal_regression"])
    if kind == "illegal":  # the same under on_illegal="raise": the regression if seen, else the script's end
        script = [{"status": "RUNNING", "for": 0.5}, {"status": "QUEUED", "for": 0.8}, {"status": final}]
        body = {"script": script}
        accept = frozenset({"IllegalTransition", FINAL_OUTCOME[final]})
        return Case(index, server, body, _policy(on_illegal="raise"), accept, ["illegal_regression_raise"])
    # Blind: one good read, then every answer is unusable for good.
    blind, label = rng.choice(
        [
            ({"rate_limit": {"after": 1, "retry_after": 0.2}}, "rate_limit:429-seconds"),
            ({"rate_limit": {"after": 1, "hint": "ms", "retry_after": 0.2}}, "rate_limit:429-ms"),
            ({"rate_limit": {"after": 1, "status": 403, "retry_after": 0.2}}, "rate_limit:403-secondary"),
            ({"errors_5xx": {"after": 1, "status": 503}}, "errors_5xx"),
            ({"drop": {"after": 1}}, "drop"),
            ({"malformed": {"after": 1}}, "malformed"),
            ({"truncated": {"after": 1}}, "truncated"),
            ({"slow": {"after": 1, "seconds": 1.0}}, "slow"),
            ({"oversized": {"after": 1, "size": OVERSIZE}}, "oversized"),
        ]
    )
    body = {"script": [{"status": "RUNNING", "for": 600}, {"status": final}], "faults": blind}
    policy = _policy(unavailable_after=BLIND_TOLERANCE, request_timeout=0.5)
    return Case(index, server, body, policy, CANNOT_TELL, [f"blind:{label}"])


# ------------------------------------------------------------------------------------------------ running


def outcome_name(result: runwatch.RunStatus | BaseException) -> str:
    if isinstance(result, runwatch.RunStatus):
        return result.status.value
    if isinstance(result, RunwatchError):  # a typed outcome or error: right or wrong, it is handled
        return type(result).__name__
    return f"unhandled {type(result).__name__}: {result}"


async def _serve(app: Any) -> tuple[uvicorn.Server, asyncio.Task[None], str]:
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off", interface="asgi3")
    )
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started:
            break
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    return server, task, f"http://127.0.0.1:{port}/hook"


@dataclass
class Result:
    case: Case
    outcome: str
    elapsed: float
    deadline: float


async def campaign(servers: list[ReferenceServer], cases: list[Case]) -> list[Result]:
    secret = runwatch.webhooks.generate_secret()
    inbox = runwatch.WebhookInbox(secret)
    hook_server, hook_task, hook_url = await _serve(inbox.asgi)
    apis = [RunApi(server.url) for server in servers]
    github_like = load_profile(
        {**load_profile("standard").to_dict(), "name": "standard-403", "rate_limit": {"statuses": [429, 403]}}
    )
    apis_403 = [RunApi(server.url, github_like) for server in servers]
    gate = asyncio.Semaphore(CONCURRENT)

    async def one(case: Case) -> Result:
        async with gate:
            server = servers[case.server]
            api = (apis_403 if case.rate_limited_by_403 else apis)[case.server]
            target: str | StartedRun
            if case.start:
                target = await api.start_run(case.body, idempotency_key=f"campaign-{case.index}")
            else:
                target = (await asyncio.to_thread(server.create_run, **case.body))["id"]
            if case.push:
                await asyncio.to_thread(server.subscribe, hook_url, secret, [target])
            deadline = case.policy.timeout or DEADLINE
            started = time.monotonic()
            try:
                result: runwatch.RunStatus | BaseException = await asyncio.wait_for(
                    wait_for_run(api, target, policy=case.policy, inbox=inbox if case.push else None),
                    deadline + 3 * HANG_MARGIN,  # the test's own guard: never reached by a correct waiter
                )
            except Exception as exc:
                result = exc
            return Result(case, outcome_name(result), time.monotonic() - started, deadline)

    try:
        return await asyncio.gather(*(one(case) for case in cases))
    finally:
        hook_server.should_exit = True
        await hook_task


def open_fds() -> dict[str, str]:
    fds = {}
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the directory's own descriptor is gone once listed
            fds[fd] = os.readlink(f"/proc/self/fd/{fd}")
    return fds


def run_campaign(cases: list[Case]) -> tuple[list[Result], list[dict[str, Any]]]:
    servers = [ReferenceServer(retry_after=0).start() for _ in range(SERVERS)]
    try:
        results = asyncio.run(campaign(servers, cases))
        return results, [server.stats() for server in servers]
    finally:
        for server in servers:
            server.stop()


def test_fault_campaign() -> None:
    rng = random.Random(SEED)
    cases = [make_case(rng, i) for i in range(RUNS)]
    # A warm-up round first: libraries open a few descriptors once per process (uvloop's signal pipe).
    run_campaign([make_case(random.Random(0), i) for i in range(SERVERS)])
    gc.collect()
    fds_before = open_fds()
    results, stats = run_campaign(cases)
    gc.collect()
    fds_after = open_fds()

    wrong = [r for r in results if r.outcome not in r.case.accept and not r.outcome.startswith("unhandled")]
    unhandled = [r for r in results if r.outcome.startswith("unhandled")]
    hung = [r for r in results if r.elapsed > r.deadline + HANG_MARGIN]
    injected: Counter[str] = Counter()
    for server_stats in stats:
        for counts in server_stats["runs"].values():
            for key in KINDS:
                injected[key] += counts[key]
    outcomes = Counter(r.outcome for r in results)
    cannot_tell = sum(1 for r in results if r.outcome in CANNOT_TELL)
    print(
        f"\nfault campaign: {len(results)} runs, {sum(injected.values())} faulted answers {dict(injected)}, "
        f"outcomes {dict(outcomes)}, cannot tell {cannot_tell}, wrong {len(wrong)}, unhandled {len(unhandled)}, "
        f"hung {len(hung)}, fds {len(fds_before)} -> {len(fds_after)}"
    )
    assert len(results) == RUNS
    assert all(injected[key] > 0 for key in KINDS), injected

    def show(items: list[Result]) -> str:
        by_kind = Counter(f"{sorted(r.case.accept)} got {r.outcome}" for r in items)
        first = [f"#{r.case.index} {r.case.faults} {r.outcome}" for r in items[:8]]
        return f"{dict(by_kind)}; first: {first}"

    leaked = {fd: target for fd, target in fds_after.items() if fds_before.get(fd) != target}
    assert leaked == {}, f"{len(leaked)} file descriptors leaked: {leaked}"
    assert unhandled == [], show(unhandled)
    assert hung == [], show(hung)
    assert wrong == [], show(wrong)
