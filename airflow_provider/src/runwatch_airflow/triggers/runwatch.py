"""`RunStatusTrigger`: waits for a remote run in the triggerer with the core waiter, then fires one event."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from airflow.sdk.execution_time.xcom import XCom
from airflow.triggers.base import BaseTrigger, TaskSuccessEvent, TriggerEvent

import runwatch
from runwatch.text import inert
from runwatch_airflow import _arguments
from runwatch_airflow._connection import ProfileSpec
from runwatch_airflow._trace import task_carrier
from runwatch_airflow.hooks.runwatch import RunStatusHook
from runwatch_airflow.links import RUN_URL_KEY, RemoteRunLink

if TYPE_CHECKING:
    import jinja2
    from airflow.sdk import Context

__all__ = ["RunStatusTrigger", "error_event", "status_payload"]


class RunStatusTrigger(BaseTrigger):
    """Wait until a remote run ends and yield exactly one event.

    Success: `{"status": "success", "run": <final status dict>}`; or, with `end_from_trigger` in a
    triggerer, that dict is pushed as XCom `return_value` (and the run's link) and a `TaskSuccessEvent`
    ends the task here: no worker runs at all for a successful wait. Anything else:
    `{"status": "error", "error": <core outcome class name>, "message": <one line>, "run": <last status
    dict or None>}`, which resumes the task on a worker so that retries and `soft_fail` apply. No
    exception escapes into the triggerer.

    The kwargs are plain JSON and hold no secret: the token is read from the connection when the trigger
    runs. `deadline` is an absolute UNIX time, so a trigger rebuilt after a triggerer restart keeps it.
    `started` is a `runwatch.StartedRun.to_dict()` when the task just started the run (a 404 is then
    tolerated for the policy's grace window). `trace` is the task's W3C Trace Context carrier (`traceparent`,
    `tracestate`: no secret), which every request carries; without it, the carrier of the task instance the
    triggerer gives the trigger (a task started from the triggerer has no worker to pass one). `on_kill`
    cancels the remote run only if `cancel_on_kill`; Airflow calls it on a user's kill, never on a restart
    or a reassignment, and `cleanup` never cancels.
    """

    def __init__(
        self,
        *,
        run: str,
        conn_id: str = RunStatusHook.default_conn_name,
        started: dict[str, Any] | None = None,
        policy: dict[str, Any] | None = None,
        deadline: float | None = None,
        cancel_on_kill: bool = False,
        profile: ProfileSpec | None = None,
        end_from_trigger: bool = False,
        trace: dict[str, str] | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Airflow's BaseTrigger.__init__ is untyped
        self.run_ref = run  # `run` is the coroutine Airflow drives
        self.conn_id = conn_id
        self.started = started
        self.policy = policy or {}
        self.deadline = deadline
        self.cancel_on_kill = cancel_on_kill
        self.profile = profile
        self.end_from_trigger = end_from_trigger
        self.trace = trace
        self._last: runwatch.RunStatus | None = None

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "run": self.run_ref,
                "conn_id": self.conn_id,
                "started": self.started,
                "policy": self.policy,
                "deadline": self.deadline,
                "cancel_on_kill": self.cancel_on_kill,
                "profile": self.profile,
                "end_from_trigger": self.end_from_trigger,
                "trace": self.trace,
            },
        )

    def render_template_fields(self, context: Context, jinja_env: jinja2.Environment | None = None) -> None:
        """Render the task's templated `run`, `conn_id` and `profile` (a task started from the triggerer).

        Raises `RunwatchArgumentError` naming a field that rendered to a value of the wrong kind.
        """
        env = jinja_env or self.get_template_env()
        self.run_ref = _arguments.text("run", self.render_template(self.run_ref, context, env))
        self.conn_id = _arguments.text("conn_id", self.render_template(self.conn_id, context, env))
        self.profile = _arguments.profile_value(self.render_template(self.profile, context, env))

    async def run(self) -> AsyncIterator[TriggerEvent]:
        yield await self._wait()

    async def _wait(self) -> TriggerEvent:
        hook = RunStatusHook(self.conn_id, self.profile)
        try:
            api = await hook.aget_api()
            target = runwatch.StartedRun.from_dict(self.started) if self.started else self.run_ref
            status = await runwatch.wait_for_run(
                api,
                target,
                policy=runwatch.Policy.from_dict(self.policy),
                deadline=self.deadline,
                hooks=runwatch.Hooks(on_change=self._seen),
                trace=self._carrier(),
            )
        except runwatch.WaitOutcome as exc:
            return TriggerEvent(error_event(exc, exc.status or self._last))
        except Exception as exc:  # a trigger must end with an event, never crash the triggerer
            self.log.warning("waiting for %s failed: %s", self.run_ref, _one_line(exc))
            return TriggerEvent(error_event(exc, self._last))
        payload = status_payload(status)
        if self.end_from_trigger and self.task_instance is not None:
            try:
                await self._push_xcoms(payload, hook.run_link(status.id, status.url))
            except Exception as exc:
                self.log.warning("could not push XCom from the triggerer (%s): resuming on a worker", exc)
            else:
                return TaskSuccessEvent()
        return TriggerEvent({"status": "success", "run": payload})

    async def _push_xcoms(self, payload: dict[str, Any], link: str | None) -> None:
        # Pushed through the triggerer's supervisor, as a worker pushes them: Airflow 3.3.2 stores the
        # XComs of a TaskSuccessEvent JSON-encoded twice, so downstream tasks would read a string.
        ti = self.task_instance
        assert ti is not None
        xcoms: dict[str, Any] = {"return_value": payload}
        if link:
            xcoms |= {RUN_URL_KEY: link, RemoteRunLink().xcom_key: link}
        for key, value in xcoms.items():
            await XCom.aset(
                key, value, dag_id=ti.dag_id, task_id=ti.task_id, run_id=ti.run_id, map_index=ti.map_index
            )

    def _seen(self, status: runwatch.RunStatus) -> None:
        self._last = status
        percent = status.progress.percent if status.progress else None
        progress = f" ({percent:g}%)" if percent is not None else ""
        self.log.info("run %s is %s%s", inert(status.id), status.status.value, progress)

    async def on_kill(self) -> None:
        """Cancel the remote run when a user kills the task, if `cancel_on_kill`."""
        if not self.cancel_on_kill:
            return
        run_id = self._run_id()
        if run_id is None:
            self.log.warning("cannot cancel %s: its run id was never seen", self.run_ref)
            return
        api = await RunStatusHook(self.conn_id, self.profile).aget_api()
        await api.cancel_run(run_id, retry_for=20.0, trace=self._carrier())
        self.log.info("asked the remote to cancel run %s", run_id)

    def _carrier(self) -> dict[str, str] | None:
        return self.trace or task_carrier(self.task_instance)

    def _run_id(self) -> str | None:
        if self._last is not None:
            return self._last.id
        if self.started:
            return str(self.started["status"]["id"])
        return None if self.run_ref.startswith(("http://", "https://")) else self.run_ref


def status_payload(status: runwatch.RunStatus) -> dict[str, Any]:
    """A status as event and XCom data. `observed_at` is left out so HA duplicates of an event match."""
    payload = status.to_dict()
    payload.pop("observed_at", None)
    return payload


def error_event(exc: BaseException, last: runwatch.RunStatus | None) -> dict[str, Any]:
    """The event of a wait that did not succeed."""
    return {
        "status": "error",
        "error": type(exc).__name__,
        "message": _one_line(exc),
        "run": status_payload(last) if last is not None else None,
    }


def _one_line(exc: BaseException) -> str:
    # The message may quote the remote (its error text): shown whole, as data, on one line.
    text = str(exc).strip()
    return inert(text) if text else type(exc).__name__
