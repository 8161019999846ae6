"""The operator extra link to the remote run."""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

__all__ = ["RUN_URL_KEY", "RemoteRunLink"]

RUN_URL_KEY = "run_url"
"""The XCom key under which the tasks push the run's URL (`run_link` template, else status URL)."""


class RemoteRunLink(BaseOperatorLink):
    """ "Remote run" button: the URL the task pushed to XCom `run_url`.

    Airflow calls `get_link` on the worker at the end of every try and stores the answer for the UI. The
    task remembers the URL it pushed, so no XCom is read here: reading one that a failed or rescheduled
    try never pushed makes Airflow log "XCom not found" at ERROR level.
    """

    name = "Remote run"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        return getattr(operator, "remote_run_url", None) or ""
