"""The wait loop (`watch_run`) on a fake clock: what each hook hears, a start's Retry-After, a pause that
another wait put on the origin (and the reason the wait keeps while it cannot read), pushes an inbox kept."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from runwatch import (
    Hooks,
    MockTransport,
    Policy,
    Request,
    Response,
    RunApi,
    RunStatus,
    StartedRun,
    State,
    StatusUnavailable,
    WaitTimeout,
    WebhookInbox,
    wait_for_run,
    watch_run,
    webhooks,
)
from runwatch.testing import FakeClock

# Each test takes milliseconds on the fake clock: a far bound that stops a wait which would spin for ever.
pytestmark = pytest.mark.timeout(30)

BASE = "https://jobs.test"
URL = f"{BASE}/runs/r"
BOUNDED = Policy(timeout=1000)  # on the fake clock: a wait that should have ended fails at once


def api_for(*replies: Response) -> tuple[RunApi, FakeClock, list[float]]:
    """An API answering `replies` in turn (the last one for ever); the clock; when each request went out."""
    clock = FakeClock()
    sent_at: list[float] = []

    def answer(request: Request) -> Response:
        sent_at.append(clock.monotonic())
        return replies[min(len(sent_at), len(replies)) - 1]

    return RunApi(BASE, transport=MockTransport(answer), clock=clock), clock, sent_at


def run(state: str, **extra: Any) -> Response:
    return Response.of_json({"id": "r", "status": state, **extra})


async def test_each_hook_hears_what_happens_as_it_happens() -> None:
    requests: list[tuple[str, str]] = []
    slept: list[float] = []
    changes: list[tuple[State, float | None]] = []
    anomalies: list[str] = []
    problems: list[str] = []

    async def on_change(status: RunStatus) -> None:  # a coroutine: awaited
        changes.append((status.status, status.progress.percent if status.progress else None))

    hooks = Hooks(
        on_change=on_change,
        on_anomaly=lambda anomaly: anomalies.append(str(anomaly)),
        on_request=lambda method, url: requests.append((method, url)),
        before_sleep=slept.append,
        on_unreadable=lambda problem: problems.append(str(problem)),
    )
    api, clock, sent_at = api_for(
        Response.of_json({"message": "down"}, 503),
        run("RUNNING", progress={"percent": 10}),
        run("RUNNING", progress={"percent": 10}),
        run("QUEUED"),  # a step back: refused, told, passed over
        run("SUCCEEDED"),
    )
    policy = Policy(interval=1, max_interval=8, jitter=False, timeout=100)
    seen = [s.status async for s in watch_run(api, "r", policy=policy, hooks=hooks)]
    assert seen == [State.RUNNING, State.SUCCEEDED]
    assert changes == [(State.RUNNING, 10), (State.SUCCEEDED, None)]
    assert requests == [("GET", URL)] * 5
    assert problems == [f"GET {URL}: HTTP 503"]  # told once, for the read that failed
    assert anomalies == ["run r: RUNNING -> QUEUED (QUEUED) is not a legal move"]
    # A failed read is a quiet one (2); news resets the pace (1); then 2 and 4 while nothing changes.
    assert slept == [2, 1, 2, 4] == clock.slept
    assert sent_at == [0, 2, 3, 5, 9]


async def test_a_start_that_asked_for_time_is_read_only_after_it() -> None:
    started = StartedRun(RunStatus(id="r", status=State.QUEUED), URL, retry_after=7)
    slept: list[float] = []
    api, _, sent_at = api_for(run("SUCCEEDED"))
    final = await wait_for_run(api, started, policy=BOUNDED, hooks=Hooks(before_sleep=slept.append))
    assert final.status is State.SUCCEEDED
    assert slept == [7] and sent_at == [7]
    api, _, sent_at = api_for(run("SUCCEEDED"))
    await wait_for_run(api, StartedRun(RunStatus(id="r", status=State.QUEUED), URL), policy=BOUNDED)
    assert sent_at == [0]  # no hint: read at once


async def test_a_start_hint_longer_than_the_wait_ends_it_at_its_deadline() -> None:
    started = StartedRun(RunStatus(id="r", status=State.QUEUED), URL, retry_after=100)
    api, clock, sent_at = api_for(run("SUCCEEDED"))
    with pytest.raises(WaitTimeout) as info:
        await wait_for_run(api, started, policy=Policy(timeout=30))
    assert clock.slept == [30] and sent_at == []
    assert str(info.value) == f"gave up waiting after 30s; {URL} was never read"


async def test_a_pause_another_wait_put_on_the_origin_is_waited_out_and_kept_as_the_reason() -> None:
    api, clock, sent_at = api_for(run("SUCCEEDED"))
    slept: list[float] = []
    async with api.lease(URL) as origin:
        origin.pause(3600)  # as a 429 to another wait on this origin would
        with pytest.raises(StatusUnavailable) as info:
            await wait_for_run(
                api,
                "r",
                policy=Policy(unavailable_after=30, first_read_after=30),
                hooks=Hooks(before_sleep=slept.append),
            )
    assert str(info.value) == (
        f"status unreadable for 30s (the server asked for a pause of 3600s); {URL} was never read"
    )
    assert slept == [30] == clock.slept and sent_at == []


async def test_a_pause_under_a_second_is_waited_out_before_the_read() -> None:
    api, clock, sent_at = api_for(run("SUCCEEDED"))
    told: list[float] = []
    async with api.lease(URL) as origin:
        origin.pause(0.5)
        final = await wait_for_run(api, "r", policy=BOUNDED, hooks=Hooks(before_sleep=told.append))
    assert final.status is State.SUCCEEDED
    assert told == [0.5]  # the wait's own pause, not one inside the request
    assert sent_at == [0.5] and clock.slept == [0.5]


def push(inbox: WebhookInbox, secret: str, delivery_id: str, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    now = int(time.time())
    headers = {
        "webhook-id": delivery_id,
        "webhook-timestamp": str(now),
        "webhook-signature": webhooks.sign(secret, delivery_id, now, data),
    }
    assert inbox.deliver(headers, data) == 204


@pytest.mark.timeout(10)  # pushes are waited for in real time: a broken loop would spin
async def test_pushes_the_inbox_kept_are_taken_in_order_and_the_wait_ends_on_the_last() -> None:
    secret = webhooks.generate_secret()
    inbox = WebhookInbox(secret)
    push(inbox, secret, "m1", {"id": "r", "status": "RUNNING", "progress": {"percent": 50}})
    push(inbox, secret, "m2", {"id": "r", "status": "QUEUED"})  # a step back: refused
    push(inbox, secret, "m3", {"id": "r", "status": "RUNNING", "progress": {"percent": 60}})
    push(inbox, secret, "m1", {"id": "r", "status": "RUNNING", "progress": {"percent": 50}})  # sent again
    push(inbox, secret, "m4", {"id": "r", "status": "SUCCEEDED"})
    push(inbox, secret, "m5", {"id": "r", "status": "FAILED"})  # after the end: never seen
    changes: list[State] = []
    anomalies: list[str] = []
    hooks = Hooks(on_change=lambda s: changes.append(s.status), on_anomaly=lambda a: anomalies.append(str(a)))
    api, clock, sent_at = api_for(run("RUNNING"))
    seen = [
        (s.status, s.progress.percent if s.progress else None)
        async for s in watch_run(api, "r", policy=Policy(interval=1, timeout=100), inbox=inbox, hooks=hooks)
    ]
    # The repeated delivery is known by its id: not news, though its progress differs from the last.
    assert seen == [(State.RUNNING, None), (State.RUNNING, 50), (State.RUNNING, 60), (State.SUCCEEDED, None)]
    assert changes == [State.RUNNING, State.RUNNING, State.RUNNING, State.SUCCEEDED]
    assert anomalies == ["run r: RUNNING -> QUEUED (QUEUED) is not a legal move"]
    assert sent_at == [0] and clock.slept == []  # one poll; the rest came by push


@pytest.mark.timeout(10)  # pushes are waited for in real time: a broken loop would spin
async def test_a_wait_with_an_inbox_that_ends_at_its_first_read() -> None:
    inbox = WebhookInbox(webhooks.generate_secret())
    api, _, sent_at = api_for(run("FAILED"))
    seen = [s.status async for s in watch_run(api, "r", policy=BOUNDED, inbox=inbox)]
    assert seen == [State.FAILED] and sent_at == [0]


async def test_a_server_hint_on_a_failed_read_paces_the_next_read() -> None:
    slept: list[float] = []
    api, _, sent_at = api_for(
        Response.of_json({"message": "busy"}, 500, {"Retry-After": "7"}), run("SUCCEEDED")
    )
    policy = Policy(interval=1, jitter=False, timeout=100)
    assert (await wait_for_run(api, "r", policy=policy, hooks=Hooks(before_sleep=slept.append))).is_terminal
    assert slept == [7] and sent_at == [0, 7]  # the hint, not the policy's 2 s after a quiet read


async def test_a_long_poll_after_news_or_a_real_hold_goes_out_at_once() -> None:
    clock = FakeClock()
    holds: list[str] = []

    async def answer(request: Request) -> Response:
        if "wait=" in request.url:
            holds.append(request.url.rpartition("wait=")[2])
            await clock.sleep(25)  # the server holds the whole time: nothing changed
        return run("SUCCEEDED" if clock.monotonic() >= 60 else "RUNNING")

    api = RunApi(BASE, transport=MockTransport(answer), clock=clock)
    slept: list[float] = []
    policy = Policy(interval=5, long_poll=25, timeout=1000)
    final = await wait_for_run(api, "r", policy=policy, hooks=Hooks(before_sleep=slept.append))
    assert final.status is State.SUCCEEDED
    # The first look brought news (RUNNING), each held answer was a real hold: no pause of our own.
    assert slept == [] and holds == ["25", "25", "25"] and clock.monotonic() == 75


async def test_waits_that_share_a_read_pause_by_one_draw() -> None:
    api, _, sent_at = api_for(run("RUNNING"))
    told: tuple[list[float], list[float]] = ([], [])
    policy = Policy(interval=10, max_interval=80, timeout=60)

    async def wait(slept: list[float]) -> None:
        with pytest.raises(WaitTimeout):
            await wait_for_run(api, "r", policy=policy, hooks=Hooks(before_sleep=slept.append))

    await asyncio.gather(wait(told[0]), wait(told[1]))
    assert (
        len(sent_at) == len(told[0]) >= 2
    )  # one read for both each time (the last pause meets the deadline)
    assert told[0] == told[1]  # jittered alike: one draw per reading, not one per wait


@pytest.mark.timeout(10)
async def test_while_pushes_are_awaited_the_run_is_still_polled_when_its_pause_ends() -> None:
    """Real time (pushes are awaited on the loop's clock): the end comes by poll, not by push."""
    secret = webhooks.generate_secret()
    inbox = WebhookInbox(secret)
    push(inbox, secret, "m1", {"id": "r", "status": "RUNNING", "progress": {"percent": 50}})
    replies = iter([run("RUNNING")])
    transport = MockTransport(lambda _r: next(replies, run("SUCCEEDED")))
    api = RunApi(BASE, transport=transport)
    policy = Policy(interval=0.05, max_interval=0.05, timeout=30)
    seen = [
        (s.status, s.progress.percent if s.progress else None)
        async for s in watch_run(api, "r", policy=policy, inbox=inbox)
    ]
    assert seen == [(State.RUNNING, None), (State.RUNNING, 50), (State.SUCCEEDED, None)]
    assert len(transport.requests) == 2
    assert inbox._boxes == {}  # the wait's mailbox left with it


@pytest.mark.timeout(10)
async def test_once_pushes_come_a_quiet_run_is_polled_only_at_the_longest_interval() -> None:
    """Real time: a push ends the wait half a second in; meanwhile polling is the slow safety net."""
    secret = webhooks.generate_secret()
    inbox = WebhookInbox(secret)
    transport = MockTransport(lambda _r: run("RUNNING"))
    api = RunApi(BASE, transport=transport)
    policy = Policy(interval=0.05, max_interval=60, jitter=False, timeout=30)

    async def end_by_push() -> None:
        await asyncio.sleep(0.5)
        push(inbox, secret, "m1", {"id": "r", "status": "SUCCEEDED"})

    pusher = asyncio.ensure_future(end_by_push())
    final = await wait_for_run(api, "r", policy=policy, inbox=inbox)
    await pusher
    assert final.status is State.SUCCEEDED
    # Polls at 0 (news) and 0.05 s (quiet): the next one would be 60 s later, not 0.1 s as without pushes.
    assert len(transport.requests) == 2
