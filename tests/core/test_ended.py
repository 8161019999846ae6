"""Runs that end, read from a profile's list endpoint: the cursor, the listing poll, and the stream of ends."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

import runwatch
from runwatch import EndedRuns, MockTransport, Request, Response, RunApi, RunStatus, State
from runwatch.server import ReferenceServer
from runwatch.testing import FakeClock


def _runs(**states: str) -> list[RunStatus]:
    return [RunStatus(id=run_id, status=State(state)) for run_id, state in states.items()]


def test_the_first_look_takes_what_already_ended_as_history() -> None:
    cursor = EndedRuns()
    assert not cursor.started
    assert cursor.update(_runs(a="SUCCEEDED", b="RUNNING", c="FAILED")) == []
    assert cursor.started and cursor.seen == ["a", "c"]


def test_a_run_is_announced_once_when_it_ends_never_while_it_stays_ended() -> None:
    cursor = EndedRuns()
    cursor.update(_runs(a="SUCCEEDED", b="RUNNING"))
    assert [s.id for s in cursor.update(_runs(a="SUCCEEDED", b="RUNNING", c="QUEUED"))] == []
    ended = cursor.update(_runs(a="SUCCEEDED", b="FAILED", c="RUNNING", d="CANCELLED"))
    assert [(s.id, s.status) for s in ended] == [("b", State.FAILED), ("d", State.CANCELLED)]
    assert cursor.update(_runs(a="SUCCEEDED", b="FAILED", c="RUNNING", d="CANCELLED")) == []
    assert [s.id for s in cursor.update(_runs(b="FAILED", c="SUCCEEDED"))] == ["c"]


def test_a_stored_cursor_announces_what_ended_while_nobody_looked_and_nothing_twice() -> None:
    cursor = EndedRuns()
    cursor.update(_runs(a="SUCCEEDED", b="RUNNING"))
    stored = json.loads(json.dumps(cursor.to_dict()))
    again = EndedRuns.from_dict(stored)
    assert again.started
    assert [s.id for s in again.update(_runs(a="SUCCEEDED", b="SUCCEEDED", c="FAILED"))] == ["b", "c"]
    # Nothing stored: a new watch, which does not replay the past.
    assert EndedRuns.from_dict(None).update(_runs(a="SUCCEEDED")) == []


@pytest.mark.parametrize("data", [{}, {"seen": "a"}, {"seen": [1]}, ["a"]])
def test_a_cursor_that_is_not_one_is_refused(data: object) -> None:
    with pytest.raises(ValueError, match="a stored cursor is an object with 'seen'"):
        EndedRuns.from_dict(data)


def test_the_cursor_forgets_the_oldest_ends_no_longer_listed_beyond_its_size() -> None:
    cursor = EndedRuns([], keep=3)
    cursor.update(_runs(a="SUCCEEDED", b="SUCCEEDED"))
    cursor.update(_runs(c="SUCCEEDED", d="SUCCEEDED"))
    assert cursor.seen == ["b", "c", "d"]  # `a` was the oldest and no longer listed
    cursor.update(_runs(e="SUCCEEDED", f="SUCCEEDED", g="SUCCEEDED", h="SUCCEEDED"))
    assert cursor.seen == ["e", "f", "g", "h"]  # never fewer than the answer holds


def test_a_copy_moves_on_alone() -> None:
    cursor = EndedRuns(["a"])
    attempt = cursor.copy()
    assert [s.id for s in attempt.update(_runs(a="SUCCEEDED", b="FAILED"))] == ["b"]
    assert cursor.seen == ["a"] and attempt.seen == ["a", "b"]
    fresh = EndedRuns().copy()
    assert not fresh.started


def test_two_copies_of_a_cursor_merge_into_what_either_saw() -> None:
    one, other = EndedRuns(["a"]), EndedRuns(["b"])
    one.merge(other)
    one.merge(EndedRuns())  # a copy that never looked adds nothing
    assert one.seen == ["a", "b"]
    fresh = EndedRuns()
    fresh.merge(other)
    assert fresh.started and fresh.seen == ["b"]


def test_which_ends_fire() -> None:
    from runwatch._ended import fires

    succeeded, failed, running = _runs(a="SUCCEEDED", b="FAILED", c="RUNNING")
    assert [fires(s, "any") for s in (succeeded, failed, running)] == [True, True, False]
    assert [fires(s, "succeeded") for s in (succeeded, failed, running)] == [True, False, False]


async def test_each_run_that_ends_under_the_filter_is_announced_once_with_its_final_status(
    runwatch_server: ReferenceServer,
) -> None:
    server = runwatch_server
    history = server.create_vendor_run("airflow", [{"state": "success"}])["id"]
    ok = server.create_vendor_run("airflow", [{"state": "running", "for": 0.6}, {"state": "success"}])["id"]
    bad = server.create_vendor_run("airflow", [{"state": "running", "for": 0.6}, {"state": "failed"}])["id"]
    api = RunApi(f"{server.url}/vendors/airflow", "airflow", params={"dag_id": "upstream"})
    listed = {s.id: s.status for s in await runwatch.read_run_list(api)}
    assert listed == {history: State.SUCCEEDED, ok: State.RUNNING, bad: State.RUNNING}

    async def collect(outcomes: runwatch.Outcomes, cursor: EndedRuns, count: int) -> list[RunStatus]:
        seen: list[RunStatus] = []
        async for status in runwatch.ended_runs(api, cursor, outcomes=outcomes, interval=0.1):
            seen.append(status)
            if len(seen) == count:
                return seen
        raise AssertionError("unreachable")  # pragma: no cover

    any_cursor, ok_cursor = EndedRuns(), EndedRuns()
    every, succeeded = await asyncio.wait_for(
        asyncio.gather(collect("any", any_cursor, 2), collect("succeeded", ok_cursor, 1)), 30
    )
    assert sorted((s.id, s.status, s.raw_status) for s in every) == sorted(
        [(ok, State.SUCCEEDED, "success"), (bad, State.FAILED, "failed")]
    )
    assert [(s.id, s.status) for s in succeeded] == [(ok, State.SUCCEEDED)]
    # Both cursors know all three ends: nothing more comes from these runs.
    assert set(any_cursor.seen) == set(ok_cursor.seen) == {history, ok, bad}
    assert any_cursor.update(await runwatch.read_run_list(api)) == []


async def test_a_failed_read_is_said_and_tried_again_later_never_an_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    answers = [
        Response(403, {}, b'{"detail": "not allowed"}'),
        Response(200, {}, b"not json"),
        Response(200, {}, json.dumps({"dag_runs": [{"dag_run_id": "x", "state": "success"}]}).encode()),
    ]

    def answer(request: Request) -> Response:
        assert request.method == "POST" and request.url.endswith("/api/v2/dags/~/dagRuns/list")
        return answers.pop(0)

    clock = FakeClock()
    api = RunApi(
        "https://airflow.test",
        "airflow",
        params={"dag_id": "d"},
        transport=MockTransport(answer),
        clock=clock,
    )
    with caplog.at_level(logging.WARNING, "runwatch.ended"):
        stream = runwatch.run_lists(api, interval=10.0)
        runs = await anext(stream)
        await stream.aclose()
    assert [(s.id, s.status) for s in runs] == [("x", State.SUCCEEDED)]
    assert clock.slept == [20.0, 40.0]  # twice the interval after each failure in a row
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2
    assert "AccessDenied" in warnings[0] and "not allowed" in warnings[0]
    assert "BadStatusPayload" in warnings[1] and "not JSON" in warnings[1]


async def test_a_profile_without_a_list_endpoint_is_refused_by_name_before_any_request() -> None:
    transport = MockTransport(lambda request: Response(200, {}, b"[]"))
    bare = {
        "name": "bare",
        "status_url": "{base_url}/runs/{run_id}",
        "fields": {"id": "id", "status": "status"},
        "states": {"RUNNING": "RUNNING", "SUCCEEDED": "SUCCEEDED"},
    }
    by_ids = "profile 'standard' lists runs by id only \\({run_ids}\\), not under a filter"
    for profile, message in [(bare, "profile 'bare' has no \\[list_runs\\] section"), ("standard", by_ids)]:
        api = RunApi("https://jobs.test", profile=profile, transport=transport)
        with pytest.raises(runwatch.ProfileError, match=message):
            await runwatch.read_run_list(api)
        with pytest.raises(runwatch.ProfileError, match=message):
            await anext(runwatch.run_lists(api))
    assert transport.requests == []
