"""What the sensor and the operator share: deferring to `RunStatusTrigger` and reading its event."""

from __future__ import annotations

import time
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, NoReturn

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowSkipException, TaskDeferralTimeout

import runwatch
from runwatch.text import inert
from runwatch_airflow import _arguments
from runwatch_airflow._connection import ProfileSpec
from runwatch_airflow._trace import task_carrier
from runwatch_airflow.exceptions import RunwatchAirflowError, for_outcome
from runwatch_airflow.hooks.runwatch import RunStatusHook
from runwatch_airflow.links import RUN_URL_KEY
from runwatch_airflow.triggers.runwatch import RunStatusTrigger, event_result, status_payload

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["DEFER_GRACE", "RemoteRunTask", "policy_dict", "profile_spec"]

DEFER_GRACE = 60.0
"""Seconds Airflow's own deferral timeout waits past our deadline: a backstop, so the trigger's typed
`WaitTimeout` (with the last status seen) normally ends the wait first."""


def policy_dict(policy: runwatch.Policy | dict[str, Any] | None) -> dict[str, Any]:
    """A policy as trigger kwargs, validated now (at DAG parse time) rather than in the triggerer."""
    if policy is None:
        return {}
    return (policy if isinstance(policy, runwatch.Policy) else runwatch.Policy.from_dict(policy)).to_dict()


def profile_spec(profile: ProfileSpec | runwatch.Profile | None) -> ProfileSpec | None:
    """A profile override as JSON-safe data (a `Profile` object becomes its dict)."""
    return profile.to_dict() if isinstance(profile, runwatch.Profile) else profile


class RemoteRunTask(BaseOperator):
    """Base of the tasks that wait for a remote run. Subclasses set the attributes below."""

    conn_id: str
    profile: ProfileSpec | None
    policy: dict[str, Any]
    cancel_on_kill: bool
    end_from_trigger: bool
    _remote_run_id: str | None = None  # the run this try waits for, for `on_kill`
    remote_run_url: str | None = None  # the link pushed by this process, for `RemoteRunLink`
    _carrier: dict[str, str] | None = None  # this try's trace context, sent with every request

    def take_carrier(self, context: Context) -> None:
        """Take the task instance's trace context, which every request of this try then carries."""
        self._carrier = task_carrier(context.get("ti"))

    @cached_property
    def hook(self) -> RunStatusHook:
        return RunStatusHook(self.conn_id, self.profile)

    def take_arguments(self) -> None:
        """Make the rendered templated fields the types they must be (native rendering gives any object).

        Raises `RunwatchArgumentError` naming a field of the wrong kind. Subclasses add their own fields.
        """
        self.conn_id = _arguments.text("conn_id", self.conn_id)
        self.profile = _arguments.profile_value(self.profile)

    def wait_seconds(self) -> float | None:
        """How long this task may wait: the shortest of the policy's timeout and the task's own limits."""
        limits = [runwatch.Policy.from_dict(self.policy).timeout]
        if self.execution_timeout is not None:
            limits.append(self.execution_timeout.total_seconds())
        found = [limit for limit in limits if limit is not None]
        return min(found) if found else None

    def make_trigger(
        self, run: str, started: runwatch.StartedRun | None = None, deadline: float | None = None
    ) -> RunStatusTrigger:
        spec = runwatch.WaitSpec(
            run=run,
            api=self.conn_id,
            profile=self.profile,
            started=started.to_dict() if started else None,
            policy=self.policy,
            deadline=deadline,
            trace=self._carrier,
        )
        return RunStatusTrigger.of_spec(
            spec, cancel_on_kill=self.cancel_on_kill, end_from_trigger=self.end_from_trigger
        )

    def defer_wait(self, context: Context, run: str, started: runwatch.StartedRun | None = None) -> NoReturn:
        """Hand the wait to the triggerer: no worker slot is held until the run ends."""
        seconds = self.wait_seconds()
        self._remote_run_id = run  # the operator passes its started run's id
        self.push_link(context, run, started.status_url if started else None)
        self.defer(
            trigger=self.make_trigger(run, started, time.time() + seconds if seconds is not None else None),
            method_name="execute_complete",
            timeout=timedelta(seconds=seconds + DEFER_GRACE) if seconds is not None else None,
        )

    def peek(self, run: str) -> runwatch.RunStatus | None:
        """One quick read before deferring (`runwatch.first_look`): a run that already ended needs no trigger.

        An answer that no wait can change (credentials refused, no such run, a bad profile or URL) ends the
        task here with its typed failure; passing trouble (network, 5xx, 429) is left to the trigger.
        """
        try:
            api = self.hook.get_api()
            status = runwatch.run_sync(runwatch.first_look(api, run, trace=self._carrier))
        except runwatch.RunwatchError as exc:
            self.raise_result(runwatch.WaitResult.of_error(exc), None)
        if status is None:
            self.log.info("could not read %s before deferring: the trigger will", run)
        return status

    def judge(self, context: Context, status: runwatch.RunStatus) -> dict[str, Any]:
        """The final status if it counts as success under the policy (XCom), else its outcome, raised."""
        self.push_link(context, status.id, status.url)
        result = runwatch.WaitResult.of_status(status, runwatch.Policy.from_dict(self.policy))
        if not result.ok:
            self.raise_result(result, status.id)
        self.log.info("run %s ended %s", inert(status.id), status.status.value)
        return status_payload(status)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Resume after the trigger: the final status (XCom `return_value`), or the outcome's exception."""
        self.take_arguments()
        self.take_carrier(context)
        try:
            result = event_result(event)
        except ValueError as exc:
            raise RunwatchAirflowError(str(exc)) from None
        run = result.status
        if result.ok and run is not None:
            return self.judge(context, run)
        if run is not None:
            self.push_link(context, run.id, run.url)
        elif isinstance(run_ref := getattr(self, "run", None), str):  # a sensor's trigger never read the run
            self.push_link(context, run_ref, None)
        self.raise_result(result, run.id if run else self._remote_run_id)

    def raise_result(self, result: runwatch.WaitResult, run_id: str | None) -> NoReturn:
        """Raise a wait's outcome as its Airflow exception (a skip under `soft_fail`).

        Past our deadline, the run is cancelled first if `cancel_on_kill`.
        """
        if result.outcome == "deadline":
            self.cancel_at_deadline(run_id)
        message = inert(result.message)  # it may quote the remote, and Airflow logs it as it is
        exc = for_outcome(result.outcome)(message)
        if getattr(self, "soft_fail", False):
            raise AirflowSkipException(f"soft_fail: {message}") from exc
        raise exc

    def cancel_at_deadline(self, run_id: str | None) -> None:
        """Our deadline passed: cancel the run if `cancel_on_kill` (a timeout is a kill), in every mode.

        A cancel that fails is logged: it must not hide the timeout itself.
        """
        if not (self.cancel_on_kill and run_id):
            return
        self.log.info("deadline passed: cancelling run %s", run_id)
        try:
            self.hook.cancel_run(run_id, trace=self._carrier)
        except Exception as exc:
            self.log.warning("could not cancel run %s: %s", run_id, exc)

    def deferred_run_id(self, context: Context) -> str | None:
        """The id of the run a resumed try was waiting for (subclasses know where it is)."""
        return self._remote_run_id

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Context) -> Any:
        # Airflow's own trigger timeout (the deadline of `start_from_trigger`, or the backstop after ours)
        # fails the task without an event: the run is cancelled as at our own deadline.
        try:
            return super().resume_execution(next_method, next_kwargs, context)
        except AirflowException as exc:
            if _caused_by(exc, TaskDeferralTimeout):
                self.take_arguments()
                self.take_carrier(context)
                self.cancel_at_deadline(self.deferred_run_id(context))
            raise

    def push_link(self, context: Context, run: str, status_url: str | None) -> None:
        """Push the run's URL to XCom for the "Remote run" link. A link never fails the task."""
        try:
            link = self.hook.run_link(run, status_url)
            if link:
                context["ti"].xcom_push(key=RUN_URL_KEY, value=link)
                self.remote_run_url = link
        except Exception as exc:
            self.log.warning("no link to run %s: %s", run, exc)

    def on_kill(self) -> None:
        """A user killed the task while it waited on a worker: cancel the run if `cancel_on_kill`."""
        if self.cancel_on_kill and self._remote_run_id:
            self.log.info("task killed: cancelling run %s", self._remote_run_id)
            self.hook.cancel_run(self._remote_run_id, trace=self._carrier)


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    seen: BaseException | None = exc
    for _ in range(8):  # a short chain: skip <- sensor timeout <- deferral timeout
        if seen is None:
            return False
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__
    return False
