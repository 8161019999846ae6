"""What the sensor and the operator share: deferring to `RunStatusTrigger` and reading its event."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any, NoReturn

from airflow.sdk import BaseOperator

import runwatch
from runwatch_airflow._connection import ProfileSpec
from runwatch_airflow.exceptions import RunwatchAirflowError, for_outcome
from runwatch_airflow.hooks.runwatch import RunStatusHook
from runwatch_airflow.links import RUN_URL_KEY
from runwatch_airflow.triggers.runwatch import RunStatusTrigger

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
    _remote_run_id: str | None = None  # the run this try waits for, for `on_kill`

    def get_hook(self) -> RunStatusHook:
        return RunStatusHook(self.conn_id, self.profile)

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
        return RunStatusTrigger(
            run=run,
            conn_id=self.conn_id,
            started=started.to_dict() if started else None,
            policy=self.policy,
            deadline=deadline,
            cancel_on_kill=self.cancel_on_kill,
            profile=self.profile,
        )

    def defer_wait(self, context: Context, run: str, started: runwatch.StartedRun | None = None) -> NoReturn:
        """Hand the wait to the triggerer: no worker slot is held until the run ends."""
        seconds = self.wait_seconds()
        self._remote_run_id = started.id if started else run
        self.push_link(context, run, started.status_url if started else None)
        self.defer(
            trigger=self.make_trigger(run, started, time.time() + seconds if seconds is not None else None),
            method_name="execute_complete",
            timeout=timedelta(seconds=seconds + DEFER_GRACE) if seconds is not None else None,
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Resume after the trigger: the final status (XCom `return_value`), or the outcome's exception."""
        if not isinstance(event, dict) or event.get("status") not in ("success", "error"):
            raise RunwatchAirflowError(f"unexpected event from RunStatusTrigger: {event!r}")
        run: dict[str, Any] | None = event.get("run")
        if run is not None:
            self.push_link(context, run["id"], run.get("url"))
        if event["status"] == "success":
            assert run is not None
            self.log.info("run %s ended %s", run["id"], run["status"])
            return run
        self.raise_outcome(event["error"], event["message"], run["id"] if run else self._remote_run_id)

    def raise_outcome(self, error: str, message: str, run_id: str | None) -> NoReturn:
        """Raise the exception of a core outcome; past our deadline, cancel the run first if asked to."""
        if error == "WaitTimeout" and self.cancel_on_kill and run_id:
            self.log.info("deadline passed: cancelling run %s", run_id)
            self.get_hook().cancel_run(run_id)
        raise for_outcome(error)(message)

    def push_link(self, context: Context, run: str, status_url: str | None) -> None:
        """Push the run's URL to XCom for the "Remote run" link. A link never fails the task."""
        try:
            link = self.get_hook().run_link(run, status_url)
        except Exception as exc:
            self.log.warning("no link to run %s: %s", run, exc)
            return
        if link:
            context["ti"].xcom_push(key=RUN_URL_KEY, value=link)

    def on_kill(self) -> None:
        """A user killed the task while it waited on a worker: cancel the run if `cancel_on_kill`."""
        if self.cancel_on_kill and self._remote_run_id:
            self.log.info("task killed: cancelling run %s", self._remote_run_id)
            self.get_hook().cancel_run(self._remote_run_id)
