"""`RunStatusHook`: a `runwatch` connection as a `runwatch.RunApi`, for tasks (sync) and triggers (async)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow.providers.common.compat.connection import get_async_connection, get_async_extra_dejson
from airflow.sdk import BaseHook, Connection
from airflow.sdk.log import mask_secret

import runwatch
from runwatch_airflow._budget import aread_budget, read_budget
from runwatch_airflow._connection import ProfileSpec, api_from_connection, run_link

__all__ = ["PROBE_RUN_ID", "RunStatusHook"]

PROBE_RUN_ID = "runwatch-connection-test"
"""The made-up run id the "Test" button reads: a 404 for it shows the API answers and takes the token."""
PROBE_TIMEOUT = 10.0  # seconds: a button press should not hang


class RunStatusHook(BaseHook):
    """Reach a run API through an Airflow connection of type `runwatch`.

    Host is the base URL, password the token, extras the profile, auth style, TLS, headers and the
    request budget shared across processes (docs/airflow.md). `profile` overrides the connection's
    profile. The async methods never block the event loop, so triggers use them; the sync ones are for
    pokes and operators.
    """

    conn_name_attr = "conn_id"
    default_conn_name = "runwatch_default"
    conn_type = "runwatch"
    hook_name = "runwatch (remote run API)"

    def __init__(self, conn_id: str = default_conn_name, profile: ProfileSpec | None = None) -> None:
        super().__init__()
        self.conn_id = conn_id
        self.profile = profile
        self._read: tuple[runwatch.RunApi, dict[str, Any]] | None = None  # the last connection read

    def get_conn(self) -> runwatch.RunApi:
        return self.get_api()

    def get_api(self) -> runwatch.RunApi:
        """The run API, for sync callers (a poke, an operator's execute)."""
        conn = self.get_connection(self.conn_id)
        if conn.password:
            mask_secret(conn.password)
        extra = conn.extra_dejson
        return self._remember(conn, extra, read_budget(self, conn, extra))

    async def aget_api(self) -> runwatch.RunApi:
        """The run API, without blocking the event loop (Airflow masks the secrets asynchronously)."""
        conn = await get_async_connection(self.conn_id, self)
        extra = await get_async_extra_dejson(conn)
        return self._remember(conn, extra, await aread_budget(self, conn, extra))

    def _remember(
        self, conn: Connection, extra: dict[str, Any], budget: runwatch.RedisBudget | None
    ) -> runwatch.RunApi:
        api = api_from_connection(conn, extra, self.profile, budget)
        self._read = (api, extra)
        return api

    def run_link(self, run: str, status_url: str | None = None) -> str | None:
        """The URL of a run for people: the connection's `run_link` template, else its status URL.

        Uses the connection as last read by `get_api`/`aget_api` (read now if it never was).
        """
        if self._read is None:
            self.get_api()
        assert self._read is not None
        api, extra = self._read
        if status_url is None:
            status_url = api.status_url(run)
        return run_link(extra, None if run.startswith(("http://", "https://")) else run, status_url)

    # Convenience: one call each, async first with sync twins.

    # `trace`: a W3C Trace Context carrier the request carries (a task's, `runwatch_airflow._trace`).

    async def aget_status(self, run: str, trace: Mapping[str, str] | None = None) -> runwatch.RunStatus:
        return await (await self.aget_api()).get_status(run, trace=trace)

    async def astart_run(
        self,
        body: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        trace: Mapping[str, str] | None = None,
    ) -> runwatch.StartedRun:
        return await (await self.aget_api()).start_run(body, idempotency_key=idempotency_key, trace=trace)

    async def acancel_run(self, run_id: str, trace: Mapping[str, str] | None = None) -> None:
        await (await self.aget_api()).cancel_run(run_id, trace=trace)

    def get_status(
        self, run: str, retry_for: float = 30.0, trace: Mapping[str, str] | None = None
    ) -> runwatch.RunStatus:
        """Read a run once (its id or full status URL), riding out transient errors for `retry_for` s."""
        return runwatch.run_sync(self.get_api().get_status(run, retry_for=retry_for, trace=trace))

    def start_run(
        self,
        body: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        trace: Mapping[str, str] | None = None,
    ) -> runwatch.StartedRun:
        """Start a run; the same idempotency key always gives the same run."""
        return runwatch.run_sync(self.get_api().start_run(body, idempotency_key=idempotency_key, trace=trace))

    def cancel_run(self, run_id: str, trace: Mapping[str, str] | None = None) -> None:
        """Ask the remote to cancel a run (a run that already ended is not an error)."""
        runwatch.run_sync(self.get_api().cancel_run(run_id, trace=trace))

    def test_connection(self) -> tuple[bool, str]:
        """The UI's "Test" button: read one (made-up) run with the connection's credentials.

        A 404 for the probe means the API answered and took the credentials; a refused connection, a
        401/403 or an unreadable answer is reported as what failed. Never retried, 10 s at most.
        """
        try:
            api = self.get_api()
            url = api.status_url(PROBE_RUN_ID)
        except Exception as exc:
            return False, f"{type(exc).__name__}: {exc}"
        try:
            status = runwatch.run_sync(api.get_status(url, retry_for=0, request_timeout=PROBE_TIMEOUT))
        except runwatch.RunNotFound:
            return (
                True,
                f"{url} answered 404 (no such run, as expected for a probe): the API took the credentials",
            )
        except runwatch.AccessDenied as exc:
            return False, f"the API refused the credentials: {exc}"
        except runwatch.RunwatchError as exc:
            return False, f"could not read the API: {exc}"
        return True, f"{url} answered with a run in state {status.status} (profile {api.profile.name!r})"
