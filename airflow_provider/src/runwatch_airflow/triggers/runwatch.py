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

__all__ = ["RunStatusTrigger", "event_result", "result_event", "status_payload"]


class RunStatusTrigger(BaseTrigger):
    """Wait until a remote run ends and yield exactly one event.

    The event is `{"status": "success" | "error", "result": <runwatch.WaitResult dict>}` (`event_result()`
    reads it back, and the shape of the previous version too). On success, with `end_from_trigger` in a
    triggerer, the final status is pushed as XCom `return_value` (and the run's link) and a
    `TaskSuccessEvent` ends the task here: no worker runs at all for a successful wait. Anything else resumes
    the task on a worker so that retries and `soft_fail` apply. No exception escapes into the triggerer.

    The kwargs are a `runwatch.WaitSpec`'s fields (its `api` is the connection id, `conn_id`) and two of
    Airflow's: plain JSON, no secret (the token is read from the connection when the trigger runs), and the
    same keys as before the hand-off format, so a trigger persisted by the previous version resumes.
    `deadline` is an absolute UNIX time, so a trigger rebuilt after a triggerer restart keeps it.
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

    @classmethod
    def of_spec(
        cls, spec: runwatch.WaitSpec, *, cancel_on_kill: bool = False, end_from_trigger: bool = False
    ) -> RunStatusTrigger:
        """The trigger that waits as `spec` says; `spec.api` is the connection id (the default if None)."""
        return cls(
            run=spec.run,
            conn_id=spec.api or RunStatusHook.default_conn_name,
            started=spec.started,
            policy=spec.policy,
            deadline=spec.deadline,
            cancel_on_kill=cancel_on_kill,
            profile=spec.profile,
            end_from_trigger=end_from_trigger,
            trace=spec.trace,
        )

    @property
    def spec(self) -> runwatch.WaitSpec:
        """The wait this trigger stands for."""
        return runwatch.WaitSpec(
            run=self.run_ref,
            api=self.conn_id,
            profile=self.profile,
            started=self.started,
            policy=self.policy,
            deadline=self.deadline,
            trace=self._carrier(),
        )

    async def _wait(self) -> TriggerEvent:
        hook = RunStatusHook(self.conn_id, self.profile)
        try:
            api = await hook.aget_api()
            result = await runwatch.wait_result(api, self.spec, hooks=runwatch.Hooks(on_change=self._seen))
        except Exception as exc:  # a trigger must end with an event, never crash the triggerer
            result = runwatch.WaitResult.of_error(exc, self._last)
            self.log.warning("waiting for %s failed: %s", self.run_ref, result.message)
        if result.ok and result.status is not None and self.end_from_trigger and self.task_instance:
            final = result.status
            try:
                await self._push_xcoms(success_xcoms(final, hook.run_link(final.id, final.url)))
            except Exception as exc:
                self.log.warning("could not push XCom from the triggerer (%s): resuming on a worker", exc)
            else:
                return TaskSuccessEvent()
        return TriggerEvent(result_event(result))

    async def _push_xcoms(self, xcoms: dict[str, Any]) -> None:
        # Pushed through the triggerer's supervisor, as a worker pushes them: Airflow 3.3.2 stores the
        # XComs of a TaskSuccessEvent JSON-encoded twice, so downstream tasks would read a string.
        ti = self.task_instance
        assert ti is not None
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


def success_xcoms(final: runwatch.RunStatus, link: str | None) -> dict[str, Any]:
    """XCom key -> value that a success ended in the triggerer pushes, as a worker's resume would: the final
    status as `return_value` and, when there is a link, the run's URL for `RemoteRunLink`."""
    xcoms: dict[str, Any] = {"return_value": status_payload(final)}
    if link:
        xcoms |= {RUN_URL_KEY: link, RemoteRunLink().xcom_key: link}
    return xcoms


def result_event(result: runwatch.WaitResult) -> dict[str, Any]:
    """The event of a wait that ended. `observed_at` is left out so HA duplicates of an event match."""
    if result.status is not None:
        result = result.model_copy(update={"status": result.status.model_copy(update={"observed_at": None})})
    return {"status": "success" if result.ok else "error", "result": result.to_dict()}


def event_result(event: Any) -> runwatch.WaitResult:
    """How the wait ended, from a `RunStatusTrigger` event of this version or of the previous one.

    The previous version wrote `{"status": "success", "run": <status>}` or `{"status": "error", "error":
    <core class name>, "message": <line>, "run": <status or None>}`; a trigger that fired before an upgrade
    resumes its task after it. Raises `ValueError` for anything else.
    """
    try:
        if not isinstance(event, dict) or event.get("status") not in ("success", "error"):
            raise ValueError("neither success nor error")
        if "result" in event:
            return runwatch.WaitResult.from_dict(event["result"])
        run = runwatch.RunStatus.from_dict(event["run"]) if event.get("run") is not None else None
        if event["status"] == "success" and run is not None:
            return runwatch.WaitResult(outcome="succeeded", status=run)
        return runwatch.WaitResult.of_error_name(str(event.get("error")), event.get("message", ""), run)
    except (ValueError, TypeError, KeyError) as exc:  # pydantic's ValidationError is a ValueError
        raise ValueError(
            f"unexpected event from RunStatusTrigger ({exc.__class__.__name__}): {event!r}"
        ) from None
