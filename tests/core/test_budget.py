"""One request budget per API origin across processes (RedisBudget), on a real Redis and real OS processes.

The Redis server is started here from the system package (tests/redis_server.py); the processes run
_budget_child.py against the reference server and are measured at the server.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis import Redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the Redis server the suites share
from redis_server import RedisServer

from runwatch import (
    ConfigurationError,
    Policy,
    RedisBudget,
    RunApi,
    TransientError,
    WaitTimeout,
    wait_for_run,
    wait_for_run_sync,
)
from runwatch._clock import SYSTEM_CLOCK
from runwatch.server import ReferenceServer

CHILD = Path(__file__).with_name("_budget_child.py")
RUNNING_LONG = [{"status": "RUNNING", "for": 600}, {"status": "SUCCEEDED"}]


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The shared Redis, emptied for each test."""
    with Redis.from_url(redis_server.url) as client:
        client.flushdb()
    return redis_server.url


class Child:
    """A running _budget_child.py: one round at a time (`go`, then `outcomes`)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(CHILD)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.ready = False

    def go(self, config: dict[str, Any], urls: list[str]) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if not self.ready:
            assert self.proc.stdout.readline().strip() == "ready"
            self.ready = True
        self.proc.stdin.write(json.dumps({"config": config, "urls": urls}) + "\n")
        self.proc.stdin.flush()

    def outcomes(self) -> list[str]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # bounded by the child's own 120 s wait timeout
        result: list[str] = json.loads(line)
        return result

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(30)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()


class Children:
    """Three child processes kept for the module (starting Python is most of these tests' time)."""

    def __init__(self) -> None:
        self.children = [Child() for _ in range(3)]

    def three(self) -> list[Child]:
        """Three live children, new ones in place of any a test killed."""
        for i, child in enumerate(self.children):
            if child.proc.poll() is not None:
                child.kill()
                self.children[i] = Child()
        return list(self.children)

    def kill_all(self) -> None:
        for child in self.children:
            child.kill()


@pytest.fixture(scope="module")
def children() -> Iterator[Children]:
    made = Children()
    try:
        yield made
    finally:
        made.kill_all()


def gets(server: ReferenceServer, run_ids: list[str]) -> int:
    runs = server.stats()["runs"]
    return sum(runs[run_id]["GET"] for run_id in run_ids)


def until(what: str, check: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f}s"
        time.sleep(0.02)


# ------------------------------------------------------------------------------------------------ the store


async def test_tokens_come_in_a_burst_then_at_the_rate_and_the_key_expires(redis_url: str) -> None:
    budget = RedisBudget(redis_url, rate=2, burst=3, key_prefix="t")
    await budget.take("http://warm.test", None, SYSTEM_CLOCK)  # connect and load the script first
    begun = time.monotonic()
    for _ in range(3):
        assert await budget.take("http://a.test", None, SYSTEM_CLOCK) == 0.0
    burst = time.monotonic() - begun
    assert await budget.take("http://a.test", None, SYSTEM_CLOCK) == 0.0
    fourth = time.monotonic() - begun
    await budget.aclose()
    # Three at once (one at the rate would take 1 s), the fourth one interval (0.5 s) after the first.
    assert burst < 0.9
    assert fourth >= 0.45
    with Redis.from_url(redis_url) as client:
        assert sorted(client.keys("t:*")) == [b"t:http://a.test", b"t:http://warm.test"]
        ttl = client.pttl("t:http://a.test")
        assert 0 < ttl <= 3000  # the state expires soon after its last slot


async def test_a_shared_pause_is_answered_before_any_token(redis_url: str) -> None:
    budget = RedisBudget(redis_url, rate=1000, burst=10)
    await budget.pause("http://a.test", 30.0)
    paused = await budget.take("http://a.test", None, SYSTEM_CLOCK)
    assert 29.0 < paused <= 30.0
    assert await budget.take("http://b.test", None, SYSTEM_CLOCK) == 0.0  # another origin is not paused
    with pytest.raises(TransientError, match="no request budget left before the deadline"):
        await RedisBudget(redis_url, rate=0.01).take("http://c.test", time.time() - 1, SYSTEM_CLOCK)
    await budget.aclose()


async def test_the_deadline_bounds_the_wait_for_a_token(
    redis_url: str, runwatch_server: ReferenceServer
) -> None:
    """One request per 20 s: the first read goes at once, the next token is beyond the wait's 1 s deadline."""
    api = RunApi(runwatch_server.url, budget=RedisBudget(redis_url, rate=0.05))
    run = runwatch_server.create_run(script=RUNNING_LONG)
    policy = Policy(interval=0.05, max_interval=0.05, jitter=False, timeout=1.0)
    begun = time.monotonic()
    with pytest.raises(WaitTimeout) as caught:
        await asyncio.wait_for(wait_for_run(api, run["url"], policy=policy), 30)
    assert time.monotonic() - begun < 15  # not held until the next token, 20 s away
    assert caught.value.status is not None and caught.value.status.status.value == "RUNNING"
    assert runwatch_server.stats()["runs"][run["id"]]["GET"] == 1
    assert api.budget is not None
    await api.budget.aclose()


def test_sync_waits_leave_no_connection_to_the_store_open(
    redis_url: str, runwatch_server: ReferenceServer
) -> None:
    """Each sync wait runs in a loop of its own: its connection to the store closes with its pool."""
    api = RunApi(runwatch_server.url, budget=RedisBudget(redis_url, rate=100))
    policy = Policy(interval=0.05, max_interval=0.05, jitter=False, timeout=60)
    for end in ("SUCCEEDED", "SUCCEEDED"):
        run = runwatch_server.create_run(script=[{"status": "RUNNING", "for": 0.1}, {"status": end}])
        assert wait_for_run_sync(api, run["url"], policy=policy).status.value == end
    with Redis.from_url(redis_url) as client:
        assert len(client.client_list()) == 1  # this one
        assert client.keys("runwatch:budget:*") == [f"runwatch:budget:{runwatch_server.url}".encode()]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"rate": 0}, "budget rate must be a number of requests per second > 0 (got 0)"),
        ({"rate": float("inf")}, "budget rate must be a number of requests per second > 0 (got inf)"),
        ({"rate": 5, "burst": 0}, "budget burst must be a whole number of requests >= 1 (got 0)"),
        ({"rate": 5, "burst": 2.5}, "budget burst must be a whole number of requests >= 1 (got 2.5)"),
        ({"rate": 5, "store_timeout": 0}, "budget store_timeout must be a number of seconds > 0 (got 0)"),
    ],
)
def test_bad_settings_are_one_clear_error(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        RedisBudget("redis://127.0.0.1:6379/0", **options)
    assert str(caught.value) == message


def test_the_store_password_is_never_shown() -> None:
    budget = RedisBudget("redis://user:s3cret@127.0.0.1:6380/2", rate=5)
    assert "s3cret" not in repr(budget)
    assert budget.store == "redis://127.0.0.1:6380/2"
    api = RunApi("http://127.0.0.1:9", budget=budget)
    assert "s3cret" not in json.dumps(api.to_dict())


def test_shared_gives_one_budget_per_settings_in_a_process() -> None:
    """What the integrations build a RunApi with, once per wait: one budget (its queue, its clients) each."""
    one = RedisBudget.shared("redis://:pw@127.0.0.1:6390/0", rate=5, burst=2)
    assert RedisBudget.shared("redis://:pw@127.0.0.1:6390/0", rate=5, burst=2) is one
    assert (one.rate, one.burst) == (5.0, 2)
    others = [
        RedisBudget.shared("redis://:pw@127.0.0.1:6390/0", rate=6, burst=2),
        RedisBudget.shared("redis://:pw@127.0.0.1:6390/0", rate=5, burst=3),
        RedisBudget.shared("redis://:pw@127.0.0.1:6390/1", rate=5, burst=2),
    ]
    assert len({id(b) for b in [one, *others]}) == 4
    with pytest.raises(ConfigurationError, match="budget rate must be"):
        RedisBudget.shared("redis://127.0.0.1:6390/0", rate=0)


# ------------------------------------------------------------------------------------------------ processes


def test_a_429_seen_by_one_process_pauses_the_others(
    redis_url: str, runwatch_server_factory: Any, children: Children
) -> None:
    """A's first read is answered 429, Retry-After 3 s. B and C start during that pause: their runs end
    1.5 s after they start, so a B that polled at once would read it RUNNING ~15 times; held by the shared
    pause, each reads its run once, already ended."""
    server = runwatch_server_factory()
    config = {"redis": redis_url, "base_url": server.url, "rate": 50, "burst": 5, "interval": 0.1}
    a, b, c = children.three()
    warm = server.create_run(script=[{"status": "SUCCEEDED"}])
    for child in (a, b, c):  # a first round in each process: its first read is slow to come
        child.go(config, [warm["url"]])
    assert [child.outcomes() for child in (a, b, c)] == [["SUCCEEDED"]] * 3
    limited = server.create_run(
        script=[{"status": "RUNNING", "for": 0.5}, {"status": "SUCCEEDED"}],
        faults={"rate_limit": {"first": 1, "retry_after": 3}},
    )
    a.go(config, [limited["url"]])
    until("A's first read is answered 429", lambda: server.stats()["runs"][limited["id"]]["429"] == 1)
    ends = ("SUCCEEDED", "FAILED")
    others = [server.create_run(script=[{"status": "RUNNING", "for": 1.5}, {"status": end}]) for end in ends]
    b.go(config, [others[0]["url"]])
    c.go(config, [others[1]["url"]])
    assert a.outcomes() == ["SUCCEEDED"]
    assert b.outcomes() == ["SUCCEEDED"]
    assert c.outcomes() == ["RunFailed"]
    runs = server.stats()["runs"]
    assert runs[limited["id"]]["GET"] == 2  # the 429, then the end after the pause
    assert [runs[run["id"]]["GET"] for run in others] == [1, 1]


def test_three_processes_stay_within_one_budget_and_the_dead_ones_share_goes_to_the_living(
    redis_url: str, runwatch_server_factory: Any, children: Children
) -> None:
    """3 processes x 3 waits polling every 50 ms would send ~180 requests/s; the budget is 10/s, burst 2.

    The server allows 40 requests per 1 s window (and says so in RateLimit fields), so without the budget
    they would send ~40/s. Two of the three are then killed: had each process owned a third of the budget,
    the survivor would get ~3.3/s; sharing one bucket, it gets the whole 10/s.
    """
    rate, burst, window = 10, 2, 1.5
    server = runwatch_server_factory(cancel_delay=0.0)
    server.set_faults(ratelimit_headers={"quota": 40, "window": 1})
    config = {"redis": redis_url, "base_url": server.url, "rate": rate, "burst": burst, "interval": 0.05}
    procs = children.three()
    runs = [[server.create_run(script=RUNNING_LONG) for _ in range(3)] for _ in procs]
    for proc, own in zip(procs, runs, strict=True):
        proc.go(config, [run["url"] for run in own])
    ids = [[run["id"] for run in own] for own in runs]
    every = [run_id for own in ids for run_id in own]
    stats = server.stats
    until("every wait is polling", lambda: all(stats()["runs"][run_id]["GET"] >= 1 for run_id in every))

    def rate_of(run_ids: list[str]) -> float:
        start, before = time.monotonic(), gets(server, run_ids)
        time.sleep(window)
        return (gets(server, run_ids) - before) / (time.monotonic() - start)

    together = rate_of(every)
    for proc in procs[1:]:
        proc.kill()
    survivor = rate_of(ids[0])
    for run_id in ids[0]:
        server.cancel_run(run_id)
    assert procs[0].outcomes() == ["RunCancelled"] * 3
    # GCRA: at most `burst + rate * window` requests in any window; 20% more for the measuring's slop.
    assert together <= (burst + rate * window) * 1.2 / window, f"{together:.1f} requests/s together"
    assert survivor >= 0.6 * rate, f"the survivor sent {survivor:.1f} requests/s"
    assert sum(run["429"] for run in stats()["runs"].values()) == 0


# ------------------------------------------------------------------------------------------------ no store


async def test_a_store_that_stops_never_fails_a_wait(
    runwatch_server: ReferenceServer, caplog: pytest.LogCaptureFixture
) -> None:
    store = RedisServer().start()
    try:
        budget = RedisBudget(store.url, rate=100, burst=5, retry_store_after=60)
        api = RunApi(runwatch_server.url, budget=budget)
        run = runwatch_server.create_run(script=[{"status": "RUNNING", "for": 1.0}, {"status": "SUCCEEDED"}])
        policy = Policy(interval=0.05, max_interval=0.05, jitter=False, timeout=60)
        wait = asyncio.ensure_future(wait_for_run(api, run["url"], policy=policy))
        for _ in range(500):  # until a few reads went through the store
            if runwatch_server.stats()["runs"][run["id"]]["GET"] >= 3:
                break
            await asyncio.sleep(0.01)
        await asyncio.to_thread(store.stop)
        with caplog.at_level(logging.WARNING, logger="runwatch"):
            status = await asyncio.wait_for(wait, 60)
        assert status.status.value == "SUCCEEDED"
        warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(warnings) == 1
        assert warnings[0].startswith(f"request budget store {store.url} did not answer (")
        assert warnings[0].endswith("this process paces itself at 100 requests/s until it does")
        await budget.aclose()
    finally:
        store.stop()


async def test_a_store_that_never_answers_does_not_hold_up_a_wait(
    runwatch_server: ReferenceServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A socket that accepts and never answers: each ask gives up after store_timeout, then local pacing."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        silent.settimeout(0.05)
        while not stop.is_set():
            try:
                accepted.append(silent.accept()[0])
            except OSError:
                continue

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        port = silent.getsockname()[1]
        budget = RedisBudget(f"redis://127.0.0.1:{port}/0", rate=100, store_timeout=0.2)
        api = RunApi(runwatch_server.url, budget=budget)
        run = runwatch_server.create_run(script=[{"status": "RUNNING", "for": 0.3}, {"status": "FAILED"}])
        policy = Policy(interval=0.05, max_interval=0.05, jitter=False, timeout=60)
        with caplog.at_level(logging.WARNING, logger="runwatch"), pytest.raises(Exception) as caught:
            await asyncio.wait_for(wait_for_run(api, run["url"], policy=policy), 30)
        assert type(caught.value).__name__ == "RunFailed"
        warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert warnings == [
            f"request budget store redis://127.0.0.1:{port}/0 did not answer (no answer within 0.2s): this process "
            "paces itself at 100 requests/s until it does"
        ]
        assert accepted  # the store was asked, and did not answer
    finally:
        stop.set()
        acceptor.join(5)
        for conn in accepted:
            conn.close()
        silent.close()
