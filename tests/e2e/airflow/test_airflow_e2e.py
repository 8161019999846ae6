"""End to end on a real Airflow 3.3 (scheduler, dag processor, api server, two triggerers; LocalExecutor) with
its metadata in PostgreSQL. One deployment serves every check below.

- 50 RunStatusSensors whose remote runs last 20 s, with AIRFLOW__CORE__PARALLELISM=2: had each held one of
  the 2 slots it would take 500 s; started and ended in the triggerer, they all wait there at once.
- The other paths: mapped sensors deferring from a worker, a failed run (RemoteRunFailed), soft_fail.
- A StartRunOperator whose first try dies after starting the run: the retry finds that run again.
- Triggerer HA: once every wait of `rw_e2e_restart` sits in the first triggerer, a second one starts and
  the first is SIGKILLed mid-wait. The second picks every wait up; each sensor ends once, with its run's
  outcome; no run is cancelled; a wait's deadline stays the one it had.
- Events (RunEndedTrigger in AssetWatchers, rw_e2e_ended.py): a DAG runs once per remote run that ends, with
  its final status in `triggering_asset_events`, and has no task while the run goes on; two assets with equal
  watchers share one trigger; the trigger is on the SIGKILLed triggerer, and a run that ends while no
  triggerer holds it is announced once by the survivor, from the cursor kept in the asset state store.
- Events from Prefect (rw_e2e_prefect.py): a real Prefect server (from .venv/prefect, with basic auth) starts
  while the cluster's database migrates; a DAG scheduled on an asset whose watcher is RunEndedTrigger with the
  built-in `prefect` profile runs once per flow run of a deployment that ends, with the flow run's final
  status in `triggering_asset_events`, and has no DAG run or task while the flow run goes on.
- Secrets: canary credentials in four forms (bearer token, basic auth password, URL userinfo, OAuth client
  secret) never appear in trigger kwargs, trigger events, XCom, any log file, or the reference servers' own
  logs.
- Tokens that expire: a run waited for in the triggerer over several lifetimes of its OAuth client
  credentials' tokens (2 s) gets about one token per lifetime, and the API never sees an expired one.
- Trace context: Airflow's tracing is on (OTLP exporter `console`, as Airflow's docs describe); every
  request about a run carries its task instance's trace (`context_carrier`), from the worker and from the
  triggerer, a task started from the triggerer included.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from airflow_cluster import HEALTH_CHECK_THRESHOLD, AirflowCluster

from runwatch.server import ReferenceServer

sys.path.append(str(Path(__file__).resolve().parents[2] / "airflow"))  # tests/airflow: its Prefect server
from prefect_server import PrefectServer

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(900)]

DAGS = Path(__file__).parent / "dags"
CANARY = "rw-e2e-canary-5d1f0b7e2a"  # the bearer token
BASIC_CANARY = "rw-e2e-basic-canary-93c4aa10"  # a basic auth password
URL_CANARY = "rw-e2e-url-canary-61be07d5"  # a password in the connection's URL (userinfo)
CC_CANARY = "rw-e2e-cc-canary-0b8e64f3d1"  # an OAuth client secret
PREFECT_CANARY = "rw-e2e-prefect-canary-7c2e94b1"  # the password of the Prefect server's basic auth
# The run outlasts the restart scenario's stalls of a loaded triggerer (19 s seen) by many token lifetimes.
CC_CLIENT, TOKEN_LIFETIME, CC_SECONDS = "rw-e2e-client", 2.0, 60.0
USER = "rw-user"
RUNS, SECONDS = 50, 20
DAG_IDS = ("rw_e2e_fanout", "rw_e2e_retry", "rw_e2e_outcomes", "rw_e2e_restart")
NO_SLOT_BOUND = 250.0  # seconds; 500 if each sensor held one of the 2 slots (20 sensors took 36 s here)
# rw_e2e_restart: runs that outlast the kill and the hand-over; a wait whose deadline comes after both.
RESTART_RUN_SECONDS, DEADLINE_SECONDS = 75.0, 110.0
KILL_AFTER_DEFER = 20.0  # the kill comes this long after the deadline's wait deferred (see the test)
ENDED_DAGS = {"rw_e2e_on_end": "any", "rw_e2e_on_end_too": "any", "rw_e2e_on_success": "succeeded"}
ENDED_TRIGGER = "runwatch_airflow.triggers.run_ended.RunEndedTrigger"
ENDED_RUN_SECONDS = 4.0  # each remote run the events DAGs wait for runs this long
PREFECT_DAG, PREFECT_ASSET = "rw_e2e_on_prefect_end", "rw_e2e_prefect_ended"
FLOW_SECONDS = 4.0  # each flow run of the Prefect scenario sleeps this long
PREFECT_TERMINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")  # Prefect's terminal state types
UPSTREAM_SCRIPT = Path(__file__).parent / "prefect_upstream.py"
RESTART_WAITS = [
    f"wait_{conn}_{end}" for conn in ("default", "basic", "userinfo") for end in ("succeeded", "failed")
]


def _basic(password: str) -> str:
    return base64.b64encode(f"{USER}:{password}".encode()).decode()


SECRETS = {  # every form a canary can take on the wire
    "bearer token": [CANARY],
    "basic auth password": [BASIC_CANARY, _basic(BASIC_CANARY)],
    "OAuth client secret": [CC_CANARY, _basic(CC_CANARY)],
    "Prefect basic auth password": [PREFECT_CANARY, _basic(PREFECT_CANARY)],
}
USERINFO_SECRETS = {"URL userinfo password": [URL_CANARY, _basic(URL_CANARY)]}


@dataclass
class Restart:
    """What the test saw around the SIGKILL of the first triggerer."""

    killed_job: int = 0
    survivor_job: int = 0
    killed_at: float = 0.0
    on_killed: dict[str, int] = field(default_factory=dict)  # task id -> trigger id, on the dead triggerer
    handed_over_at: float | None = None  # every one of them on the survivor
    later_owners: dict[str, set[int]] = field(default_factory=dict)  # triggerer ids seen after the kill
    deadline: float = 0.0  # the deadline wait's, from its trigger's kwargs
    deadline_ended_at: float | None = None  # when its task left `deferred`
    runs_running_at_kill: int = 0


@dataclass
class Ended:
    """The remote runs of the events scenario and what the test saw while they ran."""

    history: str = ""  # ended before any trigger looked: never announced
    first: str = ""  # ends while the first triggerer holds the trigger
    second: str = ""  # created at the first triggerer's SIGKILL: ends while no triggerer holds the trigger
    cursor_stored: bool = False  # the first run is in the cursor: the kill may come
    waited: float = 0.0  # seconds the fixture waited for this scenario after every other DAG had finished
    tasks_while_running: list[str] = field(default_factory=list)  # consumer task instances seen too early


@dataclass
class FromPrefect:
    """The flow runs of the Prefect -> Airflow scenario and what the test saw while they ran."""

    api_url: str = ""
    deployment: str = ""
    server_wait: float = (
        0.0  # seconds the cluster waited for the Prefect server once its database was migrated
    )
    flow_runs: list[str] = field(default_factory=list)  # the deployment's, oldest first
    waited: float = 0.0  # seconds the fixture waited for this scenario after every other one had finished
    while_running: list[str] = field(default_factory=list)  # consumer DAG runs or tasks seen too early


@dataclass
class E2E:
    cluster: AirflowCluster
    fanout_server: ReferenceServer
    retry_server: ReferenceServer
    open_server: ReferenceServer  # no token: the basic auth and URL userinfo connections
    cc_server: ReferenceServer  # OAuth client credentials, tokens that live TOKEN_LIFETIME
    server_logs: list[str]
    restart: Restart
    ended: Ended
    from_prefect: FromPrefect
    triggers: dict[int, tuple[str, str]] = field(default_factory=dict)  # every trigger row ever seen
    events: set[str] = field(default_factory=set)  # every trigger event stored in a task's next_kwargs
    xcoms: set[str] = field(default_factory=set)  # every XCom value ever seen (some are overwritten later)
    most_triggers_at_once: int = 0
    most_deferred_at_once: int = 0
    failed_run: str = ""  # the run of rw_e2e_outcomes' wait_failed and wait_failed_soft


class _Collect(logging.Handler):
    def __init__(self, into: list[str]) -> None:
        super().__init__(logging.DEBUG)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(self.format(record))


@pytest.fixture(scope="module")
def server_logs() -> Iterator[list[str]]:
    """Everything the reference servers (uvicorn and runwatch.server, in this process) log."""
    lines: list[str] = []
    handler = _Collect(lines)
    # Each by name: Airflow's logging config stops uvicorn.error from propagating.
    loggers = [logging.getLogger(name) for name in ("uvicorn.error", "uvicorn.access", "runwatch.server")]
    for logger in loggers:
        logger.addHandler(handler)
    yield lines
    for logger in loggers:
        logger.removeHandler(handler)


def _started(server: PrefectServer) -> PrefectServer:
    server.start()
    return server


@pytest.fixture(scope="session")
def prefect_starting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Future[PrefectServer]]:
    """A real Prefect server (.venv/prefect; API only, with basic auth), starting in a thread: the e2e
    fixture waits for it only once the cluster's database is migrated, so that the two start-ups overlap.
    Only this module uses it; session-scoped, and first among the e2e fixture's arguments, so that it starts
    before the session's PostgreSQL too (which may be installed first)."""
    server = PrefectServer(tmp_path_factory.mktemp("prefect-home"))
    auth = f"{USER}:{PREFECT_CANARY}"
    server.env.update(PREFECT_SERVER_API_AUTH_STRING=auth, PREFECT_API_AUTH_STRING=auth)
    pool = ThreadPoolExecutor(1)
    try:
        yield pool.submit(_started, server)
    finally:
        pool.shutdown()  # the start ends: healthy, exited or timed out
        server.stop()


def _prefect_api(server: PrefectServer, path: str, body: dict[str, Any]) -> Any:
    response = httpx.post(f"{server.api_url}{path}", json=body, auth=(USER, PREFECT_CANARY), timeout=30)
    response.raise_for_status()
    return response.json()


@pytest.fixture(scope="module")
def e2e(
    prefect_starting: Future[PrefectServer],
    airflow_cluster_factory: Callable[..., AirflowCluster],
    server_logs: list[str],
) -> Iterator[E2E]:
    servers = [
        ReferenceServer(token=CANARY, log_level="debug"),
        ReferenceServer(token=CANARY, log_level="debug"),
        ReferenceServer(log_level="debug"),
        ReferenceServer(
            client_credentials=(CC_CLIENT, CC_CANARY), token_lifetime=TOKEN_LIFETIME, log_level="debug"
        ),
    ]
    with servers[0] as fanout, servers[1] as retry, servers[2] as open_server, servers[3] as cc:
        failed = fanout.create_run(
            script=[{"status": "FAILED", "errors": [{"message": "disk full on node 3"}]}]
        )
        env = {
            "AIRFLOW__CORE__PARALLELISM": "2",
            "AIRFLOW_CONN_RUNWATCH_DEFAULT": _conn(host=fanout.url, password=CANARY),
            "AIRFLOW_CONN_RUNWATCH_RETRY": _conn(host=retry.url, password=CANARY),
            "AIRFLOW_CONN_RUNWATCH_BASIC": _conn(
                host=open_server.url, login=USER, password=BASIC_CANARY, extra={"auth_style": "basic"}
            ),
            "AIRFLOW_CONN_RUNWATCH_USERINFO": _conn(
                host=open_server.url.replace("http://", f"http://{USER}:{URL_CANARY}@")
            ),
            "AIRFLOW_CONN_RUNWATCH_CC": _conn(
                host=cc.url,
                login=CC_CLIENT,
                password=CC_CANARY,
                extra={"auth_style": "client_credentials", "token_url": f"{cc.url}/oauth/token"},
            ),
            # Airflow's tracing on, exporting to the services' logs (its docs: [traces] otel_on and the
            # OpenTelemetry SDK's OTEL_TRACES_EXPORTER)
            "AIRFLOW__TRACES__OTEL_ON": "True",
            "OTEL_TRACES_EXPORTER": "console",
            "RW_E2E_CC_SECONDS": str(CC_SECONDS),
            "RW_E2E_RUNS": str(RUNS),
            "RW_E2E_SECONDS": str(SECONDS),
            "RW_E2E_FAILED_RUN": failed["id"],
            "RW_E2E_RESTART_RUN_SECONDS": str(RESTART_RUN_SECONDS),
            "RW_E2E_RESTART_DEADLINE_SECONDS": str(DEADLINE_SECONDS),
            "AIRFLOW_CONN_RUNWATCH_EVENTS": _conn(
                host=f"{fanout.url}/vendors/airflow", password=CANARY, extra={"profile": "airflow"}
            ),
        }
        ended = Ended(history=fanout.create_vendor_run("airflow", [{"state": "success"}])["id"])
        from_prefect = FromPrefect()

        def prefect_env() -> dict[str, str]:
            """The Prefect server, started meanwhile, and a deployment on it for rw_e2e_prefect.py."""
            began = time.monotonic()
            server = prefect_starting.result()
            from_prefect.server_wait = time.monotonic() - began
            from_prefect.api_url = server.api_url
            flow = _prefect_api(server, "/flows/", {"name": "rw-upstream"})
            body = {"name": "rw-upstream", "flow_id": flow["id"]}
            from_prefect.deployment = _prefect_api(server, "/deployments/", body)["id"]
            return {
                "RW_E2E_PREFECT_DEPLOYMENT": from_prefect.deployment,
                "AIRFLOW_CONN_RUNWATCH_PREFECT": _conn(
                    host=server.api_url, login=USER, password=PREFECT_CANARY, extra={"auth_style": "basic"}
                ),
            }

        cluster = airflow_cluster_factory(sorted(DAGS.glob("*.py")), env, prefect_env)
        result = E2E(
            cluster,
            fanout,
            retry,
            open_server,
            cc,
            server_logs,
            Restart(),
            ended,
            from_prefect,
            failed_run=failed["id"],
        )
        drive = _RestartDrive(result)
        events = _EndedDrive(result, drive)
        server = prefect_starting.result()
        flows = server.run_script(
            UPSTREAM_SCRIPT, from_prefect.deployment, str(FLOW_SECONDS), stdin=subprocess.PIPE
        )
        try:
            _drive(result, drive, events, _FromPrefectDrive(result, drive, server, flows))
        finally:
            assert flows.stdin is not None
            flows.stdin.close()  # the script's end of input: it exits
            try:
                flows.wait(60)
            except subprocess.TimeoutExpired:
                flows.kill()
                flows.wait(10)
        yield result


def _drive(e2e: E2E, drive: _RestartDrive, events: _EndedDrive, from_prefect: _FromPrefectDrive) -> None:
    """Poll the cluster and step every scenario until each is over."""
    cluster = e2e.cluster
    deadline = time.monotonic() + 600
    others_done_at: float | None = None  # every DAG but the events scenarios'
    rest_done_at: float | None = None  # every scenario but the Prefect one
    while True:
        others_done = all(cluster.dag_run_state(d) in ("success", "failed") for d in DAG_IDS)
        if others_done and others_done_at is None:
            others_done_at = time.monotonic()
        rest_done = others_done and events.done()
        if rest_done and rest_done_at is None:
            rest_done_at = time.monotonic()
        if rest_done and from_prefect.done():
            break
        if time.monotonic() > deadline:
            pytest.fail("the DAG runs did not finish:\n" + cluster.log_tail("scheduler"))
        cluster.check_alive()
        now = cluster.trigger_kwargs()
        e2e.triggers.update(now)
        e2e.most_triggers_at_once = max(e2e.most_triggers_at_once, len(now))
        deferred = cluster.query("SELECT count(*) FROM task_instance WHERE state = 'deferred'")[0][0]
        e2e.most_deferred_at_once = max(e2e.most_deferred_at_once, deferred)
        e2e.events.update(
            json.dumps(kwargs)
            for (kwargs,) in cluster.query(
                "SELECT next_kwargs FROM task_instance WHERE next_kwargs IS NOT NULL"
            )
        )
        e2e.xcoms.update(json.dumps(value) for (value,) in cluster.query("SELECT value FROM xcom"))
        drive.step()
        events.step()
        from_prefect.step()
        time.sleep(1)
    e2e.ended.waited = time.monotonic() - others_done_at if others_done_at is not None else 0.0
    e2e.from_prefect.waited = time.monotonic() - rest_done_at if rest_done_at is not None else 0.0


class _RestartDrive:
    """Steps of the triggerer HA scenario, one per poll of the fixture's loop."""

    def __init__(self, e2e: E2E) -> None:
        self.e2e = e2e
        self.cluster = e2e.cluster
        self.r = e2e.restart
        self.phase = "assign"

    def waits(self) -> dict[str, tuple[str, int | None, int | None]]:
        """rw_e2e_restart's sensors: task id -> (state, trigger id, triggerer id)."""
        rows = self.cluster.query(
            "SELECT ti.task_id, ti.state, ti.trigger_id, t.triggerer_id FROM task_instance ti "
            "LEFT JOIN trigger t ON t.id = ti.trigger_id "
            "WHERE ti.dag_id = 'rw_e2e_restart' AND ti.task_id LIKE 'wait_%'"
        )
        return {task: (state, trigger, triggerer) for task, state, trigger, triggerer in rows}

    def triggerer_jobs(self) -> list[int]:
        rows = self.cluster.query("SELECT id FROM job WHERE job_type = 'TriggererJob' ORDER BY id")
        return [job for (job,) in rows]

    def step(self) -> None:
        waits = self.waits()
        if self.phase == "assign":  # every wait deferred and held by the one triggerer
            if len(waits) == len(RESTART_WAITS) + 1 and all(
                state == "deferred" and owner is not None for state, _, owner in waits.values()
            ):
                (self.r.killed_job,) = self.triggerer_jobs()
                trigger_id = waits["wait_deadline"][1]
                assert trigger_id is not None
                self.r.deadline = _deadline(self.e2e.triggers[trigger_id][1])
                self.cluster.start_service("triggerer-2", "triggerer")
                self.phase = "second"
        elif self.phase == "second":  # the second triggerer is up; the deadline's wait has run a while
            jobs = self.triggerer_jobs()
            if (
                len(jobs) == 2
                and time.time() >= self.r.deadline - DEADLINE_SECONDS + KILL_AFTER_DEFER
                and self.e2e.ended.cursor_stored  # the events scenario's cursor is in the asset state store
            ):
                self.r.survivor_job = jobs[1]
                self.r.on_killed = {
                    task: trigger
                    for task, (_, trigger, owner) in waits.items()
                    if owner == self.r.killed_job and trigger is not None
                }
                self.r.runs_running_at_kill = sum(
                    server.get_run(run)["status"] == "RUNNING"
                    for server, run in restart_runs(self.e2e).values()
                )
                self.cluster.kill("triggerer")
                self.r.killed_at = time.time()
                self.phase = "after"
        elif self.phase == "after":
            for task, (state, _, owner) in waits.items():
                if owner is not None:
                    self.r.later_owners.setdefault(task, set()).add(owner)
                if task == "wait_deadline" and state != "deferred" and self.r.deadline_ended_at is None:
                    self.r.deadline_ended_at = time.time()
            moved = [waits[task][2] == self.r.survivor_job for task in self.r.on_killed if task in waits]
            if self.r.handed_over_at is None and moved and all(moved):
                self.r.handed_over_at = time.time()


class _EndedDrive:
    """Steps of the events scenario: a first remote run once the trigger has looked, a second one at the
    SIGKILL; and, at every step, no consumer task while a run goes on."""

    def __init__(self, e2e: E2E, restart: _RestartDrive) -> None:
        self.e2e = e2e
        self.cluster = e2e.cluster
        self.ended = e2e.ended
        self.restart = restart
        self.server = e2e.fanout_server
        self.running: dict[str, float] = {}  # run id -> when its script ends (monotonic, this process)

    def cursors(self) -> list[str]:
        rows = self.cluster.query(
            "SELECT s.value FROM asset_state_store s JOIN asset a ON a.id = s.asset_id "
            "WHERE a.name LIKE 'rw_e2e_upstream_%' AND s.key LIKE 'runwatch.ended.%'"
        )
        return [value for (value,) in rows]

    def start(self, final: str) -> str:
        script = [{"state": "running", "for": ENDED_RUN_SECONDS}, {"state": final}]
        run_id = str(self.server.create_vendor_run("airflow", script)["id"])
        self.running[run_id] = time.monotonic() + ENDED_RUN_SECONDS
        return run_id

    def still_running(self) -> list[str]:
        url = f"{self.server.url}/vendors/airflow/api/v2/dags/upstream/dagRuns"
        headers = {"Authorization": f"Bearer {CANARY}"}
        return [
            run
            for run in self.running
            if httpx.get(f"{url}/{run}", headers=headers).json()["state"] == "running"
        ]

    def step(self) -> None:
        running = self.still_running()
        if running:  # a consumer may hold only the runs that already ended
            rows = self.cluster.query(
                "SELECT dag_id, run_id FROM task_instance WHERE dag_id IN %s", tuple(ENDED_DAGS)
            )
            ended_before = len(self.running) - len(running)
            per_dag = {dag: sum(d == dag for d, _ in rows) for dag in ENDED_DAGS}
            self.ended.tasks_while_running += [
                f"{dag}: {count} task(s) while {running} ran"
                for dag, count in per_dag.items()
                if count > ended_before
            ]
        e = self.ended
        if not e.first:
            # The trigger has looked once (its baseline cursor is stored): the first run starts now.
            if self.cursors():
                e.first = self.start("success")
        elif not e.cursor_stored:
            e.cursor_stored = any(e.first in cursor for cursor in self.cursors())
        elif not e.second and self.restart.phase == "after":
            e.second = self.start("failed")

    def done(self) -> bool:
        if not self.ended.second:
            return False
        rows = self.cluster.query("SELECT dag_id, state FROM dag_run WHERE dag_id IN %s", tuple(ENDED_DAGS))
        want = {"rw_e2e_on_end": 2, "rw_e2e_on_end_too": 2, "rw_e2e_on_success": 1}
        finished = {dag: sum(d == dag and s in ("success", "failed") for d, s in rows) for dag in want}
        return finished == want


class _FromPrefectDrive:
    """Steps of the Prefect -> Airflow scenario: once the trigger has looked (its baseline cursor is stored)
    and the triggerer hand-over is over, a flow run that succeeds; once its DAG run exists, one that fails;
    and, at every step, no DAG run or task of the consumer while a flow run goes on."""

    def __init__(
        self, e2e: E2E, restart: _RestartDrive, server: PrefectServer, flows: subprocess.Popen[str]
    ) -> None:
        self.cluster = e2e.cluster
        self.p = e2e.from_prefect
        self.restart = restart
        self.server = server
        self.flows = flows  # prefect_upstream.py: one flow run per line it reads
        self.asked = 0

    def flow_runs(self) -> list[tuple[str, str | None]]:
        """The deployment's flow runs, oldest first: (id, state type)."""
        body = {
            "flow_runs": {"deployment_id": {"any_": [self.p.deployment]}},
            "sort": "EXPECTED_START_TIME_ASC",
        }
        return [
            (run["id"], run["state_type"]) for run in _prefect_api(self.server, "/flow_runs/filter", body)
        ]

    def dag_runs(self) -> list[str]:
        return [
            state
            for (state,) in self.cluster.query("SELECT state FROM dag_run WHERE dag_id = %s", PREFECT_DAG)
        ]

    def ask(self, outcome: str) -> None:
        assert self.flows.stdin is not None
        self.flows.stdin.write(f"{outcome}\n")
        self.flows.stdin.flush()
        self.asked += 1

    def step(self) -> None:
        if self.flows.poll() is not None:
            log = (self.server.home / f"{UPSTREAM_SCRIPT.stem}.log").read_text(errors="replace")
            pytest.fail(f"{UPSTREAM_SCRIPT.name} exited with {self.flows.returncode}:\n{log[-3000:]}")
        # Airflow first, then Prefect: a flow run still going at the second read was going at the first.
        dag_runs = self.dag_runs()
        [(tasks,)] = self.cluster.query("SELECT count(*) FROM task_instance WHERE dag_id = %s", PREFECT_DAG)
        runs = self.flow_runs()
        self.p.flow_runs = [run for run, _ in runs]
        ended = sum(state in PREFECT_TERMINAL for _, state in runs)
        if len(runs) > ended and (len(dag_runs) > ended or tasks > ended):
            self.p.while_running.append(
                f"{len(dag_runs)} DAG run(s) and {tasks} task(s) while {runs} went on ({ended} ended)"
            )
        if self.asked == 0:
            [(looked,)] = self.cluster.query(
                "SELECT count(*) FROM asset_state_store s JOIN asset a ON a.id = s.asset_id "
                "WHERE a.name = %s AND s.key LIKE 'runwatch.ended.%%'",
                PREFECT_ASSET,
            )
            if looked and self.restart.r.handed_over_at is not None:
                self.ask("succeed")
        elif self.asked == 1 and dag_runs:  # the first flow run's DAG run exists: the second gets its own
            self.ask("fail")

    def done(self) -> bool:
        finished = [state for state in self.dag_runs() if state in ("success", "failed")]
        return self.asked == 2 and len(finished) == 2


def restart_runs(e2e: E2E) -> dict[str, tuple[ReferenceServer, str]]:
    """rw_e2e_restart's remote runs: task id -> (its reference server, run id)."""
    [runs] = [
        v
        for task, _, key, v in e2e.cluster.xcoms("rw_e2e_restart")
        if (task, key) == ("start_runs", "return_value")
    ]
    return {
        task: (
            e2e.fanout_server
            if task in ("wait_default_succeeded", "wait_default_failed", "wait_deadline")
            else e2e.open_server,
            run,
        )
        for task, run in runs.items()
    }


def _deadline(kwargs: str) -> float:
    """The `deadline` in a trigger's stored kwargs (however Airflow's serde nests them)."""

    def find(node: Any) -> float | None:
        if isinstance(node, dict):
            if isinstance(node.get("deadline"), (int, float)):
                return float(node["deadline"])
            node = list(node.values())
        if isinstance(node, list):
            for item in node:
                found = find(item)
                if found is not None:
                    return found
        return None

    found = find(json.loads(kwargs))
    assert found is not None, kwargs
    return found


def _conn(host: str, password: str | None = None, login: str | None = None, extra: Any = None) -> str:
    conn: dict[str, Any] = {"conn_type": "runwatch", "host": host}
    if password is not None:
        conn["password"] = password
    if login is not None:
        conn["login"] = login
    if extra is not None:
        conn["extra"] = extra
    return json.dumps(conn)


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
        "SELECT EXTRACT(EPOCH FROM end_date - start_date) FROM dag_run WHERE dag_id = 'rw_e2e_fanout'"
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


def test_client_credentials_outlive_a_wait_in_the_triggerer_with_a_token_per_lifetime(e2e: E2E) -> None:
    states = {(task, index): state for task, index, state, _ in e2e.cluster.task_states("rw_e2e_outcomes")}
    assert states[("start_client_credentials", -1)] == "success"
    stats = e2e.cc_server.stats()
    [(run_id, counters)] = stats["runs"].items()
    [(begun, ended)] = e2e.cluster.query(
        "SELECT start_date, end_date FROM task_instance "
        "WHERE dag_id = 'rw_e2e_outcomes' AND task_id = 'start_client_credentials'"
    )
    took = (ended - begun).total_seconds()
    assert took >= CC_SECONDS - 1  # the task lasted many lifetimes of its tokens
    # Renewed a quarter of a lifetime early: at most one token per 1.5 s of the task, plus the first of
    # each process that holds the credential (the worker's start, the triggerer; a second triggerer if the
    # one holding the wait was SIGKILLed); never one per poll (a poll every 0.25 s); none seen expired.
    issued = stats["tokens"]["issued"]
    assert 2 <= issued <= took / (0.75 * TOKEN_LIFETIME) + 3, (issued, took)
    assert counters["GET"] >= 5 and counters["GET"] > issued, (counters, issued)
    assert stats["tokens"]["expired_seen"] == 0
    xcom = {
        key: value
        for task, _, key, value in e2e.cluster.xcoms("rw_e2e_outcomes")
        if task == "start_client_credentials"
    }
    assert xcom["return_value"]["id"] == run_id and xcom["return_value"]["status"] == "SUCCEEDED"


def _trace_ids(e2e: E2E, *tasks: str) -> set[str]:
    rows = e2e.cluster.query(
        "SELECT context_carrier FROM task_instance WHERE dag_id = 'rw_e2e_outcomes' AND task_id = ANY(%s)",
        list(tasks),
    )
    # Airflow stores it through its serializer: {"__var": {...}, "__type": "dict"}
    stored = [json.loads(value) if isinstance(value, str) else value for (value,) in rows]
    carriers = [value.get("__var", value) for value in stored]
    assert len(carriers) == len(tasks)
    return {carrier["traceparent"].split("-")[1] for carrier in carriers}


def test_every_request_carries_its_tasks_trace_context(e2e: E2E) -> None:
    # Started on a worker, waited for in the triggerer: every request in the task's trace, none without.
    [seen] = e2e.cc_server.stats()["traceparents"].values()
    [trace_id] = _trace_ids(e2e, "start_client_credentials")
    assert "" not in seen and {parent.split("-")[1] for parent in seen} == {trace_id}
    assert all(parent.endswith("-01") for parent in seen)  # sampled: Airflow's tracing is on
    # Started from the triggerer (no worker ran before the wait): the trigger took its task instance's.
    seen = e2e.fanout_server.stats()["traceparents"][e2e.failed_run]
    assert "" not in seen
    assert {parent.split("-")[1] for parent in seen} == _trace_ids(e2e, "wait_failed", "wait_failed_soft")


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


def test_a_sigkilled_triggerer_hands_every_wait_to_the_other(e2e: E2E) -> None:
    r = e2e.restart
    assert r.killed_job and r.survivor_job and r.killed_job != r.survivor_job, "the kill never happened"
    # Mid-wait: every wait sat in the first triggerer, and every remote run was still going.
    assert set(r.on_killed) == {*RESTART_WAITS, "wait_deadline"}
    assert r.runs_running_at_kill == len(RESTART_WAITS) + 1
    assert r.handed_over_at is not None, "the waits never moved to the surviving triggerer"
    for task in r.on_killed:
        owners = r.later_owners.get(task, set())
        assert r.survivor_job in owners and owners <= {r.killed_job, r.survivor_job}, (task, owners)
    # The survivor ran each trigger (its log file is named after the triggerer's job id) and fired once.
    for task in r.on_killed:
        logs = e2e.cluster.task_logs("rw_e2e_restart", task)
        assert any(name.endswith(f".trigger.{r.survivor_job}.log") for name in logs), sorted(logs)
        fired = sum(text.count("Trigger fired event") for text in logs.values())
        assert fired == 1, (task, fired)
    print(
        f"\ntriggerer {r.killed_job} SIGKILLed with {len(r.on_killed)} waits; triggerer {r.survivor_job} "
        f"held them all {r.handed_over_at - r.killed_at:.0f}s later "
        f"(health check threshold {HEALTH_CHECK_THRESHOLD}s)"
    )


def test_each_interrupted_wait_ends_once_with_its_runs_outcome(e2e: E2E) -> None:
    cluster = e2e.cluster
    states = {task: (state, tries) for task, _, state, tries in cluster.task_states("rw_e2e_restart")}
    runs = restart_runs(e2e)
    finals = {
        task: value
        for task, _, key, value in cluster.xcoms("rw_e2e_restart")
        if key == "return_value" and task != "start_runs"
    }
    for task in RESTART_WAITS:
        server, run_id = runs[task]
        if task.endswith("_succeeded"):
            assert states[task] == ("success", 1), task
            assert (finals[task]["id"], finals[task]["status"]) == (run_id, "SUCCEEDED")
        else:
            assert states[task] == ("failed", 1), task
            assert task not in finals
            log = "".join(cluster.task_logs("rw_e2e_restart", task).values())
            assert "RemoteRunFailed" in log and f"{task}: out of memory" in log, task
    # Never cancelled: not on the kill, not on the hand-over, not on the deadline.
    for task, (server, run_id) in runs.items():
        assert server.stats()["runs"][run_id]["cancel"] == 0, task
    assert cluster.dag_run_state("rw_e2e_restart") == "failed"  # the failed runs' sensors failed it


def test_a_deadline_survives_the_hand_over(e2e: E2E) -> None:
    """The deadline is absolute in the trigger's kwargs: the survivor ends the wait at that time, with
    WaitTimeout, not a full timeout after it picked the wait up (at least KILL_AFTER_DEFER + the health
    check threshold later)."""
    r = e2e.restart
    cluster = e2e.cluster
    assert r.handed_over_at is not None and r.handed_over_at < r.deadline  # picked up before it passed
    assert r.deadline_ended_at is not None
    late = r.deadline_ended_at - r.deadline
    print(
        f"\nthe wait's deadline passed {r.deadline - r.killed_at:.0f}s after the kill; it ended {late:+.1f}s from it"
    )
    assert -2.0 <= late <= KILL_AFTER_DEFER  # a deadline restarted at the hand-over would be 30s+ late
    [(_, _, state, tries)] = [t for t in cluster.task_states("rw_e2e_restart") if t[0] == "wait_deadline"]
    assert (state, tries) == ("failed", 1)
    log = "".join(cluster.task_logs("rw_e2e_restart", "wait_deadline").values())
    assert "RemoteWaitTimeout" in log and "gave up waiting" in log


def _places(e2e: E2E) -> dict[str, list[str]]:
    """Everywhere a secret could end up: what Airflow stored and logged, and what the servers logged."""
    cluster = e2e.cluster
    return {
        "trigger kwargs": [kwargs for _, kwargs in e2e.triggers.values()],
        "trigger events": sorted(e2e.events),
        "asset events": [json.dumps(extra) for (extra,) in cluster.query("SELECT extra FROM asset_event")],
        "XCom": sorted(e2e.xcoms | {json.dumps(v) for d in DAG_IDS for *_, v in cluster.xcoms(d)}),
        "logs": [cluster.all_logs()],
        "reference server logs": e2e.server_logs,
    }


def _leaks(e2e: E2E, secrets: dict[str, list[str]]) -> list[str]:
    return [
        f"the {form} in {place}: ...{item[max(0, item.index(text) - 120) : item.index(text) + 40]}..."
        for place, items in _places(e2e).items()
        for item in items
        for form, texts in secrets.items()
        for text in texts
        if text in item
    ]


def test_no_secret_leaves_the_connections(e2e: E2E) -> None:
    places = _places(e2e)
    # Positive controls: each place was read and holds what it should.
    assert len(e2e.triggers) >= RUNS and {classpath for classpath, _ in e2e.triggers.values()} == {
        "runwatch_airflow.triggers.runwatch.RunStatusTrigger",
        ENDED_TRIGGER,
    }
    assert any('"SUCCEEDED"' in event for event in places["asset events"])
    assert any(re.search(r"outcome\W+failed\W", event) for event in places["trigger events"])
    assert any("SUCCEEDED" in value for value in places["XCom"])
    assert "is SUCCEEDED" in places["logs"][0]  # the trigger and task logs were read
    assert e2e.server_logs  # the servers logged (at debug level)
    assert not _leaks(e2e, SECRETS), _leaks(e2e, SECRETS)[:3]


def test_no_url_userinfo_password_leaves_the_connection(e2e: E2E) -> None:
    """The userinfo connection's waits ran (their runs are in the open server) and its password is
    nowhere. Depends on the core redacting URL userinfo wherever a URL is shown or stored (issue 7,
    fault 10): the run link pushed to XCom and the URLs in messages are built from the connection's host."""
    runs = restart_runs(e2e)
    for task in ("wait_userinfo_succeeded", "wait_userinfo_failed"):
        server, run_id = runs[task]
        assert server.stats()["runs"][run_id]["GET"] > 0
    assert not _leaks(e2e, USERINFO_SECRETS), _leaks(e2e, USERINFO_SECRETS)[:3]


def test_a_dag_runs_once_per_remote_run_that_ends_and_has_no_task_while_it_runs(e2e: E2E) -> None:
    cluster, ended = e2e.cluster, e2e.ended
    # What each consumer DAG was started for, read from its triggering_asset_events.
    seen = {
        dag: sorted(
            (status["id"], status["status"])
            for task, _, key, statuses in cluster.xcoms(dag)
            if (task, key) == ("record", "return_value")
            for status in statuses
        )
        for dag in ENDED_DAGS
    }
    every = sorted([(ended.first, "SUCCEEDED"), (ended.second, "FAILED")])
    succeeded = [(ended.first, "SUCCEEDED")]
    assert seen == {"rw_e2e_on_end": every, "rw_e2e_on_end_too": every, "rw_e2e_on_success": succeeded}
    # One DAG run per run that ended (they ended far apart), started by the asset, each with one event.
    for dag, outcomes in ENDED_DAGS.items():
        runs = cluster.query("SELECT run_type, state FROM dag_run WHERE dag_id = %s", dag)
        assert sorted(runs) == [("asset_triggered", "success")] * (2 if outcomes == "any" else 1), (dag, runs)
    # Nothing while the remote runs went on; nothing for the run that had ended before anyone looked.
    assert ended.tasks_while_running == []
    assert all(
        ended.history not in json.dumps(extra) for (extra,) in cluster.query("SELECT extra FROM asset_event")
    )
    # The payload is the whole final status, as the trigger read it.
    [[first]] = [v for task, _, key, v in cluster.xcoms("rw_e2e_on_success") if key == "return_value"]
    assert (first["raw_status"], first["phase"]) == ("success", "TERMINAL")
    assert first["url"].endswith(f"/vendors/airflow/api/v2/dags/upstream/dagRuns/{ended.first}")
    # Two assets with equal watchers: one trigger row, one poll; the successes-only watcher has its own row.
    watchers = dict(
        cluster.query("SELECT a.name, w.trigger_id FROM asset_watcher w JOIN asset a ON a.id = w.asset_id")
    )
    assert watchers["rw_e2e_upstream_ended"] == watchers["rw_e2e_upstream_ended_too"]
    assert watchers["rw_e2e_upstream_succeeded"] != watchers["rw_e2e_upstream_ended"]
    print(f"\nthe events scenario kept the deployment up {ended.waited:.0f}s after every other DAG had ended")


def test_a_run_that_ends_while_no_triggerer_holds_the_trigger_is_announced_once_after(e2e: E2E) -> None:
    """The trigger was on the SIGKILLed triggerer with the first run in its stored cursor; the second run
    ended during the hand-over. The survivor read the cursor: the first run is not announced again, the
    second once."""
    cluster, ended = e2e.cluster, e2e.ended
    assert ended.cursor_stored and ended.second, "the events scenario never reached the kill"
    counts = dict(
        cluster.query(
            "SELECT a.name, count(*) FROM asset_event e JOIN asset a ON a.id = e.asset_id "
            "WHERE a.name LIKE 'rw_e2e_upstream_%' GROUP BY a.name"
        )
    )
    assert counts == {
        "rw_e2e_upstream_ended": 2,
        "rw_e2e_upstream_ended_too": 2,
        "rw_e2e_upstream_succeeded": 1,
    }
    owners = {
        triggerer
        for (triggerer,) in cluster.query(
            "SELECT t.triggerer_id FROM trigger t WHERE t.classpath = %s", ENDED_TRIGGER
        )
    }
    assert owners == {e2e.restart.survivor_job}  # the event triggers live on in the survivor


def test_a_dag_runs_once_per_prefect_flow_run_that_ends_and_has_nothing_while_it_runs(e2e: E2E) -> None:
    """Prefect -> Airflow on the real scheduler: RunEndedTrigger with the built-in `prefect` profile watches
    a deployment's flow runs on a real Prefect server; each flow run that ends schedules the DAG once."""
    cluster, p = e2e.cluster, e2e.from_prefect
    first, second = p.flow_runs
    assert p.while_running == []
    runs = cluster.query("SELECT run_type, state FROM dag_run WHERE dag_id = %s", PREFECT_DAG)
    assert sorted(runs) == [("asset_triggered", "success")] * 2, runs
    [(events,)] = cluster.query(
        "SELECT count(*) FROM asset_event e JOIN asset a ON a.id = e.asset_id WHERE a.name = %s",
        PREFECT_ASSET,
    )
    assert events == 2
    # What each DAG run was started for, read from its triggering_asset_events: one flow run each.
    started_for = [
        v for task, _, key, v in cluster.xcoms(PREFECT_DAG) if (task, key) == ("record", "return_value")
    ]
    assert sorted(len(statuses) for statuses in started_for) == [1, 1], started_for
    finals = {status["id"]: status for [status] in started_for}
    assert {run: (s["status"], s["raw_status"], s["phase"]) for run, s in finals.items()} == {
        first: ("SUCCEEDED", "COMPLETED", "TERMINAL"),
        second: ("FAILED", "FAILED", "TERMINAL"),
    }
    assert finals[first]["duration"] >= FLOW_SECONDS and finals[first]["errors"] == []
    assert "bad row 7" in finals[second]["errors"][0]["message"]
    assert finals[first]["url"] == f"{p.api_url}/flow_runs/{first}"
    # The Prefect server's password is in none of it (nor anywhere else: test_no_secret_leaves_the_connections).
    payloads = json.dumps(started_for) + json.dumps(
        [extra for (extra,) in cluster.query("SELECT extra FROM asset_event")]
    )
    assert PREFECT_CANARY not in payloads and _basic(PREFECT_CANARY) not in payloads
    print(
        f"\nthe cluster's start waited {p.server_wait:.0f}s for the Prefect server after its migration; "
        f"the Prefect scenario kept the deployment up {p.waited:.0f}s after every other one had ended"
    )
