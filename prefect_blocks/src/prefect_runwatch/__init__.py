"""prefect-runwatch: wait for remote runs from Prefect flows, many per process, or suspended."""

from prefect_runwatch._release import RunOutcome
from prefect_runwatch.automations import create_resume_automation, push_run_status
from prefect_runwatch.blocks import RunStatusApi
from prefect_runwatch.jobs import RemoteRun, RemoteRunJob
from prefect_runwatch.tasks import start_run, start_run_and_wait, wait_for_run
from prefect_runwatch.watcher import Watcher

__version__ = "0.1.0"

__all__ = [
    "RemoteRun",
    "RemoteRunJob",
    "RunOutcome",
    "RunStatusApi",
    "Watcher",
    "create_resume_automation",
    "push_run_status",
    "start_run",
    "start_run_and_wait",
    "wait_for_run",
]
