"""Idempotency keys that make a rerun of the same start return the same remote run."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from typing import Any

from prefect.context import FlowRunContext, TaskRunContext

__all__ = ["idempotency_key"]


def idempotency_key(body: Mapping[str, Any] | None) -> str:
    """A key for starting a run with `body` from the current Prefect run.

    In a flow run it is derived from the flow run, its attempt (`run_count`) and the body: a task retry or a
    rerun after suspend/resume gets the same remote run, a flow run retry starts a new one. Two starts with
    the same body in one attempt are one run: pass distinct keys to start two. Outside a flow run, a random
    key still makes the start's own retries safe.
    """
    flow_context = FlowRunContext.get()
    task_context = TaskRunContext.get()
    flow_run = flow_context.flow_run if flow_context else None
    if flow_run is not None:
        scope = f"{flow_run.id}/{flow_run.run_count}"
    elif task_context is not None:
        scope = str(task_context.task_run.id)
    else:
        return f"runwatch-{uuid.uuid4().hex}"
    digest = hashlib.sha256(json.dumps([scope, dict(body or {})], sort_keys=True, default=str).encode())
    return f"prefect-{digest.hexdigest()[:32]}"
