"""How each vendor's run API looks on the wire: paths, payloads, time formats, error bodies, rate limits.

Facts from each vendor's public API description (the same sources as the built-in profiles name). A run's
state is written in the profile's own notation: the vendor's word, or `word/detail` for two-field vocabularies
(`completed/success`), so that a test scripts a run with the words a profile maps.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import formatdate
from typing import Any

__all__ = ["VENDORS", "Times", "Vendor"]


@dataclass(frozen=True)
class Times:
    """A vendor run's moments, as Unix seconds; None where it has not happened."""

    created: float
    updated: float
    started: float | None
    ended: float | None
    now: float


def _iso(t: float | None, digits: int = 0, z: bool = True) -> str | None:
    """ISO 8601 in UTC with `digits` fractional digits (0-9), `Z` or `+00:00`."""
    if t is None:
        return None
    whole = math.floor(t)
    text = datetime.fromtimestamp(whole, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    if digits:
        text += "." + f"{t - whole:.9f}"[2 : 2 + digits]
    return text + ("Z" if z else "+00:00")


def _split(word: str) -> tuple[str, str | None]:
    head, _, detail = word.partition("/")
    return head, detail or None


@dataclass(frozen=True)
class Vendor:
    """One vendor's run API, as the vendor mode serves it."""

    name: str
    id_kind: str  # "int", "uuid" or "name": how the vendor's run ids look
    status_path: str  # a Starlette path with {run_id} (or none: Databricks reads ?run_id=)
    render: Callable[[str, str, Times, dict[str, Any]], Any]  # (run id, word, times, run options) -> payload
    terminal: Callable[[str], bool]
    error: Callable[[int, str], tuple[Any, str]]  # (status, message) -> (body, content type)
    rate_limited: Callable[[float], tuple[int, dict[str, str]]]  # now -> (status, headers)
    wrap_list: Callable[[list[Any]], Any] | None = None  # None: the vendor has no list endpoint
    list_method: str = "GET"
    list_path: str | None = None
    cancel_method: str | None = None
    cancel_path: str | None = None
    cancel_to: tuple[str, ...] = ()  # the words a cancelled run moves through (the last is held)
    cancel_body: Callable[[Any, str], bool] | None = None  # does the cancel request's body name this run?
    active_words: frozenset[str] = field(default_factory=frozenset)  # the run has started (for started_at)
    retry_after_while_running: bool = False  # Azure's status monitors send Retry-After until done
    # A start route (POST) that makes a run with `start_script` and answers (status, headers, body), given
    # the new run's id, the vendor's base URL and the request's JSON body.
    start_path: str | None = None
    start_script: tuple[tuple[str, float | None], ...] = ()
    start_answer: Callable[[str, str, Any], tuple[int, dict[str, str], Any]] | None = None


JSON = "application/json"


def _json_error(body: Callable[[int, str], Any]) -> Callable[[int, str], tuple[Any, str]]:
    return lambda status, message: (body(status, message), JSON)


def _retry_after_429(now: float) -> tuple[int, dict[str, str]]:
    return 429, {"retry-after": "1"}


def _no_hint_429(now: float) -> tuple[int, dict[str, str]]:
    return 429, {}


# ------------------------------------------------------------------------------------------- GitHub Actions


def _github(run_id: str, word: str, t: Times, opts: dict[str, Any]) -> Any:
    status, conclusion = _split(word)
    return {
        "id": int(run_id),
        "name": "CI",
        "run_attempt": 1,
        "status": status,
        "conclusion": conclusion,
        "created_at": _iso(t.created),
        "updated_at": _iso(t.updated),
        "run_started_at": _iso(t.started or t.created),
        "html_url": f"https://github.com/octo/repo/actions/runs/{run_id}",
    }


def _github_limited(now: float) -> tuple[int, dict[str, str]]:
    # The primary limit: 403 with the quota spent and a Unix reset time.
    return 403, {
        "x-ratelimit-limit": "5000",
        "x-ratelimit-remaining": "0",
        "x-ratelimit-used": "5000",
        "x-ratelimit-reset": str(math.ceil(now) + 1),
        "x-ratelimit-resource": "core",
    }


def _github_dispatched(run_id: str, base_url: str, body: Any) -> tuple[int, dict[str, str], Any]:
    # A workflow dispatch answers 204 and nothing else, unless asked for the run (since February 2026).
    if not (isinstance(body, dict) and body.get("return_run_details") is True):
        return 204, {}, None
    return (
        200,
        {},
        {
            "workflow_run_id": int(run_id),
            "run_url": f"{base_url}/repos/octo/repo/actions/runs/{run_id}",
            "html_url": f"https://github.com/octo/repo/actions/runs/{run_id}",
        },
    )


GITHUB = Vendor(
    name="github-actions",
    id_kind="int",
    status_path="/repos/{owner}/{repo}/actions/runs/{run_id}",
    render=_github,
    terminal=lambda word: word.startswith("completed"),
    error=_json_error(
        lambda status, message: {
            "message": message,
            "documentation_url": "https://docs.github.com/rest",
            "status": str(status),
        }
    ),
    rate_limited=_github_limited,
    wrap_list=lambda runs: {"total_count": len(runs), "workflow_runs": runs},
    list_method="GET",
    list_path="/repos/{owner}/{repo}/actions/runs",
    cancel_method="POST",
    cancel_path="/repos/{owner}/{repo}/actions/runs/{run_id}/cancel",
    cancel_to=("completed/cancelled",),
    active_words=frozenset({"in_progress", "waiting"}),
    start_path="/repos/{owner}/{repo}/actions/workflows/{workflow}/dispatches",
    start_script=(("queued", 0.1), ("in_progress", 0.3), ("completed/success", None)),
    start_answer=_github_dispatched,
)

# ------------------------------------------------------------------------------------------------ Databricks

# The deprecated result_state a termination code reads as (API 2.2 serves both).
_RESULT_OF_CODE = {
    "SUCCESS": "SUCCESS",
    "SUCCESS_WITH_FAILURES": "SUCCESS_WITH_FAILURES",
    "USER_CANCELED": "CANCELED",
    "CANCELED": "CANCELED",
    "DISABLED": "DISABLED",
}
_TYPE_OF_CODE = {"SUCCESS": "SUCCESS", "SUCCESS_WITH_FAILURES": "SUCCESS", "INTERNAL_ERROR": "INTERNAL_ERROR"}


def _databricks(run_id: str, word: str, t: Times, opts: dict[str, Any]) -> Any:
    state, detail = _split(word)
    message = opts.get("message", "")

    def ms(v: float | None) -> int:
        return 0 if v is None else int(v * 1000)  # Databricks writes 0 for "not yet"

    payload: dict[str, Any] = {
        "run_id": int(run_id),
        "job_id": 11,
        "run_name": "nightly",
        "start_time": ms(t.created),
        "end_time": ms(t.ended),
        "run_duration": ms(t.ended) - ms(t.created) if t.ended else 0,
        "run_page_url": f"https://example.cloud.databricks.com/#job/11/run/{run_id}",
        "cluster_instance": {"cluster_id": "0923-164208-meows279"},
    }
    if opts.get("variant", "v2") == "v1":  # the deprecated fields alone, as API 2.0/2.1 answers
        payload["state"] = {"life_cycle_state": state, "state_message": message}
        if detail is not None:
            payload["state"]["result_state"] = detail
        return payload
    payload["status"] = {"state": state}
    legacy: dict[str, Any] = {"life_cycle_state": "WAITING_FOR_RETRY" if state == "WAITING" else state}
    if detail is not None:
        payload["status"]["termination_details"] = {
            "code": detail,
            "type": _TYPE_OF_CODE.get(detail, "CLIENT_ERROR"),
            "message": message,
        }
        legacy["result_state"] = _RESULT_OF_CODE.get(detail, "FAILED")
        legacy["state_message"] = message
    payload["state"] = legacy
    return payload


def _databricks_cancel_names(body: Any, run_id: str) -> bool:
    # runs/cancel takes the run id as a JSON integer.
    return isinstance(body, dict) and type(body.get("run_id")) is int and str(body["run_id"]) == run_id


DATABRICKS = Vendor(
    name="databricks",
    id_kind="int",
    status_path="/api/2.2/jobs/runs/get",
    render=_databricks,
    terminal=lambda word: _split(word)[0] in ("TERMINATED", "SKIPPED", "INTERNAL_ERROR"),
    error=_json_error(
        lambda status, message: {
            "error_code": "RESOURCE_DOES_NOT_EXIST" if status == 404 else "REQUEST_LIMIT_EXCEEDED",
            "message": message,
        }
    ),
    rate_limited=_no_hint_429,
    wrap_list=lambda runs: {"runs": runs, "has_more": False},
    list_method="GET",
    list_path="/api/2.2/jobs/runs/list",
    cancel_method="POST",
    cancel_path="/api/2.2/jobs/runs/cancel",
    cancel_to=("TERMINATING", "TERMINATED/USER_CANCELED"),
    cancel_body=_databricks_cancel_names,
    active_words=frozenset({"RUNNING", "TERMINATING", "WAITING", "WAITING_FOR_RETRY"}),
)

# ------------------------------------------------------------------------------------------------- dbt Cloud

_DBT_HUMAN = {
    "1": "Queued",
    "2": "Starting",
    "3": "Running",
    "10": "Success",
    "20": "Error",
    "30": "Cancelled",
}


def _dbt_time(t: float | None) -> str | None:
    # dbt Cloud writes "2026-01-01 10:00:00.123456+00:00".
    text = _iso(t, 6, z=False)
    return None if text is None else text.replace("T", " ")


def _dbt(run_id: str, word: str, t: Times, opts: dict[str, Any]) -> Any:
    code = int(word) if word.isdigit() else word
    return {
        "status": {"code": 200, "is_success": True, "user_message": "Success!", "developer_message": ""},
        "data": {
            "id": int(run_id),
            "account_id": 7,
            "job_definition_id": 3,
            "status": code,
            "status_humanized": _DBT_HUMAN.get(word, word),
            "status_message": opts.get("message") if word == "20" else None,
            "in_progress": word in ("1", "2", "3"),
            "is_complete": word in ("10", "20", "30"),
            "created_at": _dbt_time(t.created),
            "updated_at": _dbt_time(t.updated),
            "started_at": _dbt_time(t.started),
            "finished_at": _dbt_time(t.ended),
            "href": f"https://cloud.getdbt.com/deploy/7/projects/1/runs/{run_id}/",
        },
    }


DBT_CLOUD = Vendor(
    name="dbt-cloud",
    id_kind="int",
    status_path="/api/v2/accounts/{account_id}/runs/{run_id}/",
    render=_dbt,
    terminal=lambda word: word in ("10", "20", "30"),
    error=_json_error(
        lambda status, message: {
            "status": {"code": status, "is_success": False, "user_message": message, "developer_message": ""},
            "data": None,
        }
    ),
    rate_limited=_no_hint_429,
    wrap_list=lambda runs: {
        "status": {"code": 200, "is_success": True, "user_message": "Success!", "developer_message": ""},
        "data": [run["data"] for run in runs],
        "extra": {"pagination": {"count": len(runs), "total_count": len(runs)}},
    },
    list_method="GET",
    list_path="/api/v2/accounts/{account_id}/runs/",
    cancel_method="POST",
    cancel_path="/api/v2/accounts/{account_id}/runs/{run_id}/cancel/",
    cancel_to=("30",),
    active_words=frozenset({"3"}),
)

# --------------------------------------------------------------------------------------------------- Airflow


def _airflow(run_id: str, word: str, t: Times, opts: dict[str, Any]) -> Any:
    return {
        "dag_run_id": run_id,
        "dag_id": "etl",
        "logical_date": _iso(t.created, 6),
        "queued_at": _iso(t.created, 6),
        "start_date": _iso(t.started, 6),
        "end_date": _iso(t.ended, 6),
        "duration": None if t.ended is None or t.started is None else t.ended - t.started,
        "run_after": _iso(t.created, 6),
        "run_type": "manual",
        "state": word,
        "triggered_by": "rest_api",
        "conf": {},
        "note": None,
    }


def _airflow_cancel_names(body: Any, run_id: str) -> bool:
    return isinstance(body, dict) and body.get("state") == "failed"


AIRFLOW = Vendor(
    name="airflow",
    id_kind="name",
    status_path="/api/v2/dags/{dag_id}/dagRuns/{run_id}",
    render=_airflow,
    terminal=lambda word: word in ("success", "failed"),
    error=_json_error(lambda status, message: {"detail": message}),
    rate_limited=_retry_after_429,
    wrap_list=lambda runs: {"dag_runs": runs, "total_entries": len(runs)},
    list_method="POST",
    list_path="/api/v2/dags/~/dagRuns/list",
    cancel_method="PATCH",
    cancel_path="/api/v2/dags/{dag_id}/dagRuns/{run_id}",
    cancel_to=("failed",),
    cancel_body=_airflow_cancel_names,
    active_words=frozenset({"running"}),
)

# --------------------------------------------------------------------------------------------------- Prefect


def _prefect(run_id: str, word: str, t: Times, opts: dict[str, Any]) -> Any:
    kind, name = _split(word)
    name = name or kind.title()
    message = opts.get("message") if kind in ("FAILED", "CRASHED", "CANCELLED") else None
    return {
        "id": run_id,
        "name": "wise-fox",
        "flow_id": "3c1d1c1e-0000-4000-8000-000000000001",
        "deployment_id": "3c1d1c1e-0000-4000-8000-000000000002",
        "state_type": kind,
        "state_name": name,
        "state": {"type": kind, "name": name, "timestamp": _iso(t.updated, 6), "message": message},
        "created": _iso(t.created, 6),
        "updated": _iso(t.updated, 6),
        "start_time": _iso(t.started, 6),
        "end_time": _iso(t.ended, 6),
        "total_run_time": 0.0 if t.started is None else (t.ended or t.now) - t.started,
    }


def _prefect_cancel_names(body: Any, run_id: str) -> bool:
    return (
        isinstance(body, dict)
        and isinstance(body.get("state"), dict)
        and body["state"].get("type") == "CANCELLING"
    )


PREFECT = Vendor(
    name="prefect",
    id_kind="uuid",
    status_path="/flow_runs/{run_id}",
    render=_prefect,
    terminal=lambda word: _split(word)[0] in ("COMPLETED", "FAILED", "CANCELLED", "CRASHED"),
    error=_json_error(lambda status, message: {"detail": message}),
    rate_limited=_retry_after_429,
    wrap_list=lambda runs: runs,
    list_method="POST",
    list_path="/flow_runs/filter",
    cancel_method="POST",
    cancel_path="/flow_runs/{run_id}/set_state",
    cancel_to=("CANCELLING", "CANCELLED"),
    cancel_body=_prefect_cancel_names,
    active_words=frozenset({"RUNNING", "PAUSED", "CANCELLING"}),
)

# ------------------------------------------------------------------------------------------------- Azure LRO


def _azure_error(status: int, message: str) -> Any:
    code = {404: "NotFound", 429: "TooManyRequests", 400: "MissingApiVersionParameter"}.get(status, "Error")
    return {"error": {"code": code, "message": message}}


def _azure_lro(run_id: str, word: str, t: Times, opts: dict[str, Any]) -> Any:
    payload: dict[str, Any] = {
        "id": f"/subscriptions/sub-1/providers/Microsoft.Example/locations/westeurope/operations/{run_id}",
        "name": run_id,
        "status": word,
        "startTime": _iso(t.created, 7),
    }
    if t.ended is not None:
        payload["endTime"] = _iso(t.ended, 7)
    if word == "Running":
        payload["percentComplete"] = 50.0
    if word == "Failed":
        payload["error"] = {"code": "ResourceOperationFailure", "message": opts.get("message", "failed")}
    return payload


def _azure_started(run_id: str, base_url: str, body: Any) -> tuple[int, dict[str, str], Any]:
    # ARM: 202, no body; Azure-AsyncOperation names the status monitor, Location the final result.
    return (
        202,
        {
            "azure-asyncoperation": f"{base_url}/operations/{run_id}?api-version=2024-01-01",
            "location": f"{base_url}/operationresults/{run_id}?api-version=2024-01-01",
            "retry-after": "1",
        },
        None,
    )


AZURE_LRO = Vendor(
    name="azure-lro",
    id_kind="uuid",
    status_path="/operations/{run_id}",
    render=_azure_lro,
    terminal=lambda word: word.lower() in ("succeeded", "failed", "canceled"),
    error=_json_error(_azure_error),
    rate_limited=_retry_after_429,
    active_words=frozenset({"Running", "Creating", "Updating", "Deleting", "Provisioning", "Canceling"}),
    retry_after_while_running=True,
    start_path="/resources/{name}/start",
    start_script=(("NotStarted", 0.1), ("Running", 0.3), ("Succeeded", None)),
    start_answer=_azure_started,
)

# ------------------------------------------------------------------------------------------------ Google LRO

_RPC_CODE = {"CANCELLED": 1, "DEADLINE_EXCEEDED": 4, "ERROR": 13}


def _google_lro(run_id: str, word: str, t: Times, opts: dict[str, Any]) -> Any:
    done, detail = _split(word)
    payload: dict[str, Any] = {
        "name": f"projects/p1/locations/us-central1/operations/{run_id}",
        "metadata": {
            "@type": "type.googleapis.com/google.cloud.common.OperationMetadata",
            "createTime": _iso(t.created, 9),
        },
    }
    if done == "true":  # proto3 JSON leaves `done` out while it is false
        payload["done"] = True
    if detail == "RESPONSE":
        payload["response"] = {"@type": "type.googleapis.com/google.protobuf.Empty"}
    elif detail in _RPC_CODE:
        payload["error"] = {"code": _RPC_CODE[detail], "message": opts.get("message", detail.lower())}
    return payload


GOOGLE_LRO = Vendor(
    name="google-lro",
    id_kind="name",
    status_path="/{version}/projects/{project}/locations/{location}/operations/{run_id}",
    render=_google_lro,
    terminal=lambda word: word.startswith("true"),
    error=_json_error(
        lambda status, message: {
            "error": {
                "code": status,
                "message": message,
                "status": "NOT_FOUND" if status == 404 else "RESOURCE_EXHAUSTED",
            }
        }
    ),
    rate_limited=_no_hint_429,
    wrap_list=lambda runs: {"operations": runs, "nextPageToken": ""},
    list_method="GET",
    list_path="/{version}/projects/{project}/locations/{location}/operations",
    cancel_method="POST",
    cancel_path="/{version}/projects/{project}/locations/{location}/operations/{run_id}:cancel",
    cancel_to=("true/CANCELLED",),
    active_words=frozenset({"false"}),
)

# -------------------------------------------------------------------------------------------- Kubernetes Job


def _condition(kind: str, reason: str | None, message: str | None, at: str | None) -> dict[str, Any]:
    return {
        "type": kind,
        "status": "True",
        "reason": reason,
        "message": message,
        "lastProbeTime": at,
        "lastTransitionTime": at,
    }


def _kubernetes_job(run_id: str, word: str, t: Times, opts: dict[str, Any]) -> Any:
    kind, reason = _split(word)
    at = _iso(t.updated)
    status: dict[str, Any] = {}
    if kind != "Pending" and kind != "Suspended":
        status["startTime"] = _iso(t.started or t.created)
    conditions: list[dict[str, Any]] = []
    if kind == "Suspended":
        conditions.append(_condition("Suspended", "JobSuspended", "Job suspended", at))
    # From v1.31 the interim condition comes first and stays when the terminal one is added.
    if kind in ("SuccessCriteriaMet", "Complete"):
        conditions.append(
            _condition(
                "SuccessCriteriaMet", "CompletionsReached", "Reached expected number of succeeded pods", at
            )
        )
        status["succeeded"] = 1
    if kind == "Complete":
        conditions.append(
            _condition("Complete", "CompletionsReached", "Reached expected number of succeeded pods", at)
        )
        status["completionTime"] = _iso(t.ended)
    if kind in ("FailureTarget", "Failed"):
        message = opts.get("message", "Job has reached the specified backoff limit")
        conditions.append(_condition("FailureTarget", reason, message, at))
        status["failed"] = 1
        if kind == "Failed":
            conditions.append(_condition("Failed", reason, message, at))
    if kind == "Running":
        status["active"] = 1
    if kind not in (
        "Pending",
        "Suspended",
        "Running",
        "SuccessCriteriaMet",
        "Complete",
        "FailureTarget",
        "Failed",
    ):
        conditions.append(_condition(kind, reason, None, at))  # a condition type this server does not know
    if conditions:
        status["conditions"] = conditions
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": run_id, "namespace": "default", "creationTimestamp": _iso(t.created)},
        "spec": {"completions": 1, "parallelism": 1, "backoffLimit": 6},
        "status": status,
    }


def _kubernetes_status(status: int, message: str) -> Any:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": "NotFound" if status == 404 else "TooManyRequests",
        "code": status,
    }


KUBERNETES_JOB = Vendor(
    name="kubernetes-job",
    id_kind="name",
    status_path="/apis/batch/v1/namespaces/{namespace}/jobs/{run_id}",
    render=_kubernetes_job,
    terminal=lambda word: _split(word)[0] in ("SuccessCriteriaMet", "Complete", "FailureTarget", "Failed"),
    error=_json_error(_kubernetes_status),
    rate_limited=_retry_after_429,
    wrap_list=lambda runs: {"kind": "JobList", "apiVersion": "batch/v1", "metadata": {}, "items": runs},
    list_method="GET",
    list_path="/apis/batch/v1/namespaces/{namespace}/jobs",
    active_words=frozenset({"Running"}),
)

# ---------------------------------------------------------------------------------------------------- GitLab


def _gitlab(run_id: str, word: str, t: Times, opts: dict[str, Any]) -> Any:
    return {
        "id": int(run_id),
        "iid": 12,
        "project_id": 278964,
        "sha": "a91957a858320c0e17f3a0eca7cfacbff50ea29a",
        "ref": "main",
        "status": word,
        "source": "push",
        "created_at": _iso(t.created, 3),
        "updated_at": _iso(t.updated, 3),
        "started_at": _iso(t.started, 3),
        "finished_at": _iso(t.ended, 3),
        "duration": None if t.ended is None or t.started is None else int(t.ended - t.started),
        "web_url": f"https://gitlab.example.com/group/project/-/pipelines/{run_id}",
    }


def _gitlab_limited(now: float) -> tuple[int, dict[str, str]]:
    return 429, {
        "ratelimit-limit": "2000",
        "ratelimit-observed": "2001",
        "ratelimit-remaining": "0",
        "ratelimit-reset": str(math.ceil(now) + 1),
        "ratelimit-resettime": formatdate(math.ceil(now) + 1, usegmt=True),
        "retry-after": "1",
    }


GITLAB = Vendor(
    name="gitlab",
    id_kind="int",
    status_path="/api/v4/projects/{project_id}/pipelines/{run_id}",
    render=_gitlab,
    terminal=lambda word: word in ("success", "failed", "canceled", "skipped"),
    # GitLab answers a throttled request with plain text.
    error=lambda status, message: (
        ("Retry later\n", "text/plain") if status == 429 else ({"message": f"{status} {message}"}, JSON)
    ),
    rate_limited=_gitlab_limited,
    wrap_list=lambda runs: runs,
    list_method="GET",
    list_path="/api/v4/projects/{project_id}/pipelines",
    cancel_method="POST",
    cancel_path="/api/v4/projects/{project_id}/pipelines/{run_id}/cancel",
    cancel_to=("canceling", "canceled"),
    active_words=frozenset({"running", "manual", "scheduled", "waiting_for_callback", "canceling"}),
)

# ------------------------------------------------------------------------------------------------------ Argo


def _argo(run_id: str, word: str, t: Times, opts: dict[str, Any]) -> Any:
    status: dict[str, Any] = {}
    if word:
        status = {"phase": word, "startedAt": _iso(t.started or t.created), "finishedAt": _iso(t.ended)}
        status["progress"] = "1/1" if word == "Succeeded" else "0/1"
        if word in ("Failed", "Error"):
            status["message"] = opts.get("message", "child 'main' failed")
    return {
        "metadata": {"name": run_id, "namespace": "argo", "creationTimestamp": _iso(t.created)},
        "spec": {"entrypoint": "main"},
        "status": status,
    }


def _argo_stop_names(body: Any, run_id: str) -> bool:
    return isinstance(body, dict) and body.get("name") == run_id and body.get("namespace") == "argo"


ARGO = Vendor(
    name="argo",
    id_kind="name",
    status_path="/api/v1/workflows/{namespace}/{run_id}",
    render=_argo,
    terminal=lambda word: word in ("Succeeded", "Failed", "Error"),
    # grpc-gateway errors: {code (a gRPC code), message}
    error=_json_error(lambda status, message: {"code": 5 if status == 404 else 8, "message": message}),
    rate_limited=_retry_after_429,
    wrap_list=lambda runs: {"metadata": {}, "items": runs},
    list_method="GET",
    list_path="/api/v1/workflows/{namespace}",
    cancel_method="PUT",
    cancel_path="/api/v1/workflows/{namespace}/{run_id}/stop",
    cancel_to=("Failed",),
    cancel_body=_argo_stop_names,
    active_words=frozenset({"Running"}),
)

# ----------------------------------------------------------------------------------------- Azure Data Factory

_ADF_FACTORY = (
    "/subscriptions/{subscription_id}/resourceGroups/{resource_group}/providers/Microsoft.DataFactory"
    "/factories/{factory}"
)


def _adf(run_id: str, word: str, t: Times, opts: dict[str, Any]) -> Any:
    return {
        "id": "/SUBSCRIPTIONS/S1/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.DATAFACTORY/FACTORIES/F"
        f"/pipelineruns/{run_id}",
        "runId": run_id,
        "runGroupId": run_id,
        "isLatest": True,
        "pipelineName": "examplePipeline",
        "parameters": {},
        "invokedBy": {"name": "Manual", "id": "ab1", "invokedByType": "Manual"},
        "runStart": _iso(t.started, 7),
        "runEnd": _iso(t.ended, 7),
        "durationInMs": None if t.ended is None or t.started is None else int((t.ended - t.started) * 1000),
        "status": word,
        "message": opts.get("message", "") if word == "Failed" else "",
        "lastUpdated": _iso(t.updated, 7),
    }


AZURE_DATA_FACTORY = Vendor(
    name="azure-data-factory",
    id_kind="uuid",
    status_path=_ADF_FACTORY + "/pipelineruns/{run_id}",
    render=_adf,
    terminal=lambda word: word in ("Succeeded", "Failed", "Cancelled"),
    error=_json_error(
        lambda status, message: {
            "error": {"code": "EntityNotFound" if status == 404 else "TooManyRequests", "message": message}
        }
    ),
    rate_limited=_retry_after_429,
    wrap_list=lambda runs: {"value": runs, "continuationToken": None},
    list_method="POST",
    list_path=_ADF_FACTORY + "/queryPipelineRuns",
    cancel_method="POST",
    cancel_path=_ADF_FACTORY + "/pipelineruns/{run_id}/cancel",
    cancel_to=("Canceling", "Cancelled"),
    active_words=frozenset({"InProgress", "Canceling"}),
)

# --------------------------------------------------------------------------------------------------- Airbyte


def _airbyte(run_id: str, word: str, t: Times, opts: dict[str, Any]) -> Any:
    seconds = int((t.ended or t.now) - t.created)
    return {
        "jobId": int(run_id),
        "status": word,
        "jobType": "sync",
        "startTime": _iso(t.created),
        "connectionId": "9924bcd0-99be-453d-ba47-c2c9766f7da5",
        "lastUpdatedAt": _iso(t.updated),
        "duration": f"PT{seconds // 60}M{seconds % 60}S",  # ISO 8601 duration, not seconds
        "bytesSynced": 0,
        "rowsSynced": 0,
    }


AIRBYTE = Vendor(
    name="airbyte",
    id_kind="int",
    status_path="/v1/jobs/{run_id}",
    render=_airbyte,
    terminal=lambda word: word in ("succeeded", "failed", "cancelled"),
    # Airbyte's API answers errors as problem+json.
    error=lambda status, message: (
        {
            "type": "https://reference.airbyte.com/reference/errors",
            "title": "resource-not-found" if status == 404 else "rate-limited",
            "status": status,
            "detail": message,
        },
        "application/problem+json",
    ),
    rate_limited=_retry_after_429,
    wrap_list=lambda runs: {"previous": "", "next": "", "data": runs},
    list_method="GET",
    list_path="/v1/jobs",
    cancel_method="DELETE",
    cancel_path="/v1/jobs/{run_id}",
    cancel_to=("cancelled",),
    active_words=frozenset({"running", "incomplete"}),
)

VENDORS: dict[str, Vendor] = {
    v.name: v
    for v in (
        GITHUB,
        DATABRICKS,
        DBT_CLOUD,
        AIRFLOW,
        PREFECT,
        AZURE_LRO,
        GOOGLE_LRO,
        KUBERNETES_JOB,
        GITLAB,
        ARGO,
        AZURE_DATA_FACTORY,
        AIRBYTE,
    )
}
