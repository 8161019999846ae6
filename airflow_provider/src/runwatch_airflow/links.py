"""The operator extra link to the remote run."""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk import BaseOperatorLink
from airflow.sdk.execution_time.xcom import XCom

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

__all__ = ["RUN_URL_KEY", "RemoteRunLink"]

RUN_URL_KEY = "run_url"
"""The XCom key under which the tasks push the run's URL (`run_link` template, else status URL)."""


class RemoteRunLink(BaseOperatorLink):
    """ "Remote run" button: the URL the task pushed to XCom `run_url`."""

    name = "Remote run"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        return XCom.get_value(ti_key=ti_key, key=RUN_URL_KEY) or ""
