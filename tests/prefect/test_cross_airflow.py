"""Prefect watching Airflow, for real: `wait_for_run` with the `airflow` profile waits on DAG runs of a real
Airflow api-server (started from the Airflow environment, JWT from /auth/token); and a DAG run's end starts a
Prefect deployment through the event source.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from airflow_server import AirflowApiServer
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
from prefect.events import DeploymentEventTrigger
from prefect.states import State
from prefect_harness import eventually

import runwatch
from prefect_runwatch import RunStatusApi, wait_for_run
from prefect_runwatch.run_ended import ENDED_EVENT, EndedRunsCursor, RunEndedEvents

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

DAGS = """
import time
from datetime import datetime

from airflow.sdk import dag, task


@dag(dag_id="rw_cross_ok", schedule=None, start_date=datetime(2025, 1, 1), catchup=False)
def ok():
    @task
    def work():
        time.sleep(5)
        return 42

    work()


@dag(dag_id="rw_cross_bad", schedule=None, start_date=datetime(2025, 1, 1), catchup=False)
def bad():
    @task
    def work():
        time.sleep(5)
        raise ValueError("bad row 7")

    work()


ok()
bad()
"""


@pytest.fixture(scope="module")
def airflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowApiServer]:
    server = AirflowApiServer(tmp_path_factory.mktemp("airflow-home"), {"rw_cross.py": DAGS})
    try:
        server.start()
        yield server
    finally:
        server.stop()


async def _first_run(
    airflow: AirflowApiServer, token: str, dag_id: str, proc: subprocess.Popen[bytes]
) -> str:
    """The id of the DAG's first run, once `airflow dags test` has made it (bounded)."""
    url = f"{airflow.url}/api/v2/dags/{dag_id}/dagRuns"
    deadline = time.monotonic() + 300
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as client:
        while time.monotonic() < deadline:
            answer = await client.get(url)
            runs = answer.json().get("dag_runs", []) if answer.status_code == 200 else []
            if runs:
                return str(runs[0]["dag_run_id"])
            assert proc.poll() is None, (
                f"airflow dags test {dag_id} ended first:\n{airflow.log_tail(f'dags-test-{dag_id}')}"
            )
            await asyncio.sleep(0.5)
    raise TimeoutError(f"no run of {dag_id} after 300 s")


async def _wait(api: RunStatusApi, run: str) -> State[Any]:
    states: list[State[Any]] = []

    @flow
    async def waits() -> None:
        states.append(await wait_for_run(run, api, {"interval": 0.2, "max_interval": 1.0}, return_state=True))

    await waits(return_state=True)
    return states[0]


async def _wait_then_reap(api: RunStatusApi, run_id: str, proc: subprocess.Popen[bytes]) -> State[Any]:
    try:
        return await _wait(api, run_id)
    finally:
        await asyncio.to_thread(proc.wait, 300)


@pytest.mark.timeout(900)
async def test_wait_for_run_with_the_airflow_profile_waits_on_real_dag_runs(
    airflow: AirflowApiServer,
) -> None:
    # The first DAG run starts while the api-server comes up (`dags test` runs its tasks in its own process);
    # the second `dags test` starts once the first has written the DAGs, as two at once race on the same
    # rows of the SQLite database (a UNIQUE constraint fails in one of them).
    procs = {"rw_cross_ok": airflow.dags_test("rw_cross_ok")}
    await asyncio.to_thread(airflow.wait_ready)
    token = airflow.token()

    def api(dag_id: str) -> RunStatusApi:
        return RunStatusApi(base_url=airflow.url, profile="airflow", params={"dag_id": dag_id}, token=token)

    run_id = await _first_run(airflow, token, "rw_cross_ok", procs["rw_cross_ok"])
    waiting_ok = asyncio.ensure_future(_wait_then_reap(api("rw_cross_ok"), run_id, procs["rw_cross_ok"]))
    procs["rw_cross_bad"] = airflow.dags_test("rw_cross_bad")
    bad_id = await _first_run(airflow, token, "rw_cross_bad", procs["rw_cross_bad"])
    bad = await _wait_then_reap(api("rw_cross_bad"), bad_id, procs["rw_cross_bad"])
    ok = await waiting_ok
    assert ok.is_completed()
    final = await ok.result()
    assert (final["id"], final["status"], final["raw_status"]) == (run_id, "SUCCEEDED", "success")
    assert final["duration"] >= 5
    assert bad.is_failed()
    with pytest.raises(runwatch.RunFailed, match="failed"):
        await bad.result()
    assert [proc.returncode for proc in procs.values()] == [0, 1]  # `dags test` of a failing DAG exits 1
    # The batch read the profile records answers both runs, in the shape the profile reads.
    profile = runwatch.load_profile("airflow")
    assert profile.list_runs is not None
    values = {"base_url": airflow.url, "dag_id": "rw_cross_ok"}
    body = profile.render_body(profile.list_runs.body, **values)
    body["dag_ids"].append("rw_cross_bad")
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as client:
        answer = await client.post(profile.url(profile.list_runs.url, **values), json=body)
    assert answer.status_code == 200
    listed = {status.id: status.status for status in profile.parse_list(answer.json())}
    assert listed[run_id] is runwatch.State.SUCCEEDED and sorted(listed.values()) == ["FAILED", "SUCCEEDED"]


@flow(name="after-airflow")
def after_airflow(run_id: str, status: str) -> None:
    """Started by the automation below; never run here (only its flow runs are looked at)."""


@pytest.mark.timeout(600)
async def test_a_dag_runs_end_starts_a_prefect_deployment_with_its_id(airflow: AirflowApiServer) -> None:
    """The event source with the `airflow` profile on a real Airflow: the DAG run of `rw_cross_ok` that ends
    starts `after-airflow/cross` (a DeploymentEventTrigger) once, with the DAG run's id and final state."""
    await asyncio.to_thread(airflow.wait_ready)
    token = airflow.token()
    trigger = DeploymentEventTrigger(
        expect={ENDED_EVENT},
        match={"runwatch.source": "cross-airflow"},
        parameters={"run_id": "{{ event.resource.name }}", "status": "{{ event.payload.status.status }}"},
    )
    deployment = await after_airflow.ato_deployment("cross", triggers=[trigger])
    deployment_id = await deployment.aapply()
    api = RunStatusApi(base_url=airflow.url, profile="airflow", params={"dag_id": "rw_cross_ok"}, token=token)
    source = RunEndedEvents(api, "cross-airflow", interval=0.5)
    stop = asyncio.Event()
    running = asyncio.create_task(source.run(stop))

    async def looked() -> bool:
        assert not running.done(), running
        try:
            await EndedRunsCursor.aload(source.cursor_block)
        except ValueError:
            return False
        return True

    async def started() -> list[Any] | None:
        async with get_client() as client:
            found = await client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
            )
        return found or None

    try:
        await eventually(looked, 120, "the source's first read of the DAG runs")
        before = {status.id for status in await runwatch.read_run_list(api.get_api())}
        proc = airflow.dags_test("rw_cross_ok")
        assert await asyncio.to_thread(proc.wait, 300) == 0, airflow.log_tail("dags-test-rw_cross_ok")
        [flow_run] = await eventually(started, 60, "a flow run of after-airflow/cross")
        await asyncio.sleep(2)  # four more reads: nothing more starts
        assert source.emitted == 1
    finally:
        stop.set()
        await running
    [new] = {status.id for status in await runwatch.read_run_list(api.get_api())} - before
    assert flow_run.parameters == {"run_id": new, "status": "SUCCEEDED"}
    assert len(await started() or []) == 1
