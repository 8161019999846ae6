"""`StartRunOperator`: start a remote run exactly once per task, then wait for it like the sensor."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

import runwatch
from runwatch_airflow import _arguments
from runwatch_airflow._connection import ProfileSpec
from runwatch_airflow._waiting import RemoteRunTask, policy_dict, profile_spec
from runwatch_airflow.hooks.runwatch import RunStatusHook
from runwatch_airflow.links import RemoteRunLink
from runwatch_airflow.triggers.runwatch import status_payload

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["RUN_ID_KEY", "StartRunOperator", "default_idempotency_key"]

RUN_ID_KEY = "run_id"
"""The XCom key of the started run's id, pushed as soon as the run exists."""


def default_idempotency_key(context: Context) -> str:
    """The same key for every try of one task instance: `airflow:<dag>:<task>:<dag run>:<map index>`."""
    ti = context["ti"]
    raw = f"airflow:{ti.dag_id}:{ti.task_id}:{ti.run_id}:{ti.map_index}"
    return quote(raw, safe=":+-_.~@/")


class StartRunOperator(RemoteRunTask):
    """Start a remote run through the profile's start endpoint, then wait for it to end.

    The start carries an idempotency key built from the dag id, task id, dag run id and map index (not
    the try number), so a retry after a lost worker finds the live run it already started instead of
    starting a second one; a retry after the remote run ended unsuccessfully starts a new run (the key
    moves on a generation, `runwatch.start_attempt`). Pass `idempotency_key` (templated) to choose
    another scope, e.g. `"{{ ti.try_number }}"` in it for one run per try.

    :param body: the start request's JSON body. Templated.
    :param conn_id: a connection of type `runwatch`. Templated.
    :param profile: overrides the connection's profile. Templated.
    :param policy: a `runwatch.Policy` (or its dict) for the wait.
    :param timeout: the longest wait (seconds or timedelta); `execution_timeout` and the policy's timeout
        bound it too. Enforced while deferred, where Airflow itself does not apply `execution_timeout`.
    :param wait_for_completion: wait for the run to end (default); else return once it is started.
    :param deferrable: wait in the triggerer (the default; no worker slot is held).
    :param cancel_on_kill: cancel the remote run when a user kills the task or the wait's deadline passes.
    :param end_from_trigger: on success the triggerer ends the task itself (final status to XCom): no
        worker slot is taken to resume it. Failures always resume on a worker.

    XCom: `run_id` at once, `run_url` for the "Remote run" link, and the final status as `return_value`.
    """

    template_fields: Sequence[str] = ("body", "conn_id", "profile", "idempotency_key")
    template_fields_renderers: ClassVar[dict[str, str]] = {"body": "json", "profile": "json"}
    operator_extra_links = (RemoteRunLink(),)
    ui_color = "#d9ecf2"

    def __init__(
        self,
        *,
        body: Mapping[str, Any] | None = None,
        conn_id: str = RunStatusHook.default_conn_name,
        profile: ProfileSpec | runwatch.Profile | None = None,
        policy: runwatch.Policy | dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        timeout: float | timedelta | None = None,
        wait_for_completion: bool = True,
        deferrable: bool = True,
        cancel_on_kill: bool = False,
        end_from_trigger: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.body = body
        self.conn_id = conn_id
        self.profile = profile_spec(profile)
        self.policy = policy_dict(policy)
        self.idempotency_key = idempotency_key
        self.timeout = timeout.total_seconds() if isinstance(timeout, timedelta) else timeout
        self.wait_for_completion = wait_for_completion
        self.deferrable = deferrable
        self.cancel_on_kill = cancel_on_kill
        self.end_from_trigger = end_from_trigger

    def wait_seconds(self) -> float | None:
        limits = [limit for limit in (self.timeout, super().wait_seconds()) if limit is not None]
        return min(limits) if limits else None

    def take_arguments(self) -> None:
        super().take_arguments()
        self.body = _arguments.json_object("body", self.body)
        if self.idempotency_key is not None:
            self.idempotency_key = _arguments.text("idempotency_key", self.idempotency_key)

    def execute(self, context: Context) -> dict[str, Any]:
        self.take_arguments()
        self.take_carrier(context)
        started = self.start(context)
        if not self.wait_for_completion:
            return status_payload(started.status)
        if started.status.is_terminal:
            return self.judge(context, started.status)
        if self.deferrable:
            self.defer_wait(context, started.id, started)
        return self._wait_here(started)

    def start(self, context: Context) -> runwatch.StartedRun:
        """Start the run (or find the one an earlier try started and may carry on with) and push its id."""
        key = self.idempotency_key or default_idempotency_key(context)
        attempt = runwatch.start_attempt(
            self.hook.get_api(),
            self.body,
            idempotency_key=key,
            attempt=max(1, context["ti"].try_number),
            policy=runwatch.Policy.from_dict(self.policy),
            trace=self._carrier,
        )
        started = runwatch.run_sync(attempt)
        self._remote_run_id = started.id
        verb = "found again" if started.replayed else "started"
        self.log.info("run %s %s (idempotency key %s)", started.id, verb, key)
        context["ti"].xcom_push(key=RUN_ID_KEY, value=started.id)
        self.push_link(context, started.id, started.status_url)
        return started

    def deferred_run_id(self, context: Context) -> str | None:
        ti = context["ti"]
        run_id = ti.xcom_pull(task_ids=ti.task_id, key=RUN_ID_KEY, map_indexes=ti.map_index)
        return str(run_id) if run_id is not None else None

    def _wait_here(self, started: runwatch.StartedRun) -> dict[str, Any]:
        """The blocking wait, on this worker (deferrable=False)."""
        seconds = self.wait_seconds()
        policy = runwatch.Policy.from_dict(self.policy)
        if seconds is not None:
            policy = policy.replace(timeout=seconds)
        try:
            status = runwatch.wait_for_run_sync(
                self.hook.get_api(), started, policy=policy, trace=self._carrier
            )
        except runwatch.RunwatchError as exc:
            self.raise_outcome(type(exc).__name__, str(exc), started.id)
        return status_payload(status)
