"""End to end on a real Airflow 3.3 (scheduler, triggerer, dag processor, api server; LocalExecutor, SQLite).

- 50 RunStatusSensors whose remote runs last 20 s, with AIRFLOW__CORE__PARALLELISM=2: had each held one of
  the 2 slots it would take 500 s; started and ended in the triggerer, they all wait there at once.
- The other paths: mapped sensors deferring from a worker, a failed run (RemoteRunFailed), soft_fail.
- A StartRunOperator whose first try dies after starting the run: the retry finds that run again.
- The connection's token never appears in trigger kwargs, XCom or any log file.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from airflow_cluster import AirflowCluster

from runwatch.server import ReferenceServer

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(600)]

DAGS = Path(__file__).parent / "dags"
CANARY = "rw-e2e-canary-5d1f0b7e2a"
RUNS, SECONDS = 50, 20
DAG_IDS = ("rw_e2e_fanout", "rw_e2e_retry", "rw_e2e_outcomes")
NO_SLOT_BOUND = 250.0  # seconds; 500 if each sensor held one of the 2 slots (20 sensors took 36 s here)


@dataclass
class E2E:
    cluster: AirflowCluster
    fanout_server: ReferenceServer
    retry_server: ReferenceServer
    triggers: dict[int, tuple[str, str]] = field(default_factory=dict)  # every trigger row ever seen
    most_triggers_at_once: int = 0
    most_deferred_at_once: int = 0


@pytest.fixture(scope="module")
def e2e(airflow_cluster_factory: Callable[..., AirflowCluster]) -> Iterator[E2E]:
    with ReferenceServer(token=CANARY) as fanout, ReferenceServer(token=CANARY) as retry:
        failed = fanout.create_run(
            script=[{"status": "FAILED", "errors": [{"message": "disk full on node 3"}]}]
        )
        env = {
            "AIRFLOW__CORE__PARALLELISM": "2",
            "AIRFLOW_CONN_RUNWATCH_DEFAULT": _conn(fanout.url),
            "AIRFLOW_CONN_RUNWATCH_RETRY": _conn(retry.url),
            "RW_E2E_RUNS": str(RUNS),
            "RW_E2E_SECONDS": str(SECONDS),
            "RW_E2E_FAILED_RUN": failed["id"],
        }
        cluster = airflow_cluster_factory(sorted(DAGS.glob("*.py")), env)
        result = E2E(cluster, fanout, retry)
        deadline = time.monotonic() + 300
        while not all(cluster.dag_run_state(d) in ("success", "failed") for d in DAG_IDS):
            if time.monotonic() > deadline:
                pytest.fail("the DAG runs did not finish:\n" + cluster.log_tail("scheduler"))
            cluster.check_alive()
            now = cluster.trigger_kwargs()
            result.triggers.update(now)
            result.most_triggers_at_once = max(result.most_triggers_at_once, len(now))
            deferred = cluster.query("SELECT count(*) FROM task_instance WHERE state = 'deferred'")[0][0]
            result.most_deferred_at_once = max(result.most_deferred_at_once, deferred)
            time.sleep(1)
        yield result


def _conn(url: str) -> str:
    return f'{{"conn_type": "runwatch", "host": "{url}", "password": "{CANARY}"}}'


def test_fifty_sensors_wait_in_the_triggerer_not_in_worker_slots(e2e: E2E) -> None:
    cluster = e2e.cluster
    assert cluster.dag_run_state("rw_e2e_fanout") == "success", cluster.task_states("rw_e2e_fanout")
    states = cluster.task_states("rw_e2e_fanout")
    waits = [t for t in states if t[0].startswith("wait_")]
    assert len(waits) == RUNS and all(state == "success" for _, _, state, _ in waits)
    assert ("check", -1, "success", 1) in states  # the final status reached a downstream task as a dict
    links = [v for task, _, key, v in cluster.xcoms("rw_e2e_fanout") if key == "_link_RemoteRunLink"]
    assert len(links) == RUNS and all(link.startswith(e2e.fanout_server.url + "/runs/r-") for link in links)
    finals = [
        v
        for task, _, key, v in cluster.xcoms("rw_e2e_fanout")
        if task.startswith("wait_") and key == "return_value"
    ]
    assert len(finals) == RUNS and {v["status"] for v in finals} == {"SUCCEEDED"}
    [(seconds,)] = cluster.query(
        "SELECT (julianday(end_date) - julianday(start_date)) * 86400 FROM dag_run WHERE dag_id = 'rw_e2e_fanout'"
    )
    print(
        f"\n{RUNS} sensors of {SECONDS:g}s runs on 2 slots: the DAG run took {seconds:.0f}s "
        f"(500s if each held a slot); {e2e.most_deferred_at_once} tasks were deferred at once"
    )
    assert seconds < NO_SLOT_BOUND
    assert e2e.most_deferred_at_once >= RUNS * 0.8  # they waited side by side, not two at a time
    # Started and ended in the triggerer: no worker ever ran these tasks.
    [(ran_on_a_worker,)] = cluster.query(
        "SELECT count(*) FROM task_instance WHERE dag_id = 'rw_e2e_fanout' AND task_id LIKE 'wait_%' "
        "AND pid IS NOT NULL"
    )
    assert ran_on_a_worker == 0
    # The scheduler stored each trigger's `run` as the DAG's template; the triggerer rendered it.
    assert any(
        "xcom_pull(task_ids='start_runs', map_indexes=-1)" in kwargs for _, kwargs in e2e.triggers.values()
    )


def test_mapped_sensors_failures_and_soft_fail_on_a_real_scheduler(e2e: E2E) -> None:
    states = {(task, index): state for task, index, state, _ in e2e.cluster.task_states("rw_e2e_outcomes")}
    assert [states[("wait_mapped", i)] for i in range(3)] == ["success"] * 3
    assert states[("wait_failed", -1)] == "failed"
    assert states[("wait_failed_soft", -1)] == "skipped"
    logs = e2e.cluster.all_logs()
    assert "RemoteRunFailed" in logs and "disk full on node 3" in logs


def test_a_retried_start_finds_the_run_it_already_started(e2e: E2E) -> None:
    cluster = e2e.cluster
    assert cluster.dag_run_state("rw_e2e_retry") == "success", cluster.task_states("rw_e2e_retry")
    [(_, _, state, try_number)] = cluster.task_states("rw_e2e_retry")
    assert state == "success" and try_number >= 2
    stats = e2e.retry_server.stats()
    assert stats["runs_created"] == 1
    [(run_id, counters)] = stats["runs"].items()
    assert counters["POST"] == 2  # two starts, one run: the second was an idempotent replay
    xcom = {key: value for _, _, key, value in cluster.xcoms("rw_e2e_retry")}
    assert xcom["run_id"] == run_id and xcom["return_value"]["status"] == "SUCCEEDED"


def test_the_token_never_leaves_the_connection(e2e: E2E) -> None:
    cluster = e2e.cluster
    assert len(e2e.triggers) >= RUNS  # trigger rows were captured while the tasks were deferred
    for classpath, kwargs in e2e.triggers.values():
        assert classpath == "runwatch_airflow.triggers.runwatch.RunStatusTrigger"
        assert CANARY not in kwargs
    values = [repr(v) for d in ("rw_e2e_fanout", "rw_e2e_retry") for *_, v in cluster.xcoms(d)]
    assert values and not [v for v in values if CANARY in v]
    logs = cluster.all_logs()
    assert "is SUCCEEDED" in logs  # the trigger and task logs were read
    assert CANARY not in logs
