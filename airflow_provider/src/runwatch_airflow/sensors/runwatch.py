"""`RunStatusSensor`: wait for a remote run to end, deferred to the triggerer by default."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseSensorOperator, PokeReturnValue
from airflow.triggers.base import StartTriggerArgs

import runwatch
from runwatch.text import inert
from runwatch_airflow._connection import ProfileSpec
from runwatch_airflow._waiting import RemoteRunTask, policy_dict, profile_spec
from runwatch_airflow.hooks.runwatch import RunStatusHook
from runwatch_airflow.links import RemoteRunLink
from runwatch_airflow.triggers.runwatch import RunStatusTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["RunStatusSensor"]


class RunStatusSensor(RemoteRunTask, BaseSensorOperator):
    """Wait until a remote run ends; return its final status (XCom) or raise its outcome.

    :param run: the run id (with the connection's base URL and the profile's URL template) or its full
        status URL. Templated.
    :param conn_id: a connection of type `runwatch`. Templated.
    :param profile: overrides the connection's profile: a built-in name or an inline dict. Templated.
    :param policy: a `runwatch.Policy` (or its dict): poll pacing, heartbeat limit, tolerance of an
        unreadable status, partial success. Its `timeout`, the sensor's `timeout` and `execution_timeout`
        all bound the wait; the shortest wins.
    :param deferrable: wait in the triggerer (the default; no worker slot is held).
    :param start_from_trigger: start in the triggerer directly, so not even the first poll takes a worker
        slot. Needs `run` as a string (a Jinja template is fine: the triggerer renders it); ignored by mapped
        tasks, which defer from a worker.
    :param cancel_on_kill: cancel the remote run when a user kills the task (mark failed/success, clear)
        or when the wait's deadline passes. Never on a triggerer restart.
    :param end_from_trigger: on success the triggerer ends the task itself, pushing the final status to
        XCom, so no worker slot is taken to resume it. Failures always resume on a worker.

    Failures raise one exception per outcome (`runwatch_airflow.exceptions`); `soft_fail` skips instead.
    In poke and reschedule modes each poke is one read of the run; heartbeat (`RunLost`) and illegal
    transition checks need the history that only the deferred wait keeps.
    """

    template_fields: Sequence[str] = ("run", "conn_id", "profile")
    template_fields_renderers: ClassVar[dict[str, str]] = {"profile": "json"}
    operator_extra_links = (RemoteRunLink(),)
    ui_color = "#d9ecf2"
    start_from_trigger = False
    start_trigger_args: StartTriggerArgs | None = None

    def __init__(
        self,
        *,
        run: str,
        conn_id: str = RunStatusHook.default_conn_name,
        profile: ProfileSpec | runwatch.Profile | None = None,
        policy: runwatch.Policy | dict[str, Any] | None = None,
        deferrable: bool = True,
        start_from_trigger: bool = False,
        cancel_on_kill: bool = False,
        end_from_trigger: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.run = run
        self.conn_id = conn_id
        self.profile = profile_spec(profile)
        self.policy = policy_dict(policy)
        self.deferrable = deferrable
        self.cancel_on_kill = cancel_on_kill
        self.end_from_trigger = end_from_trigger
        if start_from_trigger:
            self._start_from_trigger()

    def _start_from_trigger(self) -> None:
        if not self.deferrable:
            raise ValueError(f"{self.task_id}: start_from_trigger needs deferrable=True")
        if not isinstance(self.run, str):
            raise ValueError(f"{self.task_id}: start_from_trigger needs `run` as a string (or template)")
        seconds = self.wait_seconds()
        self.start_from_trigger = True
        # Airflow's trigger timeout is the deadline here: it is absolute from the moment the task defers.
        self.start_trigger_args = StartTriggerArgs(
            trigger_cls=f"{RunStatusTrigger.__module__}.{RunStatusTrigger.__qualname__}",
            trigger_kwargs=self.make_trigger(self.run).serialize()[1],
            next_method="execute_complete",
            next_kwargs=None,
            timeout=timedelta(seconds=seconds) if seconds is not None else None,
        )

    def wait_seconds(self) -> float | None:
        limits = [limit for limit in (self.timeout, super().wait_seconds()) if limit is not None]
        return min(limits) if limits else None

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        status = self.peek(self.run)
        if status is not None and status.is_terminal:
            return self.judge(context, status)
        self.defer_wait(context, self.run)

    def poke(self, context: Context) -> PokeReturnValue:
        """One read of the run, judged by the core (poke and reschedule modes)."""
        try:
            status = self.hook.get_status(self.run)
        except runwatch.RunwatchError as exc:
            self.raise_outcome(type(exc).__name__, str(exc), None)
        if not status.is_terminal:
            self._remote_run_id = status.id
            self.log.info("run %s is %s", inert(status.id), status.status.value)
            return PokeReturnValue(is_done=False)
        return PokeReturnValue(is_done=True, xcom_value=self.judge(context, status))
