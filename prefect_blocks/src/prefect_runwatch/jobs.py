"""`RemoteRunJob` and `RemoteRun`: Prefect's job interface (`JobBlock`/`JobRun`) over the runwatch core."""

from __future__ import annotations

from typing import Any, Literal

from prefect.blocks.abstract import JobBlock, JobRun
from pydantic import Field

import runwatch
from prefect_runwatch._observe import Observer
from prefect_runwatch._release import wait_released
from prefect_runwatch._runs import start, watch
from prefect_runwatch._stop import runner_stop_signal, until_stopped
from prefect_runwatch.blocks import DOCS_URL, RunStatusApi
from runwatch import Policy, RunStatus, StartedRun

__all__ = ["RemoteRun", "RemoteRunJob"]


class RemoteRunJob(JobBlock[dict[str, Any]]):
    """A run to start on a run API, and how to wait for it."""

    _block_type_name = "runwatch Remote Run Job"
    _block_type_slug = "runwatch-remote-run-job"
    _description = (
        "A remote run to start (the request body and an idempotency key) on a runwatch Run Status API, and "
        "the policy for waiting on it: poll pacing, deadline, heartbeat and partial-success rules."
    )
    _documentation_url = DOCS_URL
    _code_example = """
```python
from prefect_runwatch import RemoteRunJob

job = RemoteRunJob.load("BLOCK_NAME")
run = await job.trigger()
await run.wait_for_completion()
status = await run.fetch_result()  # the final status, or the typed outcome raised
```
"""

    api: RunStatusApi = Field(description="The run API the run is started on.")
    body: dict[str, Any] = Field(
        default_factory=dict, description="JSON body of the start request, as the run API expects it."
    )
    idempotency_key: str | None = Field(
        default=None,
        description="Key sent with the start request; by default one derived from the flow run, its attempt "
        "and the body, so that retries and resumes start no second run.",
    )
    interval: float = Field(
        default=2.0, gt=0, description="Seconds between polls at first; it backs off while nothing changes."
    )
    max_interval: float = Field(default=60.0, gt=0, description="Most seconds between two polls.")
    timeout: float | None = Field(
        default=None,
        gt=0,
        description="Seconds we wait at most (our deadline; the remote run goes on after it); empty waits "
        "as long as the run lasts.",
    )
    heartbeat_timeout: float | None = Field(
        default=None,
        gt=0,
        description="Seconds a RUNNING run may go without a heartbeat before it counts as lost.",
    )
    unavailable_after: float = Field(
        default=300.0, ge=0, description="Seconds status may stay unreadable before the wait gives up."
    )
    long_poll: float | None = Field(
        default=None,
        gt=0,
        description="Seconds the API may hold each status request, where its profile supports long polling.",
    )
    partial_success: Literal["succeed", "fail", "partial"] = Field(
        default="partial",
        description="What PARTIAL_SUCCESS means: succeed, fail, or partial (raise RunPartiallySucceeded).",
    )

    def policy(self) -> Policy:
        """The waiting policy these fields describe."""
        fields = (
            "interval",
            "max_interval",
            "timeout",
            "heartbeat_timeout",
            "unavailable_after",
            "long_poll",
        )
        values: dict[str, Any] = {name: getattr(self, name) for name in fields}
        return self.api.policy(values, partial_success=self.partial_success)

    async def trigger(self) -> RemoteRun:
        """Start the run; the `RemoteRun` to wait on."""
        started = await start(self.api, self.body, self.idempotency_key, self.logger, self.policy())
        return RemoteRun(self, started)


class RemoteRun(JobRun[dict[str, Any]]):
    """One started remote run."""

    def __init__(self, job: RemoteRunJob, started: StartedRun) -> None:
        self.job = job
        self.started = started
        self.status: RunStatus = started.status

    @property
    def run_id(self) -> str:
        return self.started.id

    async def wait_for_completion(self, *, release_infrastructure: bool = False) -> None:  # type: ignore[override]
        """Wait until the run ends, whatever its end. Raises only if it cannot be watched to its end.

        With `release_infrastructure` the flow run is suspended while the run goes on (see `wait_for_run`).
        """
        observer = Observer(self.logger)
        policy = self.job.policy()
        if not release_infrastructure:
            watching = watch(self.job.api, self.started, policy, observer)
            self.status = await until_stopped(watching, runner_stop_signal(), self.logger, self.run_id)
            return
        try:
            final = await wait_released(self.job.api, self.started, policy, observer)
        except runwatch.WaitOutcome as exc:
            if exc.status is None or not exc.status.is_terminal:
                raise
            final = exc.status  # a failed run has ended: fetch_result says how
        if final is not None:
            self.status = final

    async def fetch_result(self) -> dict[str, Any]:
        """The final status if the run succeeded, else the typed outcome (RunFailed, ...) raised."""
        if not self.status.is_terminal:
            raise RuntimeError(
                f"remote run {self.run_id} is {self.status.status.value}: call wait_for_completion() first"
            )
        return runwatch.outcome(self.status, self.job.policy()).to_dict()
