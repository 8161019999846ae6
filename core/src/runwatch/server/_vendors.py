"""Vendor mode: the reference server speaking twelve real run APIs, each through a scripted lifecycle.

Each vendor lives under `/vendors/<profile name>` with the vendor's own paths, so the built-in profile of the
same name reads it unchanged with `base_url = <server>/vendors/<name>`. Runs are made through
`POST /_control/vendors/<name>/runs` (or `ReferenceServer.create_vendor_run`):

```
{
    "script": [{"state": "queued", "for": 0.2}, {"state": "completed/success"}],
    "message": "why it failed",
    "variant": "v1",
    "rate_limited": 2,
    "id": "optional",
}
```
`state` is the vendor's word in the profile's notation; the last step is held. `rate_limited: n` answers the
next n status reads with the vendor's own rate-limit answer. See docs/reference-server.md.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from runwatch.server._vendor_shapes import JSON, VENDORS, Times, Vendor

__all__ = ["VendorStore", "vendor_routes"]

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_CANCEL_STEP = 0.05  # seconds each intermediate word of a cancel lasts (Canceling, then Cancelled)


class VendorRun:
    """One run of one vendor: its script, the clock it runs on, and what it was told."""

    def __init__(
        self, vendor: Vendor, run_id: str, steps: list[tuple[str, float | None]], options: dict[str, Any]
    ) -> None:
        self.vendor = vendor
        self.id = run_id
        self.steps = steps
        self.options = options
        self.rate_limited = int(options.get("rate_limited", 0))
        self.wall0 = time.time()
        self.mono0 = time.monotonic()
        self.script_start = self.mono0  # when `steps` began (a cancel starts a new script)
        self.started_wall: float | None = None

    def _position(self, now: float) -> tuple[int, float]:
        """The current step and the monotonic time it began."""
        begin = self.script_start
        for index, (_, duration) in enumerate(self.steps):
            if duration is None or now < begin + duration:
                return index, begin
            begin += duration
        return len(self.steps) - 1, begin  # pragma: no cover - the last step is always held

    def word(self, now: float) -> str:
        return self.steps[self._position(now)[0]][0]

    def times(self, now: float) -> tuple[str, Times]:
        index, begin = self._position(now)
        word = self.steps[index][0]

        def to_wall(mono: float) -> float:
            return self.wall0 + (mono - self.mono0)

        if self.started_wall is None:
            # The first step that is active or terminal marks the start.
            mark = self.script_start
            for w, duration in self.steps[: index + 1]:
                if w in self.vendor.active_words or w.split("/")[0] in self.vendor.active_words:
                    self.started_wall = to_wall(mark)
                    break
                mark += duration or 0.0
            if self.started_wall is None and self.vendor.terminal(word):
                self.started_wall = to_wall(begin)
        ended = to_wall(begin) if self.vendor.terminal(word) else None
        return word, Times(self.wall0, to_wall(begin), self.started_wall, ended, to_wall(now))

    def cancel(self, now: float) -> bool:
        """Move to the vendor's cancel words; False when the run has already ended."""
        if self.vendor.terminal(self.word(now)):
            return False
        self.times(now)  # fix started_at before the script changes
        words = self.vendor.cancel_to
        self.steps = [(w, _CANCEL_STEP) for w in words[:-1]] + [(words[-1], None)]
        self.script_start = now
        return True


class VendorStore:
    """Every vendor run, by vendor name and run id."""

    def __init__(self) -> None:
        self.runs: dict[str, dict[str, VendorRun]] = {name: {} for name in VENDORS}
        self._next_int = 1000

    def new_id(self, vendor: Vendor) -> str:
        if vendor.id_kind == "int":
            self._next_int += 1
            return str(self._next_int)
        if vendor.id_kind == "uuid":
            return str(uuid.uuid4())
        return (
            f"manual__{secrets.token_hex(4)}" if vendor.name == "airflow" else f"run-{secrets.token_hex(4)}"
        )


def _steps(script: Any) -> list[tuple[str, float | None]]:
    if not isinstance(script, list) or not script:
        raise ValueError("script: a non-empty list of {state, for} steps")
    steps: list[tuple[str, float | None]] = []
    for i, step in enumerate(script):
        if not isinstance(step, dict) or not isinstance(step.get("state"), str):
            raise ValueError(f"script[{i}]: needs a 'state' string")
        duration = step.get("for")
        last = i == len(script) - 1
        if last:
            duration = None
        elif not isinstance(duration, (int, float)) or isinstance(duration, bool) or duration < 0:
            raise ValueError(f"script[{i}].for: seconds >= 0 (every step but the last)")
        steps.append((step["state"], None if duration is None else float(duration)))
    return steps


class _VendorApi:
    def __init__(self, vendor: Vendor, store: VendorStore, base_url: str | None) -> None:
        self.vendor = vendor
        self.store = store
        self.base_url = base_url
        self.runs = store.runs[vendor.name]

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
        body, media = self.vendor.error(status, message)
        raw = body.encode() if isinstance(body, str) else _dumps(body).encode()
        return Response(raw, status, headers, media)

    def _find(self, request: Request) -> VendorRun | None:
        run_id = request.path_params.get("run_id") or request.query_params.get("run_id", "")
        return self.runs.get(run_id)

    async def _find_in_body(self, request: Request) -> VendorRun | None:
        # Databricks also takes a GET's parameters as a JSON body, and Airflow's async Databricks hook
        # sends `{"run_id": n}` that way.
        try:
            body = json.loads(await request.body() or b"null")
        except ValueError:
            return None
        return self.runs.get(str(body.get("run_id"))) if isinstance(body, dict) else None

    async def status(self, request: Request) -> Response:
        if self.vendor.name == "azure-lro" and "api-version" not in request.query_params:
            return self._error(400, "The api-version query parameter (?api-version=) is required.")
        run = self._find(request)
        if run is None and self.vendor.name == "databricks":
            run = await self._find_in_body(request)
        if run is None:
            return self._error(404, "Not Found")
        now = time.monotonic()
        if run.rate_limited > 0:
            run.rate_limited -= 1
            status, headers = self.vendor.rate_limited(time.time())
            return self._error(status, "API rate limit exceeded", headers)
        word, times = run.times(now)
        headers = {}
        if self.vendor.retry_after_while_running and not self.vendor.terminal(word):
            headers["retry-after"] = "1"
        body = self.vendor.render(run.id, word, times, run.options)
        return Response(_dumps(body).encode(), 200, headers, JSON)

    async def cancel(self, request: Request) -> Response:
        raw = await request.body()
        try:
            body = json.loads(raw) if raw.strip() else None
        except ValueError:
            return self._error(400, "the body is not JSON")
        run = self._find(request)
        if run is None and isinstance(body, dict):  # Databricks names the run in the body
            run = self.runs.get(str(body.get("run_id")))
        if run is None:
            return self._error(404, "Not Found")
        if self.vendor.cancel_body is not None and not self.vendor.cancel_body(body, run.id):
            return self._error(400, f"the cancel request's body does not name run {run.id}: {raw[:200]!r}")
        if not run.cancel(time.monotonic()):
            return self._error(409, f"run {run.id} has already ended")
        return Response(b"{}", 202 if self.vendor.name == "github-actions" else 200, None, JSON)

    async def start(self, request: Request) -> Response:
        vendor = self.vendor
        assert vendor.start_answer is not None
        raw = await request.body()
        try:
            given = json.loads(raw) if raw.strip() else None
        except ValueError:
            return self._error(400, "the body is not JSON")
        run_id = self.store.new_id(vendor)
        self.runs[run_id] = VendorRun(vendor, run_id, list(vendor.start_script), {})
        base_url = self.base_url or str(request.base_url).rstrip("/")
        status, headers, body = vendor.start_answer(run_id, f"{base_url}/vendors/{vendor.name}", given)
        answer = b"" if body is None else _dumps(body).encode()
        return Response(answer, status, headers, JSON if body is not None else None)

    async def list_runs(self, request: Request) -> Response:
        assert self.vendor.wrap_list is not None
        now = time.monotonic()
        items = []
        for run in self.runs.values():
            word, times = run.times(now)
            items.append(self.vendor.render(run.id, word, times, run.options))
        return Response(_dumps(self.vendor.wrap_list(items)).encode(), 200, None, JSON)


def _routes(vendor: Vendor, store: VendorStore, base_url: str | None) -> list[BaseRoute]:
    api = _VendorApi(vendor, store, base_url)
    routes: list[BaseRoute] = []
    if vendor.start_path is not None:
        routes.append(Route(vendor.start_path, api.start, methods=["POST"]))
    if vendor.cancel_path is not None and vendor.cancel_method is not None:
        # First: a cancel path may extend the status path (Google's `{name}:cancel`).
        routes.append(Route(vendor.cancel_path, api.cancel, methods=[vendor.cancel_method]))
    if vendor.list_path is not None:
        routes.append(Route(vendor.list_path, api.list_runs, methods=[vendor.list_method]))
    routes.append(Route(vendor.status_path, api.status, methods=["GET"]))
    return routes


def vendor_routes(store: VendorStore, base_url: str | None) -> list[BaseRoute]:
    """`/vendors/<name>/...` for every vendor, and `/_control/vendors/<name>/runs` to script runs."""

    async def create(request: Request) -> Response:
        vendor = VENDORS.get(request.path_params["vendor"])
        if vendor is None:
            return Response(_dumps({"error": "no such vendor"}).encode(), 404, None, JSON)
        try:
            body = json.loads(await request.body())
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
            steps = _steps(body.get("script"))
        except ValueError as exc:
            return Response(_dumps({"error": str(exc)}).encode(), 422, None, JSON)
        run_id = str(body.get("id") or store.new_id(vendor))
        options = {k: v for k, v in body.items() if k not in ("script", "id")}
        store.runs[vendor.name][run_id] = VendorRun(vendor, run_id, steps, options)
        root = base_url or str(request.base_url).rstrip("/")
        answer = {"id": run_id, "base_url": f"{root}/vendors/{vendor.name}"}
        return Response(_dumps(answer).encode(), 201, None, JSON)

    routes: list[BaseRoute] = [Route("/_control/vendors/{vendor}/runs", create, methods=["POST"])]
    routes += [
        Mount(f"/vendors/{name}", routes=_routes(vendor, store, base_url)) for name, vendor in VENDORS.items()
    ]
    return routes
