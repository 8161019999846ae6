"""Airflow watching Prefect, for real: a RunStatusSensor with the `prefect` profile waits on flow runs of a
real Prefect server (started from the Prefect environment), through `dag.test()` with its trigger inline;
and the event trigger fires once for each flow run of a deployment that ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag
from prefect_server import PrefectServer

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.usefixtures("airflow_db")]

# Both flow runs are created first (so their ids are known), then run one after the other: the second waits
# as Pending while the first runs. Each sleeps so that the sensor sees it running.
FLOWS = """
import time

from prefect import flow
from prefect.client.orchestration import get_client
from prefect.flow_engine import run_flow


@flow(name="rw-cross-ok")
def ok() -> int:
    time.sleep(5)
    return 42


@flow(name="rw-cross-bad")
def bad() -> None:
    time.sleep(3)
    raise ValueError("bad row 7")


with get_client(sync_client=True) as client:
    runs = [(f, client.create_flow_run(f)) for f in (ok, bad)]
print(" ".join(str(r.id) for _, r in runs), flush=True)
for f, r in runs:
    run_flow(f, flow_run=r, return_type="state")
"""

DAG = """
from datetime import datetime

from airflow.sdk import dag

from runwatch_airflow.sensors.runwatch import RunStatusSensor

POLICY = {{"interval": 0.2, "max_interval": 1.0}}


@dag(schedule=None, start_date=datetime(2025, 1, 1), catchup=False)
def rw_cross_prefect():
    RunStatusSensor(task_id="ok", run="{ok}", conn_id="prefect_api", profile="prefect", policy=POLICY)
    RunStatusSensor(task_id="bad", run="{bad}", conn_id="prefect_api", profile="prefect", policy=POLICY)


rw_cross_prefect()
"""


@pytest.fixture(scope="module")
def prefect(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    server = PrefectServer(tmp_path_factory.mktemp("prefect-home"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.mark.timeout(900)
def test_a_sensor_with_the_prefect_profile_waits_on_real_flow_runs(
    prefect: PrefectServer, connection: Callable[..., str], dag_file: Callable[[str, str], Path]
) -> None:
    script = prefect.home / "flows.py"
    script.write_text(FLOWS)
    flows = prefect.run_script(script)
    try:
        assert flows.stdout is not None
        ok_id, bad_id = flows.stdout.readline().split()
        connection("prefect_api", host=prefect.api_url)
        path = dag_file("rw_cross_prefect.py", DAG.format(ok=ok_id, bad=bad_id))
        dag = DagBag(dag_folder=str(path)).get_dag("rw_cross_prefect")
        assert dag is not None
        run = dag.test()
    finally:
        flows.wait(120)
    tis = {ti.task_id: ti for ti in run.get_task_instances()}
    assert {task: str(ti.state) for task, ti in tis.items()} == {"ok": "success", "bad": "failed"}
    final = tis["ok"].xcom_pull(task_ids="ok")
    assert (final["id"], final["status"], final["raw_status"]) == (ok_id, "SUCCEEDED", "COMPLETED")
    assert final["started_at"] is not None and final["duration"] >= 5
    assert flows.returncode == 0


# A deployment, then two flow runs of it, run one after the other: the first sleeps long enough for the event
# trigger's first read to see it going (a run already ended at that read is history, never announced).
UPSTREAM = """
import time

from prefect import flow
from prefect.client.orchestration import get_client
from prefect.flow_engine import run_flow


@flow(name="rw-upstream")
def upstream(fail: bool = False) -> int:
    time.sleep(3 if fail else 10)
    if fail:
        raise ValueError("bad row 7")
    return 42


with get_client(sync_client=True) as client:
    deployment_id = client.create_deployment(flow_id=client.create_flow(upstream), name="rw-upstream")
    print(deployment_id, flush=True)
    runs = [
        (fail, client.create_flow_run_from_deployment(deployment_id, parameters={"fail": fail}))
        for fail in (False, True)
    ]
print(" ".join(str(r.id) for _, r in runs), flush=True)
for fail, r in runs:
    run_flow(upstream, flow_run=r, parameters={"fail": fail}, return_type="state")
"""


@pytest.mark.timeout(600)
async def test_the_event_trigger_with_the_prefect_profile_fires_once_per_flow_run_that_ends(
    prefect: PrefectServer, connection: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """RunEndedTrigger on a real Prefect server: the flow runs of one deployment (the `prefect` profile's
    list filter), one event per flow run that ends, with its final state."""
    from runwatch_airflow.triggers import run_ended
    from runwatch_airflow.triggers.run_ended import RunEndedTrigger

    monkeypatch.setattr(run_ended, "PERSIST_GRACE", 0.0)  # no triggerer here to store the events
    script = prefect.home / "upstream.py"
    script.write_text(UPSTREAM)
    flows = prefect.run_script(script)
    try:
        assert flows.stdout is not None
        deployment_id = flows.stdout.readline().strip()
        connection("prefect_api", host=prefect.api_url)
        trigger = RunEndedTrigger(
            conn_id="prefect_api", profile="prefect", params={"deployment_id": deployment_id}, interval=0.5
        )
        stream = trigger.run()
        try:
            events = [(await asyncio.wait_for(anext(stream), 300)).payload for _ in range(2)]
        finally:
            await stream.aclose()  # type: ignore[attr-defined]  # an async generator
        ok_id, bad_id = flows.stdout.readline().split()
    finally:
        flows.wait(120)
    assert [(e["id"], e["status"], e["raw_status"]) for e in events] == [
        (ok_id, "SUCCEEDED", "COMPLETED"),
        (bad_id, "FAILED", "FAILED"),
    ]
    assert events[0]["duration"] >= 10
    assert flows.returncode == 0
