"""Each built-in vendor profile against the reference server's vendor mode, over HTTP on 127.0.0.1.

Every state word the vendor documents maps to the right canonical state; an unknown word is a ProfileError
naming it; a lifecycle ends with the right outcome; cancel bodies, list endpoints, error bodies and rate-limit
answers are the vendor's own.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from runwatch import (
    BadStatusPayload,
    Hooks,
    Policy,
    ProfileError,
    RunApi,
    RunCancelled,
    RunFailed,
    RunNotFound,
    State,
    load_profile,
    wait_for_run,
)
from runwatch.server import ReferenceServer

Q, P, S_, R, C_ = State.QUEUED, State.PENDING, State.SCHEDULED, State.RUNNING, State.CANCELLING
OK, F, X, T, PS = State.SUCCEEDED, State.FAILED, State.CANCELLED, State.TIMED_OUT, State.PARTIAL_SUCCESS
FAST = Policy(interval=0.02, max_interval=0.1, unavailable_after=10)


@dataclass(frozen=True)
class Vendor:
    params: dict[str, str]
    words: dict[str, State]  # every state word the vendor documents, in the profile's notation
    unknown: str  # a word the vendor does not document: a ProfileError naming it
    success: tuple[str, ...]  # a lifecycle that ends well
    failure: tuple[str, ...]  # one that ends badly, with the message the profile should surface
    options: dict[str, Any] = field(default_factory=dict)
    list_params: dict[str, str] = field(default_factory=dict)
    unknown_shown: str | None = None  # how the error names it, where a detail field joins in


_DATABRICKS_CODES = {
    "SUCCESS": OK,
    "SUCCESS_WITH_FAILURES": PS,
    "USER_CANCELED": X,
    "CANCELED": X,
    "SKIPPED": X,
    "DISABLED": X,
    **dict.fromkeys(
        [
            "DRIVER_ERROR",
            "CLUSTER_ERROR",
            "REPOSITORY_CHECKOUT_FAILED",
            "INVALID_CLUSTER_REQUEST",
            "WORKSPACE_RUN_LIMIT_EXCEEDED",
            "FEATURE_DISABLED",
            "CLUSTER_REQUEST_LIMIT_EXCEEDED",
            "STORAGE_ACCESS_ERROR",
            "RUN_EXECUTION_ERROR",
            "UNAUTHORIZED_ERROR",
            "LIBRARY_INSTALLATION_ERROR",
            "MAX_CONCURRENT_RUNS_EXCEEDED",
            "MAX_SPARK_CONTEXTS_EXCEEDED",
            "RESOURCE_NOT_FOUND",
            "INVALID_RUN_CONFIGURATION",
            "CLOUD_FAILURE",
            "MAX_JOB_QUEUE_SIZE_EXCEEDED",
            "BUDGET_POLICY_LIMIT_EXCEEDED",
            "INTERNAL_ERROR",
            "BREAKING_CHANGE",
        ],
        F,
    ),
}
_DATABRICKS_RESULTS = {
    "SUCCESS": OK,
    "SUCCESS_WITH_FAILURES": PS,
    "FAILED": F,
    "TIMEDOUT": T,
    "CANCELED": X,
    "MAXIMUM_CONCURRENT_RUNS_REACHED": F,
    "EXCLUDED": X,
    "UPSTREAM_FAILED": F,
    "UPSTREAM_CANCELED": X,
    "DISABLED": X,
}

VENDORS: dict[str, Vendor] = {
    "github-actions": Vendor(
        params={"owner": "octo", "repo": "repo"},
        words={
            "requested": Q,
            "queued": Q,
            "pending": P,
            "waiting": R,
            "in_progress": R,
            "completed/success": OK,
            "completed/neutral": OK,
            "completed/failure": F,
            "completed/startup_failure": F,
            "completed/stale": F,
            "completed/action_required": F,
            "completed/cancelled": X,
            "completed/skipped": X,
            "completed/timed_out": T,
        },
        unknown="completed/exploded",
        success=("queued", "in_progress", "completed/success"),
        failure=("queued", "in_progress", "completed/failure"),
    ),
    "databricks": Vendor(
        params={},
        words={
            "QUEUED": Q,
            "PENDING": P,
            "BLOCKED": P,
            "RUNNING": R,
            "WAITING": R,
            "TERMINATING": R,
            **{f"TERMINATED/{code}": state for code, state in _DATABRICKS_CODES.items()},
        },
        unknown="TERMINATED/NEW_CODE",
        success=("PENDING", "RUNNING", "TERMINATING", "TERMINATED/SUCCESS"),
        failure=("PENDING", "RUNNING", "TERMINATED/RUN_EXECUTION_ERROR"),
        options={"message": "Task etl failed with message: division by zero"},
        list_params={"job_id": "11"},
    ),
    "dbt-cloud": Vendor(
        params={"account_id": "7"},
        words={"1": Q, "2": P, "3": R, "10": OK, "20": F, "30": X},
        unknown="40",
        success=("1", "2", "3", "10"),
        failure=("1", "3", "20"),
        options={"message": "Database Error in model orders"},
        list_params={"job_id": "3"},
    ),
    "airflow": Vendor(
        params={"dag_id": "etl"},
        words={"queued": Q, "running": R, "success": OK, "failed": F},
        unknown="restarting",
        success=("queued", "running", "success"),
        failure=("queued", "running", "failed"),
    ),
    "prefect": Vendor(
        params={},
        words={
            "SCHEDULED": S_,
            "SCHEDULED/Late": S_,
            "SCHEDULED/AwaitingRetry": R,
            "PENDING": P,
            "RUNNING": R,
            "PAUSED": R,
            "PAUSED/Suspended": R,
            "CANCELLING": C_,
            "COMPLETED": OK,
            "FAILED": F,
            "FAILED/TimedOut": T,
            "CRASHED": F,
            "CANCELLED": X,
        },
        unknown="EXPLODED",
        unknown_shown="EXPLODED/Exploded",
        success=("SCHEDULED", "PENDING", "RUNNING", "COMPLETED"),
        failure=("SCHEDULED", "RUNNING", "SCHEDULED/AwaitingRetry", "RUNNING", "FAILED"),
        options={"message": "Flow run encountered an exception: ValueError('bad row')"},
        list_params={"deployment_id": "3c1d1c1e-0000-4000-8000-000000000002"},
    ),
    "azure-lro": Vendor(
        params={"api_version": "2024-01-01"},
        words={
            "NotStarted": Q,
            "Accepted": Q,
            "Running": R,
            "Creating": R,
            "Updating": R,
            "Deleting": R,
            "Provisioning": R,
            "Canceling": C_,
            "Succeeded": OK,
            "Failed": F,
            "Canceled": X,
        },
        unknown="Exploded",
        success=("NotStarted", "Running", "Succeeded"),
        failure=("NotStarted", "Running", "Failed"),
        options={"message": "The disk quota was exceeded"},
    ),
    "google-lro": Vendor(
        params={"project": "p1", "location": "us-central1"},
        words={
            "false": R,
            "true/RESPONSE": OK,
            "true/ERROR": F,
            "true/CANCELLED": X,
            "true/DEADLINE_EXCEEDED": T,
        },
        unknown="true",  # done, with neither error nor response: the proto says this cannot happen
        success=("false", "true/RESPONSE"),
        failure=("false", "true/ERROR"),
        options={"message": "Internal error encountered"},
    ),
    "kubernetes-job": Vendor(
        params={},
        words={
            "Pending": P,
            "Suspended": Q,
            "Running": R,
            "SuccessCriteriaMet": OK,
            "Complete": OK,
            "FailureTarget/BackoffLimitExceeded": F,
            "Failed/BackoffLimitExceeded": F,
            "FailureTarget/PodFailurePolicy": F,
            "Failed/PodFailurePolicy": F,
            "FailureTarget/DeadlineExceeded": T,
            "Failed/DeadlineExceeded": T,
        },
        unknown="",  # the status is derived from conditions: see test_kubernetes_unknown_condition_types
        success=("Pending", "Running", "SuccessCriteriaMet", "Complete"),
        failure=("Pending", "Running", "FailureTarget/BackoffLimitExceeded", "Failed/BackoffLimitExceeded"),
        options={"message": "Job has reached the specified backoff limit"},
    ),
    "gitlab": Vendor(
        params={"project_id": "278964"},
        words={
            "created": Q,
            "waiting_for_resource": P,
            "preparing": P,
            "pending": P,
            "running": R,
            "manual": R,
            "scheduled": R,
            "waiting_for_callback": R,
            "canceling": C_,
            "success": OK,
            "failed": F,
            "canceled": X,
            "skipped": X,
        },
        unknown="exploded",
        success=("created", "pending", "running", "success"),
        failure=("created", "running", "failed"),
    ),
    "argo": Vendor(
        params={"namespace": "argo"},
        words={"": Q, "Pending": P, "Running": R, "Succeeded": OK, "Failed": F, "Error": F},
        unknown="Exploded",
        success=("", "Pending", "Running", "Succeeded"),
        failure=("", "Running", "Failed"),
        options={"message": "child 'main-123' failed"},
    ),
    "azure-data-factory": Vendor(
        params={"subscription_id": "s1", "resource_group": "rg", "factory": "f"},
        words={"Queued": Q, "InProgress": R, "Canceling": C_, "Succeeded": OK, "Failed": F, "Cancelled": X},
        unknown="Canceled",  # the other spelling: not what Data Factory documents
        success=("Queued", "InProgress", "Succeeded"),
        failure=("Queued", "InProgress", "Failed"),
        options={"message": "Operation on target Copy1 failed: ErrorCode=UserErrorFileNotFound"},
        list_params={"updated_after": "2026-01-01T00:00:00Z", "updated_before": "2026-12-31T00:00:00Z"},
    ),
    "airbyte": Vendor(
        params={},
        words={"pending": Q, "running": R, "incomplete": R, "succeeded": OK, "failed": F, "cancelled": X},
        unknown="exploded",
        success=("pending", "running", "succeeded"),
        failure=("pending", "running", "incomplete", "running", "failed"),
        list_params={"connection_id": "9924bcd0-99be-453d-ba47-c2c9766f7da5"},
    ),
}

WORD_CASES = [(name, word, state) for name, v in VENDORS.items() for word, state in v.words.items()]


@pytest.fixture(scope="module")
def server() -> Iterator[ReferenceServer]:
    with ReferenceServer() as srv:
        yield srv


def _api(
    server: ReferenceServer, name: str, script: list[dict[str, Any]], **options: Any
) -> tuple[RunApi, str]:
    run = server.create_vendor_run(name, script, **options)
    return RunApi(run["base_url"], name, params=VENDORS[name].params), run["id"]


async def _get(url: str) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.get(url)


def _script(words: tuple[str, ...], step: float = 0.05) -> list[dict[str, Any]]:
    return [{"state": w, "for": step} for w in words[:-1]] + [{"state": words[-1]}]


def test_every_vendor_profile_is_covered() -> None:
    from runwatch import builtin_profiles

    assert set(builtin_profiles()) == {*VENDORS, "standard"}


@pytest.mark.parametrize(("name", "word", "expected"), WORD_CASES, ids=[f"{n}:{w}" for n, w, _ in WORD_CASES])
async def test_every_documented_state_maps(
    server: ReferenceServer, name: str, word: str, expected: State
) -> None:
    api, run_id = _api(server, name, [{"state": word}], **VENDORS[name].options)
    status = await api.get_status(run_id)
    assert status.status is expected
    # A Google operation's id is its full resource name.
    assert status.id == (
        f"projects/p1/locations/us-central1/operations/{run_id}" if name == "google-lro" else run_id
    )
    if expected in (F, T) and "message" in VENDORS[name].options:
        # The failure message from the vendor's own field reaches the status.
        assert status.error_message == VENDORS[name].options["message"]


@pytest.mark.parametrize(
    "variant_word",
    [f"TERMINATED/{r}" for r in _DATABRICKS_RESULTS]
    + [
        "QUEUED",
        "PENDING",
        "BLOCKED",
        "RUNNING",
        "TERMINATING",
        "WAITING_FOR_RETRY",
        "SKIPPED",
        "INTERNAL_ERROR/FAILED",
    ],
)
async def test_databricks_older_life_cycle_state_and_result_state(
    server: ReferenceServer, variant_word: str
) -> None:
    # API 2.0/2.1 answers carry only `state`; the failure message is then state.state_message.
    api, run_id = _api(
        server, "databricks", [{"state": variant_word}], variant="v1", message="Run failed: OOM"
    )
    status = await api.get_status(run_id)
    head, _, result = variant_word.partition("/")
    expected = {
        "QUEUED": Q,
        "PENDING": P,
        "BLOCKED": P,
        "RUNNING": R,
        "TERMINATING": R,
        "WAITING_FOR_RETRY": R,
        "SKIPPED": X,
        "INTERNAL_ERROR": F,
    }.get(head) or _DATABRICKS_RESULTS[result]
    assert (status.status, status.raw_status) == (expected, variant_word)
    if expected in (F, T, PS) or head == "INTERNAL_ERROR":
        assert status.error_message == "Run failed: OOM"


async def test_databricks_prefers_the_newer_status_and_its_termination_message(
    server: ReferenceServer,
) -> None:
    # The server answers both shapes, as API 2.2 does: status.state + termination_details win.
    api, run_id = _api(server, "databricks", [{"state": "TERMINATED/DRIVER_ERROR"}], message="driver died")
    raw = (await _get(f"{api.base_url}/api/2.2/jobs/runs/get?run_id={run_id}")).json()
    assert raw["state"]["result_state"] == "FAILED" and raw["status"]["state"] == "TERMINATED"
    status = await api.get_status(run_id)
    assert (status.raw_status, status.errors[0].code, status.error_message) == (
        "TERMINATED/DRIVER_ERROR",
        "DRIVER_ERROR",
        "driver died",
    )
    assert status.ended_at is not None and status.started_at is not None and status.duration is not None
    running_api, running = _api(server, "databricks", [{"state": "RUNNING"}])
    assert (await running_api.get_status(running)).ended_at is None  # end_time 0 means "not yet"


async def test_databricks_reads_the_run_id_of_a_get_from_a_json_body(server: ReferenceServer) -> None:
    # As Airflow's async Databricks hook asks: GET runs/get with {"run_id": n} as the body.
    api, run_id = _api(server, "databricks", [{"state": "RUNNING"}])
    url = f"{api.base_url}/api/2.2/jobs/runs/get"
    async with httpx.AsyncClient() as client:
        found = await client.request("GET", url, json={"run_id": int(run_id)})
        missing = await client.request("GET", url, json={"run_id": 1})
    assert (found.status_code, found.json()["run_id"]) == (200, int(run_id))
    assert (missing.status_code, missing.json()["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")


@pytest.mark.parametrize("name", [n for n in VENDORS if VENDORS[n].unknown])
async def test_an_unknown_vendor_value_is_a_profile_error_naming_it(
    server: ReferenceServer, name: str
) -> None:
    vendor = VENDORS[name]
    api, run_id = _api(server, name, [{"state": vendor.unknown}])
    shown = vendor.unknown_shown or vendor.unknown
    with pytest.raises(ProfileError, match=f"does not map the remote status '{re.escape(shown)}'"):
        await api.get_status(run_id)


async def test_kubernetes_unknown_condition_types_do_not_decide(server: ReferenceServer) -> None:
    # The Job's status is derived from the conditions that decide it; a condition type Kubernetes adds later
    # (as it added Suspended) leaves a started Job Running rather than failing the wait.
    api, run_id = _api(server, "kubernetes-job", [{"state": "PodReplacementPending"}])
    status = await api.get_status(run_id)
    assert (status.status, status.raw_status) == (R, "Running")


async def test_kubernetes_interim_conditions_decide_before_the_terminal_ones(server: ReferenceServer) -> None:
    api, run_id = _api(
        server, "kubernetes-job", [{"state": "FailureTarget/DeadlineExceeded"}], message="too long"
    )
    status = await api.get_status(run_id)
    assert (status.status, status.raw_status, status.error_message) == (
        T,
        "FailureTarget/DeadlineExceeded",
        "too long",
    )
    api, run_id = _api(server, "kubernetes-job", [{"state": "Complete"}])
    raw = (await api.get_status(run_id)).raw_status
    assert raw == "Complete"  # Complete wins over the SuccessCriteriaMet set before it


@pytest.mark.parametrize("name", list(VENDORS))
async def test_a_lifecycle_that_succeeds(server: ReferenceServer, name: str) -> None:
    vendor = VENDORS[name]
    api, run_id = _api(server, name, _script(vendor.success), **vendor.options)
    seen: list[State] = []
    final = await wait_for_run(
        api, run_id, policy=FAST, hooks=Hooks(on_change=lambda s: seen.append(s.status))
    )
    assert final.status is OK
    assert seen[-1] is OK and seen == sorted(seen, key=lambda s: s.phase.rank)  # the phase never goes back


@pytest.mark.parametrize("name", list(VENDORS))
async def test_a_lifecycle_that_fails(server: ReferenceServer, name: str) -> None:
    vendor = VENDORS[name]
    api, run_id = _api(server, name, _script(vendor.failure), **vendor.options)
    with pytest.raises(RunFailed) as info:
        await wait_for_run(api, run_id, policy=FAST)
    assert info.value.status is not None and info.value.status.status is F
    if "message" in vendor.options:
        assert vendor.options["message"] in str(info.value)


CANCELLED_AS = {
    "github-actions": X,
    "databricks": X,
    "dbt-cloud": X,
    "airflow": F,  # Airflow has no cancel: the profile marks the run failed
    "prefect": X,
    "google-lro": X,
    "gitlab": X,
    "argo": F,  # a stopped workflow ends Failed
    "azure-data-factory": X,
    "airbyte": X,
}


@pytest.mark.parametrize("name", list(CANCELLED_AS))
async def test_cancel_speaks_the_vendors_request(server: ReferenceServer, name: str) -> None:
    # The server checks the body where the vendor wants one (Databricks: the run id as a JSON integer).
    assert load_profile(name).cancel is not None
    api, run_id = _api(server, name, _script((*VENDORS[name].success[:-1], VENDORS[name].success[-2])))
    await api.cancel_run(run_id)
    outcome = {X: RunCancelled, F: RunFailed}[CANCELLED_AS[name]]
    with pytest.raises(outcome):
        await wait_for_run(api, run_id, policy=FAST)


def test_profiles_without_cancel_or_list_are_the_apis_without_one() -> None:
    assert {n for n in VENDORS if load_profile(n).cancel is None} == {"azure-lro", "kubernetes-job"}
    assert {n for n in VENDORS if load_profile(n).list_runs is None} == {"azure-lro"}


@pytest.mark.parametrize("name", [n for n in VENDORS if n != "azure-lro"])
def test_the_list_endpoint_reads_many_runs_in_one_request(
    runwatch_server: ReferenceServer, name: str
) -> None:
    server = runwatch_server  # a server of its own: the list answers every run of the vendor
    vendor = VENDORS[name]
    ids = {server.create_vendor_run(name, [{"state": w}])["id"] for w in vendor.success[-2:]}
    profile = load_profile(name)
    spec = profile.list_runs
    assert spec is not None
    base_url = f"{server.url}/vendors/{name}"
    values = {"base_url": base_url, **vendor.params, **vendor.list_params}
    body = None if spec.body is None else profile.render_body(spec.body, **values)
    answer = httpx.request(spec.method, profile.url(spec.url, **values), json=body)
    assert answer.status_code == 200
    runs = {s.id.rsplit("/", 1)[-1]: s for s in profile.parse_list(answer.json())}  # Google: full names
    assert ids <= set(runs)
    assert {runs[i].status for i in ids} == {vendor.words[w] for w in vendor.success[-2:]}


@pytest.mark.parametrize("name", list(VENDORS))
async def test_no_such_run_answers_the_vendors_error_body(server: ReferenceServer, name: str) -> None:
    api = RunApi(f"{server.url}/vendors/{name}", name, params=VENDORS[name].params)
    with pytest.raises(RunNotFound):
        await api.get_status("4040404")


@pytest.mark.parametrize("name", list(VENDORS))
async def test_rate_limited_reads_are_waited_out(server: ReferenceServer, name: str) -> None:
    # GitHub says "slow down" with 403 and its quota headers, the others with 429 (their own body,
    # Retry-After where they send one): either way the wait pauses and goes on, never "access denied".
    vendor = VENDORS[name]
    api, run_id = _api(server, name, [{"state": vendor.success[-1]}], rate_limited=2)
    status, _, _ = server.request("GET", api.status_url(run_id).removeprefix(server.url))
    assert status in load_profile(name).rate_limit.statuses
    final = await wait_for_run(api, run_id, policy=FAST)
    assert final.status is OK


@pytest.mark.parametrize("name", ["github-actions", "gitlab"])
def test_rate_limit_answers_carry_the_headers_the_profile_names(server: ReferenceServer, name: str) -> None:
    vendor = VENDORS[name]
    api, run_id = _api(server, name, [{"state": vendor.success[-1]}], rate_limited=1)
    status, headers, _ = server.request("GET", api.status_url(run_id).removeprefix(server.url))
    spec = load_profile(name).rate_limit
    assert status in spec.statuses and spec.reset == "epoch_s"
    assert headers[spec.remaining_header] == "0"
    assert int(headers[spec.reset_header]) > 1_700_000_000  # a Unix time, not a delay


async def test_azure_monitors_send_retry_after_until_done(server: ReferenceServer) -> None:
    api, run_id = _api(server, "azure-lro", _script(("Running", "Succeeded"), step=0.2))
    url = api.status_url(run_id)
    assert (await _get(url)).headers["retry-after"] == "1"
    await wait_for_run(api, run_id, policy=FAST)
    done = await _get(url)
    assert done.json()["status"] == "Succeeded" and "retry-after" not in done.headers
    no_version = await _get(url.partition("?")[0])
    assert (
        no_version.status_code == 400 and no_version.json()["error"]["code"] == "MissingApiVersionParameter"
    )


async def test_an_azure_start_is_followed_through_azure_asyncoperation(server: ReferenceServer) -> None:
    # ARM answers 202 with no body: the monitor is in Azure-AsyncOperation (preferred over Location, whose
    # URL is the final result), and Retry-After is the first delay.
    base_url = f"{server.url}/vendors/azure-lro"
    start_url = f"{base_url}/resources/vm-1/start"
    api = RunApi(base_url, "azure-lro", params={"api_version": "2024-01-01", "start_url": start_url})
    started = await api.start_run({}, idempotency_key="k-1")
    assert started.status_url.startswith(f"{base_url}/operations/") and started.retry_after == 1
    assert started.status.status is Q
    final = await wait_for_run(api, started, policy=FAST)
    assert (final.status, final.id) == (OK, started.status_url.rsplit("/", 1)[-1].partition("?")[0])


async def test_a_github_dispatch_that_asks_for_its_run_is_followed(server: ReferenceServer) -> None:
    base_url = f"{server.url}/vendors/github-actions"
    params = {"owner": "octo", "repo": "repo", "workflow": "ci.yml"}
    api = RunApi(base_url, "github-actions", params=params)
    started = await api.start_run({"ref": "main", "return_run_details": True})
    assert started.status_url == f"{base_url}/repos/octo/repo/actions/runs/{started.id}"
    final = await wait_for_run(api, started, policy=FAST)
    assert (final.status, final.raw_status) == (OK, "completed/success")
    # Without return_run_details GitHub answers 204 and no run: a clear error, not a guess.
    with pytest.raises(BadStatusPayload, match="no run id at 'workflow_run_id'"):
        await api.start_run({"ref": "main"})


GARBAGE: list[Any] = [1e18, float("nan"), "yesterday", "", [None, 7], {"percent": "50%"}, True, 2**70]


@pytest.mark.parametrize("name", list(VENDORS))
def test_garbage_in_auxiliary_fields_of_a_vendor_payload_never_fails_a_parse(name: str) -> None:
    # Readable payloads as the vendor writes them (whatever expression reads their state), with each plain
    # auxiliary field holding garbage in turn: the id and the state still come through.
    import copy
    import re

    from runwatch.server._vendor_shapes import VENDORS as SHAPES
    from runwatch.server._vendor_shapes import Times

    profile = load_profile(name)
    fields = profile.fields.model_dump(exclude_none=True)
    deciding = fields["status"] + fields.get("status_detail", "")  # kubernetes-job's startTime decides
    plain = {
        key: expr.split(".")
        for key, expr in fields.items()
        if key not in ("id", "status", "status_detail")
        and re.fullmatch(r"\w+(\.\w+)*", expr)
        and expr not in deciding
    }
    times = Times(1_767_261_600.0, 1_767_261_700.0, 1_767_261_650.0, 1_767_262_500.0, 1_767_262_600.0)
    for word, state in VENDORS[name].words.items():
        base = SHAPES[name].render("1234", word, times, {"message": "boom"})
        expected_id = load_profile(name).parse(base).id
        for key, path in plain.items():
            for value in GARBAGE:
                payload = copy.deepcopy(base)
                target = payload
                for part in path[:-1]:
                    target = target.setdefault(part, {})
                target[path[-1]] = value
                status = profile.parse(payload)
                assert (status.id, status.status) == (expected_id, state), f"{word}: {key} = {value!r}"
