"""The waiter against the reference server over 127.0.0.1: every outcome, every fault, every hint."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

import runwatch
from runwatch import (
    AccessDenied,
    BadStatusPayload,
    BearerAuth,
    IllegalTransition,
    Policy,
    RunApi,
    RunCancelled,
    RunFailed,
    RunLost,
    RunNotFound,
    RunPartiallySucceeded,
    RunTimedOut,
    State,
    StatusUnavailable,
    WaitTimeout,
    wait_for_run,
    wait_for_run_sync,
    watch_run,
)
from runwatch.server import ReferenceServer

pytestmark = pytest.mark.runwatch_server(retry_after=0)

FAST = Policy(interval=0.02, max_interval=0.1, unavailable_after=5)


def script(*steps: tuple[str, float] | str, **last: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"status": s, "for": d} for s, d in (x for x in steps if isinstance(x, tuple))
    ]
    out.append({"status": steps[-1], **last} if isinstance(steps[-1], str) else {})
    return out


def lifecycle(final: str, running: float = 0.2, **last: Any) -> list[dict[str, Any]]:
    return script(("QUEUED", 0.05), ("RUNNING", running), final, **last)


def gets(server: ReferenceServer, run_id: str) -> int:
    return int(server.stats()["runs"][run_id]["GET"])


async def test_success_returns_the_terminal_status_and_every_change_in_order(
    runwatch_server: ReferenceServer,
) -> None:
    run = runwatch_server.create_run(script=lifecycle("SUCCEEDED", output_ref="s3://out/1"))
    api = RunApi(runwatch_server.url)
    seen = [s.status async for s in watch_run(api, run["id"], policy=FAST)]
    assert seen[-1] is State.SUCCEEDED
    assert [s for s in seen if s in (State.QUEUED, State.RUNNING, State.SUCCEEDED)] == seen
    final = await wait_for_run(api, run["id"], policy=FAST)
    assert (final.status, final.output_ref, final.phase.value) == (State.SUCCEEDED, "s3://out/1", "TERMINAL")


@pytest.mark.parametrize(
    ("final", "error", "exit_code"),
    [("FAILED", RunFailed, 1), ("CANCELLED", RunCancelled, 2), ("TIMED_OUT", RunTimedOut, 3)],
)
async def test_unsuccessful_ends_raise_their_typed_outcome_with_the_remote_message(
    runwatch_server: ReferenceServer, final: str, error: type[runwatch.WaitOutcome], exit_code: int
) -> None:
    errors = [
        {"code": "E42", "message": "disk full on node 3", "retriable": False, "category": "infrastructure"}
    ]
    run = runwatch_server.create_run(script=lifecycle(final, errors=errors))
    with pytest.raises(error) as info:
        await wait_for_run(RunApi(runwatch_server.url), run["id"], policy=FAST)
    assert "disk full on node 3" in str(info.value)
    assert info.value.status is not None and info.value.status.status is State(final)
    assert info.value.status.errors[0].category == "infrastructure"
    assert info.value.exit_code == exit_code


@pytest.mark.parametrize("rule", ["succeed", "fail", "partial"])
async def test_partial_success_follows_the_policy(runwatch_server: ReferenceServer, rule: str) -> None:
    run = runwatch_server.create_run(script=lifecycle("PARTIAL_SUCCESS"))
    policy = FAST.replace(partial_success=rule)
    api = RunApi(runwatch_server.url)
    if rule == "succeed":
        assert (await wait_for_run(api, run["id"], policy=policy)).status is State.PARTIAL_SUCCESS
    else:
        expected = RunFailed if rule == "fail" else RunPartiallySucceeded
        with pytest.raises(expected):
            await wait_for_run(api, run["id"], policy=policy)


async def test_cancel_mid_wait_ends_in_cancelled(runwatch_server: ReferenceServer) -> None:
    run = runwatch_server.create_run(script=script(("RUNNING", 30), "SUCCEEDED"))
    api = RunApi(runwatch_server.url)

    async def cancel_once_running(status: runwatch.RunStatus) -> None:
        if status.status is State.RUNNING:
            await api.cancel_run(run["id"])

    with pytest.raises(RunCancelled):
        await wait_for_run(api, run["id"], policy=FAST, hooks=runwatch.Hooks(on_change=cancel_once_running))
    assert runwatch_server.stats()["runs"][run["id"]]["cancel"] == 1


async def test_our_deadline_raises_wait_timeout_and_leaves_the_run_going(
    runwatch_server: ReferenceServer,
) -> None:
    run = runwatch_server.create_run(script=script(("RUNNING", 60), "SUCCEEDED"))
    with pytest.raises(WaitTimeout) as info:
        await wait_for_run(RunApi(runwatch_server.url), run["id"], policy=FAST.replace(timeout=0.3))
    assert info.value.status is not None and info.value.status.status is State.RUNNING
    assert runwatch_server.get_run(run["id"])["status"] == "RUNNING"
    with pytest.raises(WaitTimeout):  # an absolute deadline, as a resumed trigger passes it
        await wait_for_run(RunApi(runwatch_server.url), run["id"], policy=FAST, deadline=time.time() + 0.2)


async def test_a_running_run_whose_heartbeat_stops_is_lost(runwatch_server: ReferenceServer) -> None:
    run = runwatch_server.create_run(
        script=script(("RUNNING", 60), "SUCCEEDED"), heartbeat_every=0.05, stop_heartbeat_after=0.2
    )
    with pytest.raises(RunLost) as info:
        # The deadline is far above the limit and far below 100 times it: a limit read too loosely fails.
        policy = FAST.replace(heartbeat_timeout=0.4, timeout=10)
        await wait_for_run(RunApi(runwatch_server.url), run["id"], policy=policy)
    assert info.value.status is not None and info.value.status.status is State.RUNNING
    assert info.value.exit_code == 6


async def test_a_live_heartbeat_keeps_a_long_step_alive(runwatch_server: ReferenceServer) -> None:
    run = runwatch_server.create_run(script=lifecycle("SUCCEEDED", running=1.0), heartbeat_every=0.05)
    final = await wait_for_run(
        RunApi(runwatch_server.url), run["id"], policy=FAST.replace(heartbeat_timeout=0.3)
    )
    assert final.status is State.SUCCEEDED


async def test_status_unreadable_past_the_tolerance_is_unavailable_with_last_seen(
    runwatch_server: ReferenceServer,
) -> None:
    run = runwatch_server.create_run(script=script(("RUNNING", 60), "SUCCEEDED"))
    api = RunApi(runwatch_server.url)
    policy = FAST.replace(unavailable_after=0.3)
    changes = watch_run(api, run["id"], policy=policy)
    first = await anext(changes)
    assert first.status is State.RUNNING
    runwatch_server.set_faults(errors_5xx={"every": 1, "status": 503})
    with pytest.raises(StatusUnavailable) as info:
        await anext(changes)
    assert info.value.status == first
    assert info.value.since is not None
    assert info.value.exit_code == 7


@pytest.mark.parametrize(
    "faults",
    [
        {"rate_limit": {"first": 3, "retry_after": 0.2}},
        {"rate_limit": {"first": 2, "retry_after": 1, "retry_after_date": True}},
        {"errors_5xx": {"first": 4, "status": 502}},
        {"drop": {"first": 3}},
        {"malformed": {"first": 2}},
        {"malformed": {"first": 2, "shape": "wrong"}},
        {"latency": 0.1},
    ],
    ids=["429", "429-date", "5xx-burst", "dropped", "malformed-body", "malformed-shape", "latency"],
)
async def test_transient_faults_are_ridden_out(
    runwatch_server: ReferenceServer, faults: dict[str, Any]
) -> None:
    run = runwatch_server.create_run(script=lifecycle("SUCCEEDED"), faults=faults)
    final = await wait_for_run(RunApi(runwatch_server.url), run["id"], policy=FAST)
    assert final.status is State.SUCCEEDED


async def test_retry_after_is_honoured_not_hammered(runwatch_server: ReferenceServer) -> None:
    run = runwatch_server.create_run(
        script=lifecycle("SUCCEEDED", running=0.05), faults={"rate_limit": {"first": 3, "retry_after": 0.3}}
    )
    begun = time.monotonic()
    await wait_for_run(RunApi(runwatch_server.url), run["id"], policy=FAST)
    assert time.monotonic() - begun >= 0.9  # three 429s, each asked for 0.3 s of quiet
    stats = runwatch_server.stats()["runs"][run["id"]]
    assert stats["429"] == 3
    assert stats["GET"] <= 6  # the 0.02 s policy interval would have sent ~45 in that time


async def test_one_429_pauses_every_wait_on_the_origin(runwatch_server: ReferenceServer) -> None:
    runs = [runwatch_server.create_run(script=lifecycle("SUCCEEDED", running=0.3)) for _ in range(10)]
    runwatch_server.set_faults(rate_limit={"first": 1, "retry_after": 1})
    api = RunApi(runwatch_server.url)
    await asyncio.gather(*(wait_for_run(api, r["id"], policy=FAST) for r in runs))
    total = sum(gets(runwatch_server, r["id"]) for r in runs)
    assert total <= 40  # unpaused, 10 waits at 0.02-0.1 s would send well over 100 in that second


async def test_malformed_for_ever_is_a_bad_payload(runwatch_server: ReferenceServer) -> None:
    run = runwatch_server.create_run(script=lifecycle("SUCCEEDED"), faults={"malformed": {"every": 1}})
    with pytest.raises(BadStatusPayload, match="not JSON"):
        await wait_for_run(RunApi(runwatch_server.url), run["id"], policy=FAST.replace(unavailable_after=2))


@pytest.mark.parametrize("rule", ["ignore", "raise"])
async def test_illegal_regression_is_ignored_or_raised(runwatch_server: ReferenceServer, rule: str) -> None:
    run = runwatch_server.create_run(script=script(("RUNNING", 0.2), ("QUEUED", 0.2), "SUCCEEDED"))
    api = RunApi(runwatch_server.url)
    policy = FAST.replace(on_illegal=rule)
    if rule == "ignore":
        seen = [s.status async for s in watch_run(api, run["id"], policy=policy)]
        assert State.QUEUED not in seen and seen[-1] is State.SUCCEEDED
    else:
        with pytest.raises(IllegalTransition, match="RUNNING -> QUEUED"):
            await wait_for_run(api, run["id"], policy=policy)


async def test_read_after_write_404_is_tolerated_only_after_our_own_start(
    runwatch_server: ReferenceServer,
) -> None:
    api = RunApi(runwatch_server.url)
    started = await api.start_run(
        {"script": lifecycle("SUCCEEDED"), "not_found_for": 0.3}, idempotency_key="k1"
    )
    assert started.status_url.startswith(runwatch_server.url)
    assert (await wait_for_run(api, started, policy=FAST)).status is State.SUCCEEDED
    other = runwatch_server.create_run(script=lifecycle("SUCCEEDED"), not_found_for=5)
    begun = time.monotonic()
    with pytest.raises(RunNotFound):
        await wait_for_run(api, other["id"], policy=FAST)
    assert time.monotonic() - begun < 2  # fails fast: no grace for a run we did not start
    with pytest.raises(RunNotFound):
        await wait_for_run(api, "no-such-run", policy=FAST)


async def test_start_is_idempotent_per_key(runwatch_server: ReferenceServer) -> None:
    api = RunApi(runwatch_server.url)
    body = {"script": lifecycle("SUCCEEDED")}
    first = await api.start_run(body, idempotency_key="same")
    again = await api.start_run(body, idempotency_key="same")
    assert first.id == again.id
    assert (first.replayed, again.replayed) == (False, True)
    assert runwatch_server.stats()["runs_created"] == 1


CANARY = "canary-token-7f3a9c"


@pytest.mark.runwatch_server(token=CANARY, retry_after=0)
async def test_tokens_are_sent_and_never_shown(runwatch_server: ReferenceServer) -> None:
    server, token = runwatch_server, CANARY
    run = server.create_run(script=lifecycle("SUCCEEDED"))
    api = RunApi(server.url, auth=BearerAuth(token))
    assert (await wait_for_run(api, run["id"], policy=FAST)).status is State.SUCCEEDED
    assert token not in repr(api) and token not in str(api.to_dict())
    with pytest.raises(AccessDenied):
        await wait_for_run(RunApi(server.url, auth=BearerAuth("wrong")), run["id"], policy=FAST)


async def test_unchanged_polls_are_cheap_304s(runwatch_server: ReferenceServer) -> None:
    run = runwatch_server.create_run(script=lifecycle("SUCCEEDED", running=0.5))
    await wait_for_run(RunApi(runwatch_server.url), run["id"], policy=FAST.replace(jitter=False, backoff=1))
    stats = runwatch_server.stats()["runs"][run["id"]]
    assert stats["304"] >= stats["GET"] // 2


async def test_long_polling_sees_each_change_with_one_request(runwatch_server: ReferenceServer) -> None:
    run = runwatch_server.create_run(script=script(("QUEUED", 0.3), ("RUNNING", 0.6), "SUCCEEDED"))
    api = RunApi(runwatch_server.url)
    policy = Policy(interval=5, max_interval=10, long_poll=5)
    sent: list[str] = []
    hooks = runwatch.Hooks(on_request=lambda method, url: sent.append(url))
    seen = [s.status async for s in watch_run(api, run["id"], policy=policy, hooks=hooks)]
    assert seen == [State.QUEUED, State.RUNNING, State.SUCCEEDED]
    assert gets(runwatch_server, run["id"]) == len(sent) <= 4  # polling at 5 s would take ~10 s
    assert "wait=" not in sent[0] and all("wait=" in url for url in sent[1:])  # the first look is not held


async def test_concurrent_waits_share_one_pool(runwatch_server: ReferenceServer) -> None:
    runs = [runwatch_server.create_run(script=lifecycle("SUCCEEDED", running=1.5)) for _ in range(50)]
    api = RunApi(runwatch_server.url)
    finals = await asyncio.gather(*(wait_for_run(api, r["id"], policy=FAST) for r in runs))
    assert {f.status for f in finals} == {State.SUCCEEDED}
    stats = runwatch_server.stats()
    assert stats["connections"] <= 100  # the pool's bound, not one connection per poll
    assert stats["connections"] * 3 < stats["requests_total"]


def test_sync_twin_works_with_and_without_a_running_loop(runwatch_server: ReferenceServer) -> None:
    api = RunApi(runwatch_server.url)
    run = runwatch_server.create_run(script=lifecycle("SUCCEEDED"))
    assert wait_for_run_sync(api, run["id"], policy=FAST).status is State.SUCCEEDED

    async def inside_a_loop() -> State:
        return wait_for_run_sync(api, run["id"], policy=FAST).status

    assert asyncio.run(inside_a_loop()) is State.SUCCEEDED


async def test_full_status_url_needs_no_base_url(runwatch_server: ReferenceServer) -> None:
    run = runwatch_server.create_run(script=lifecycle("SUCCEEDED"))
    final = await wait_for_run(RunApi(), runwatch_server.run_url(run["id"]), policy=FAST)
    assert final.id == run["id"]


async def _serve_inbox(inbox: runwatch.WebhookInbox) -> tuple[Any, asyncio.Task[None], str]:
    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(inbox.asgi, host="127.0.0.1", port=0, log_level="warning", interface="asgi3")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    return server, task, f"http://127.0.0.1:{port}/hooks"


@pytest.mark.parametrize(
    "faults", [{}, {"duplicate": True, "out_of_order": True}], ids=["clean", "dup-reorder"]
)
async def test_a_signed_push_ends_the_wait_at_once(
    runwatch_server: ReferenceServer, faults: dict[str, bool]
) -> None:
    secret = runwatch.webhooks.generate_secret()
    inbox = runwatch.WebhookInbox(secret)
    server, task, hook_url = await _serve_inbox(inbox)
    try:
        run = runwatch_server.create_run(
            script=script(("QUEUED", 0.2), ("RUNNING", 0.3), "SUCCEEDED"), webhook=faults
        )
        runwatch_server.subscribe(hook_url, secret, runs=[run["id"]])
        policy = Policy(interval=20, max_interval=30, timeout=10)  # polling alone would take 20 s or more
        seen = [
            s async for s in watch_run(RunApi(runwatch_server.url), run["id"], policy=policy, inbox=inbox)
        ]
    finally:
        server.should_exit = True
        await task
    assert seen[-1].status is State.SUCCEEDED
    ranks = [s.phase.rank for s in seen]
    assert ranks == sorted(ranks)
    assert gets(runwatch_server, run["id"]) == 1  # the first look; every change after it came by push


async def test_forged_deliveries_are_refused(runwatch_server: ReferenceServer) -> None:
    inbox = runwatch.WebhookInbox(runwatch.webhooks.generate_secret())
    box = inbox.subscribe("r-1")
    body = b'{"id": "r-1", "status": "SUCCEEDED"}'
    forged = {"webhook-id": "m1", "webhook-timestamp": str(int(time.time())), "webhook-signature": "v1,AAAA"}
    assert inbox.deliver(forged, body) == 401
    assert await box.wait(0.05) == []
