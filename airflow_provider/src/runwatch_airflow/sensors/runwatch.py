"""`RunStatusSensor`: wait for a remote run to end, deferred to the triggerer by default."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseSensorOperator, PokeReturnValue
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException
from airflow.triggers.base import StartTriggerArgs

import runwatch
from runwatch.text import inert
from runwatch_airflow import _arguments
from runwatch_airflow._connection import ProfileSpec
from runwatch_airflow._waiting import RemoteRunTask, policy_dict, profile_spec
from runwatch_airflow.exceptions import RunwatchAirflowError
from runwatch_airflow.hooks.runwatch import RunStatusHook
from runwatch_airflow.links import RemoteRunLink
from runwatch_airflow.triggers.runwatch import RunStatusTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["RunStatusSensor"]

READ_RETRY_FOR = 30.0  # seconds a poke's read rides out transient errors, if the deadline allows


class RunStatusSensor(RemoteRunTask, BaseSensorOperator):
    """Wait until a remote run ends; return its final status (XCom) or raise its outcome.

    :param run: the run id (with the connection's base URL and the profile's URL template) or its full
        status URL. Templated.
    :param conn_id: a connection of type `runwatch`. Templated.
    :param profile: overrides the connection's profile: a built-in name or an inline dict. Templated.
    :param policy: a `runwatch.Policy` (or its dict): poll pacing, heartbeat limit, tolerance of an
        unreadable status, partial success. Its `timeout`, the sensor's `timeout` and `execution_timeout`
        all bound the wait; the shortest wins, in every mode (in reschedule mode `execution_timeout` keeps
        Airflow's meaning, the running time of each poke, and the others count from the first try's
        start, as Airflow's sensor timeout does).
    :param deferrable: wait in the triggerer (the default; no worker slot is held).
    :param start_from_trigger: start in the triggerer directly, so not even the first poll takes a worker
        slot. Needs `run` as a string (a Jinja template is fine: the triggerer renders it); ignored by mapped
        tasks, which defer from a worker.
    :param cancel_on_kill: cancel the remote run when a user kills the task (mark failed/success, clear)
        or when the wait's deadline passes, in every mode. Never on a triggerer restart.
    :param end_from_trigger: on success the triggerer ends the task itself, pushing the final status to
        XCom, so no worker slot is taken to resume it. Failures always resume on a worker.

    Failures raise one exception per outcome (`runwatch_airflow.exceptions`); `soft_fail` and
    `never_fail` skip instead, whichever path (first look, poke, resume) ends the task. `silent_fail`
    keeps poking past a read that failed, but a run that has ended unsuccessfully ends the task
    (`AirflowFailException`, with the typed outcome as its cause).
    In poke and reschedule modes each poke is one read of the run; heartbeat (`RunLost`) and illegal
    transition checks need the history that only the deferred wait keeps.
    """

    template_fields: Sequence[str] = ("run", "conn_id", "profile")
    template_fields_renderers: ClassVar[dict[str, str]] = {"profile": "json"}
    operator_extra_links = (RemoteRunLink(),)
    ui_color = "#d9ecf2"
    start_from_trigger = False
    start_trigger_args: StartTriggerArgs | None = None
    _deadline: float | None = None  # poke and reschedule modes: when this wait gives up (UNIX time)

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
        if self.reschedule and not self.deferrable:
            # Airflow applies execution_timeout to each reschedule-mode poke's running time itself.
            own = [self.timeout, runwatch.Policy.from_dict(self.policy).timeout]
        else:
            own = [self.timeout, super().wait_seconds()]
        limits = [limit for limit in own if limit is not None]
        return min(limits) if limits else None

    def take_arguments(self) -> None:
        super().take_arguments()
        self.run = _arguments.text("run", self.run)

    def execute(self, context: Context) -> Any:
        self.take_arguments()
        self.take_carrier(context)
        if not self.deferrable:
            self._deadline = self._poke_deadline(context)
            return super().execute(context)
        with self._ends_as_sensor():
            status = self.peek(self.run)
            if status is not None and status.is_terminal:
                return self.judge(context, status)
        self.defer_wait(context, self.run)

    @contextmanager
    def _ends_as_sensor(self) -> Iterator[None]:
        """A first look that ends the task ends it as a resume would (BaseSensorOperator's rule there):
        skipped under `soft_fail` or `never_fail`."""
        try:
            yield
        except AirflowSkipException:
            raise
        except AirflowException as exc:
            if self.soft_fail or self.never_fail:
                flag = "soft_fail" if self.soft_fail else "never_fail"
                raise AirflowSkipException(f"{flag}: {exc}") from exc
            raise

    def _poke_deadline(self, context: Context) -> float | None:
        """When a poke or reschedule wait gives up: from this execute, or (reschedule mode) from the first
        try's first poke, which Airflow keeps across reschedules."""
        seconds = self.wait_seconds()
        if seconds is None:
            return None
        begun = time.time()
        if self.reschedule:
            first: datetime | None = context["ti"].get_first_reschedule_date(context)
            begun = first.timestamp() if first is not None else begun
        return begun + seconds

    def _get_next_poke_interval(
        self, started_at: datetime | float, run_duration: Callable[[], float], poke_count: int
    ) -> float:
        # Airflow's pacing, but never past our deadline: the last poke happens when it passes.
        interval: float = super()._get_next_poke_interval(started_at, run_duration, poke_count)
        if self._deadline is None:
            return interval
        return max(0.0, min(interval, self._deadline - time.time()))

    def poke(self, context: Context) -> PokeReturnValue:
        """One read of the run, judged by the core (poke and reschedule modes); our deadline ends it."""
        left = None if self._deadline is None else self._deadline - time.time()
        budget = READ_RETRY_FOR if left is None else min(READ_RETRY_FOR, max(0.0, left))
        try:
            status = self.hook.get_status(self.run, retry_for=budget, trace=self._carrier)
        except runwatch.RunwatchError as exc:
            # Transient failures retried until the deadline: our deadline ended this read, not the remote.
            cut_short = budget < READ_RETRY_FOR and isinstance(exc, runwatch.TransientError)
            if cut_short or self._past_deadline():
                message = f"{self._gave_up()}; the last read failed: {exc}"
                self.raise_outcome(
                    "WaitTimeout", message, self._remote_run_id or self.deferred_run_id(context)
                )
            self.raise_outcome(type(exc).__name__, str(exc), None)
        if status.is_terminal:
            try:
                return PokeReturnValue(is_done=True, xcom_value=self.judge(context, status))
            except RunwatchAirflowError as exc:
                if self.silent_fail:  # it covers a poke that could not tell, not a run that has ended
                    raise AirflowFailException(str(exc)) from exc
                raise
        self._remote_run_id = status.id
        self.log.info("run %s is %s", inert(status.id), status.status.value)
        if self._past_deadline():
            self.raise_outcome(
                "WaitTimeout", f"{self._gave_up()}; run {status.id} is {status.status.value}", status.id
            )
        return PokeReturnValue(is_done=False)

    def _past_deadline(self) -> bool:
        return self._deadline is not None and time.time() >= self._deadline

    def _gave_up(self) -> str:
        return f"gave up waiting after {self.wait_seconds() or 0.0:g}s (our deadline)"

    def deferred_run_id(self, context: Context) -> str | None:
        if not self.run.startswith(("http://", "https://")):
            return self.run
        try:  # the cancel endpoint takes an id: read the run once for it
            return self.hook.get_status(self.run, retry_for=10.0, trace=self._carrier).id
        except runwatch.RunwatchError as exc:
            self.log.warning("could not read %s for its id: %s", self.run, exc)
            return None
