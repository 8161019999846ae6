"""Known faults, fixed by kind: each test asserts the right value for one way a wait used to go wrong.

Issue 7 (liveness, long polls without ETags, pauses past deadlines, unbounded hints, 403 rate limits,
auxiliary fields, body caps, passwords in URLs) and issue 16's credentials, redirects and TLS.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import trustme
from _odd_api import OddApi, serve

from runwatch import (
    AccessDenied,
    BearerAuth,
    ConfigurationError,
    Hooks,
    Policy,
    RunApi,
    RunLost,
    State,
    StatusUnavailable,
    Verdict,
    WaitTimeout,
    wait_for_run,
    watch_run,
)
from runwatch.cli import main
from runwatch.server import ReferenceServer

pytestmark = pytest.mark.runwatch_server(retry_after=0)


@pytest.fixture
def odd() -> Iterator[tuple[OddApi, str]]:
    api = OddApi()
    with serve(api.app) as url:
        yield api, url


def gets(server: ReferenceServer, run_id: str) -> int:
    return int(server.stats()["runs"][run_id]["GET"])


def cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runwatch", *argv], capture_output=True, text=True, timeout=90, check=False
    )


# -------------------------------------------------------------------------------- 1. liveness is not change


async def test_heartbeats_alone_neither_reset_the_pacing_nor_count_as_changes(
    runwatch_server: ReferenceServer,
) -> None:
    run = runwatch_server.create_run(
        script=[{"status": "RUNNING", "for": 3.0}, {"status": "SUCCEEDED"}], heartbeat_every=0.05
    )
    policy = Policy(interval=0.2, max_interval=2, jitter=False)
    seen = [s.status async for s in watch_run(RunApi(runwatch_server.url), run["id"], policy=policy)]
    assert seen == [State.RUNNING, State.SUCCEEDED]
    # Paced as the policy says for a quiet run: 0.2, 0.4, 0.8, 1.6 s... about 6 reads in 3 s, where a
    # reset at every heartbeat would read every 0.2 s (15 or more).
    assert gets(runwatch_server, run["id"]) <= 8


async def test_progress_is_reported_without_resetting_the_pacing(runwatch_server: ReferenceServer) -> None:
    steps = [{"status": "RUNNING", "for": 0.3, "progress": {"percent": p}} for p in range(0, 100, 10)]
    run = runwatch_server.create_run(script=[*steps, {"status": "SUCCEEDED"}])
    policy = Policy(interval=0.1, max_interval=0.8, jitter=False)
    seen = [s async for s in watch_run(RunApi(runwatch_server.url), run["id"], policy=policy)]
    assert seen[-1].status is State.SUCCEEDED
    percents = [s.progress.percent for s in seen if s.progress is not None]
    assert percents == sorted(percents) and len(percents) >= 3  # reported as seen
    # Without resets the pace reaches 0.8 s after 3 quiet reads: about 6 reads in 3 s, not 30.
    assert gets(runwatch_server, run["id"]) <= 10


async def test_a_long_poll_is_not_answered_for_a_heartbeat_and_zombies_are_still_found(
    runwatch_server: ReferenceServer,
) -> None:
    run = runwatch_server.create_run(
        script=[{"status": "RUNNING", "for": 2.5}, {"status": "SUCCEEDED"}], heartbeat_every=0.05
    )
    api = RunApi(runwatch_server.url)
    final = await wait_for_run(api, run["id"], policy=Policy(interval=5, max_interval=10, long_poll=30))
    assert final.status is State.SUCCEEDED
    assert gets(runwatch_server, run["id"]) <= 4  # first look, one held poll per change
    zombie = runwatch_server.create_run(
        script=[{"status": "RUNNING", "for": 60}, {"status": "SUCCEEDED"}],
        heartbeat_every=0.05,
        stop_heartbeat_after=0.5,
    )
    policy = Policy(interval=5, max_interval=10, long_poll=30, heartbeat_timeout=1, timeout=20)
    begun = time.monotonic()
    with pytest.raises(RunLost):
        await wait_for_run(api, zombie["id"], policy=policy)
    assert time.monotonic() - begun < 10  # found by the heartbeat rule, not by the 20 s deadline


def test_the_cli_prints_a_line_per_change_not_per_heartbeat(runwatch_server: ReferenceServer) -> None:
    run = runwatch_server.create_run(
        script=[{"status": "RUNNING", "for": 60}, {"status": "SUCCEEDED"}], heartbeat_every=0.05
    )
    argv = [sys.executable, "-m", "runwatch", "watch", run["url"], "--json", "--interval", "0.1"]
    with subprocess.Popen([*argv, "--max-interval", "0.2"], stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())
        time.sleep(1.0)  # 20 heartbeats go by while the CLI keeps reading
        runwatch_server.cancel_run(run["id"])
        rest = [json.loads(line) for line in proc.stdout]
    assert proc.returncode == 2
    states = [first["status"]] + [line["status"] for line in rest]
    assert states[0] == "RUNNING" and states[-1] == "CANCELLED"
    assert len(states) == len(set(states))  # a line per change: none for the heartbeats in between


def test_the_machine_refreshes_liveness_without_calling_it_news() -> None:
    from datetime import datetime, timedelta, timezone

    from runwatch import Progress, RunMachine, RunStatus

    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    machine = RunMachine()
    running = RunStatus(id="r", status=State.RUNNING, heartbeat_at=t0, updated_at=t0, version=1)
    assert machine.observe(running) is Verdict.APPLIED
    beat = running.model_copy(update={"heartbeat_at": t0 + timedelta(seconds=5), "version": 2})
    assert machine.observe(beat) is Verdict.UNCHANGED
    assert machine.current == beat  # zombie detection sees the new beat
    progressed = beat.model_copy(update={"progress": Progress(percent=40), "version": 3})
    assert machine.observe(progressed) is Verdict.PROGRESSED
    failed = progressed.model_copy(update={"status": State.FAILED, "version": 4})
    assert machine.observe(failed) is Verdict.APPLIED


# ---------------------------------------------------------------------- 2. long polling without ETags


async def test_long_polls_are_held_after_the_first_look_even_without_an_etag(
    odd: tuple[OddApi, str],
) -> None:
    app, url = odd
    profile = {
        "name": "noetag",
        "status_url": "{base_url}/noetag/{run_id}",
        "states": {"RUNNING": "RUNNING", "SUCCEEDED": "SUCCEEDED"},
        "long_poll": {"style": "query", "param": "wait", "max": 30},
    }
    api = RunApi(url, profile)
    pauses: list[float] = []
    policy = Policy(interval=5, max_interval=10, long_poll=10)
    final = await wait_for_run(api, "r1", policy=policy, hooks=Hooks(before_sleep=pauses.append))
    assert final.status is State.SUCCEEDED
    # The first look, then one request held until the end: no pause of ours (polling would sleep 5 s and see
    # the end up to 5 s late), however slow this machine is.
    assert app.hits["/noetag/r1"] == 2 and pauses == []


# ------------------------------------------------------------------- 3. a pause never outlives a deadline


async def test_a_pause_asked_by_another_wait_ends_at_our_deadline_with_the_last_status(
    runwatch_server: ReferenceServer,
) -> None:
    quiet = runwatch_server.create_run(script=[{"status": "RUNNING", "for": 600}, {"status": "SUCCEEDED"}])
    limited = runwatch_server.create_run(
        script=[{"status": "RUNNING", "for": 600}, {"status": "SUCCEEDED"}],
        faults={"rate_limit": {"every": 1, "retry_after": 3600}},
    )
    api = RunApi(runwatch_server.url)
    changes = watch_run(api, quiet["id"], policy=Policy(interval=0.2, timeout=3))
    first = await anext(changes)
    assert first.status is State.RUNNING
    other = asyncio.create_task(wait_for_run(api, limited["id"], policy=Policy(timeout=3)))
    begun = time.monotonic()
    with pytest.raises(WaitTimeout) as info:
        await anext(changes)
    assert info.value.status is not None and info.value.status.status is State.RUNNING
    with pytest.raises(WaitTimeout):
        await other
    assert time.monotonic() - begun < 6  # about 3 s, not the hour the server asked for


# --------------------------------------------------------------------------------- 4. unbounded hints


@pytest.mark.parametrize("value", ["Infinity", "Fri, 31 Dec 9999 23:59:59 GMT", "30"])
def test_hints_never_outlast_the_unavailable_tolerance(odd: tuple[OddApi, str], value: str) -> None:
    _, url = odd
    begun = time.monotonic()
    proc = cli("watch", f"{url}/hint/{quote(value)}", "--unavailable-after", "2")
    assert proc.returncode == 7, proc.stderr
    assert "unreadable" in proc.stderr and "429" in proc.stderr
    assert time.monotonic() - begun < 20  # about 2 s: neither the hint nor for ever


# ----------------------------------------------------------------------------- 5. 403 as a rate limit

GITHUB_LIKE = {
    "name": "github-like",
    "status_url": "{base_url}/limited/{form}/{run_id}",
    "states": {"SUCCEEDED": "SUCCEEDED"},
    "rate_limit": {"statuses": [403, 429]},
}


@pytest.mark.parametrize("form", ["primary", "secondary"])
async def test_a_403_that_says_rate_limited_waits_and_goes_on(odd: tuple[OddApi, str], form: str) -> None:
    app, url = odd
    api = RunApi(url, GITHUB_LIKE, params={"form": form})
    final = await wait_for_run(api, "r1", policy=Policy(interval=0.05, max_interval=0.1, timeout=30))
    assert final.status is State.SUCCEEDED
    assert app.hits[f"/limited/{form}/r1"] == 3  # two 403s, each waited out, then the answer


async def test_a_plain_403_stays_access_denied(odd: tuple[OddApi, str]) -> None:
    _, url = odd
    api = RunApi(url, GITHUB_LIKE, params={"form": "plain"})
    with pytest.raises(AccessDenied):
        await wait_for_run(api, "r1", policy=Policy(interval=0.05, timeout=30))


def test_only_rate_limits_for_longer_than_the_tolerance_is_status_unavailable(
    odd: tuple[OddApi, str], tmp_path: Path
) -> None:
    _, url = odd
    profile = tmp_path / "gh.json"
    profile.write_text(json.dumps(GITHUB_LIKE | {"status_url": "{base_url}/hint/{run_id}"}))
    proc = cli("watch", "3600", "--base-url", url, "--profile", str(profile), "--unavailable-after", "1")
    assert proc.returncode == 7, proc.stderr


# ------------------------------------------------------------------------------------- 8. body size cap


def test_an_oversized_body_is_refused_while_streaming_and_memory_stays_bounded(
    odd: tuple[OddApi, str],
) -> None:
    app, url = odd
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # The tolerance bounds each request too: 3 s leaves a loaded machine time to read up to the cap.
    proc = cli("watch", f"{url}/huge", "--unavailable-after", "3", "--interval", "0.2")
    assert proc.returncode == 7, proc.stderr
    assert "over the limit" in proc.stderr
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    assert peak_kib == before or peak_kib < 200 * 1024  # a 150 MB body read whole would pass 450 MB
    assert app.hits["/huge"] >= 1


async def test_the_body_cap_is_per_api(runwatch_server: ReferenceServer) -> None:
    run = runwatch_server.create_run(script=[{"status": "SUCCEEDED"}])
    api = RunApi(runwatch_server.url, max_body=64)
    with pytest.raises(StatusUnavailable, match="over the limit of 64"):
        await wait_for_run(api, run["id"], policy=Policy(interval=0.05, unavailable_after=2))


# ------------------------------------------------------------------------- 10. passwords in URLs


def test_a_password_in_the_url_is_used_and_never_shown(odd: tuple[OddApi, str]) -> None:
    _, url = odd
    secret_url = url.replace("://", "://user:pw-9c1f@")
    proc = cli("watch", f"{secret_url}/basic/r1", "--json")
    assert proc.returncode == 0, proc.stderr
    assert "pw-9c1f" not in proc.stdout + proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1])["status"] == "SUCCEEDED"
    proc = cli("watch", f"{secret_url.replace('pw-9c1f', 'wrong-5d2a')}/basic/r2", "--json")
    assert proc.returncode == 9
    assert "wrong-5d2a" not in proc.stdout + proc.stderr and "/basic/r2 (HTTP 401" in proc.stderr


def test_a_url_with_credentials_is_refused_by_the_library_without_showing_them() -> None:
    with pytest.raises(ConfigurationError) as info:
        RunApi("http://127.0.0.1:9").status_url("http://user:s3cr3t@127.0.0.1:9/runs/x")
    assert "s3cr3t" not in str(info.value) and "user:***@" in str(info.value)
    api = RunApi("http://user:s3cr3t@127.0.0.1:9")
    assert "s3cr3t" not in repr(api) + json.dumps(api.to_dict())
    assert api.base_url == "http://127.0.0.1:9"


# ------------------------------------------------------- issue 16: credentials stay with their origin


async def test_a_credential_is_never_sent_to_another_origin(
    odd: tuple[OddApi, str], runwatch_server: ReferenceServer
) -> None:
    app, url = odd
    api = RunApi(runwatch_server.url, auth=BearerAuth("tok-origin-a"))
    with pytest.raises(ConfigurationError, match="not on"):
        await wait_for_run(api, f"{url}/runs/r1", policy=Policy(interval=0.05))
    assert app.hits["/runs/r1"] == 0
    anonymous = RunApi(runwatch_server.url, auth=BearerAuth("tok-origin-a"), other_origins="anonymous")
    final = await wait_for_run(anonymous, f"{url}/runs/r1", policy=Policy(interval=0.05))
    assert final.status is State.SUCCEEDED
    assert app.auth == [("/runs/r1", None)]


def test_the_cli_sends_the_token_only_to_the_base_urls_origin(
    odd: tuple[OddApi, str], runwatch_server: ReferenceServer
) -> None:
    app, url = odd
    argv = ["watch", f"{url}/runs/r1", "--base-url", runwatch_server.url, "--token-env", "RW_TOKEN"]
    proc = subprocess.run(
        [sys.executable, "-m", "runwatch", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "RW_TOKEN": "tok-5e7a"},
    )
    assert proc.returncode == 64, proc.stderr
    assert app.hits["/runs/r1"] == 0 and "tok-5e7a" not in proc.stderr


async def test_same_origin_redirects_are_followed_and_others_refused(
    odd: tuple[OddApi, str], runwatch_server: ReferenceServer
) -> None:
    app, url = odd
    api = RunApi(url, auth=BearerAuth("tok-r"))
    final = await wait_for_run(api, f"{url}/moved/r1", policy=Policy(interval=0.05))
    assert final.status is State.SUCCEEDED
    assert app.auth[-1] == ("/runs/r1", "Bearer tok-r")
    app.elsewhere = runwatch_server.url
    with pytest.raises(ConfigurationError, match="another origin"):
        await wait_for_run(api, f"{url}/away/r1", policy=Policy(interval=0.05))
    assert runwatch_server.stats()["requests_total"] == 0  # nothing, and so no token, went there


async def test_a_certificate_that_does_not_verify_is_a_configuration_error_at_once(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_file, key_file, ca_file = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    ca.cert_pem.write_to_path(str(ca_file))
    app = OddApi()
    with serve(app.app, ssl_certfile=str(cert_file), ssl_keyfile=str(key_file)) as url:
        policy = Policy(interval=0.05, unavailable_after=300)
        with pytest.raises(ConfigurationError) as info:
            await asyncio.wait_for(wait_for_run(RunApi(url), f"{url}/runs/r1", policy=policy), 30)
        assert "127.0.0.1" in str(info.value) and "CA bundle" in str(info.value)
        final = await wait_for_run(RunApi(url, verify=str(ca_file)), f"{url}/runs/r1", policy=policy)
        assert final.status is State.SUCCEEDED
        proc = cli("watch", f"{url}/runs/r2", "--ca-bundle", str(ca_file), "--json")
        assert proc.returncode == 0, proc.stderr
        proc = cli("watch", f"{url}/runs/r3")
        assert proc.returncode == 64 and "--ca-bundle" in proc.stderr


def test_a_malformed_base_url_is_a_configuration_error() -> None:
    for bad in ("jobs.example.com", "ftp://host/x", "http://"):
        with pytest.raises(ConfigurationError, match=r"http:// or https://|has no host"):
            RunApi(bad)
    assert main(["watch", "r1", "--base-url", "jobs.example.com"]) == 64
