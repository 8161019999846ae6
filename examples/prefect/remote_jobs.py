"""Wait for remote runs from Prefect without holding a worker or infrastructure (prefect-runwatch).

Two flows to copy:

- `nightly_export` starts one long job and releases its infrastructure while the job runs: the flow run is
  suspended, its process exits, and `prefect-runwatch watcher` resumes it when the job ends.
- `backfill` starts many jobs and waits for all of them in one process: the waits share one event loop and
  one connection pool, so 1,000 of them cost one flow run.

Try it against the reference server (or point the block at your own run API and change the bodies):

    runwatch serve                                    # a run API on http://127.0.0.1:8765
    prefect server start                              # another shell; then, in this one:
    export PREFECT_API_URL=http://127.0.0.1:4200/api
    prefect block register -m prefect_runwatch
    python -c "from prefect_runwatch import RunStatusApi
    RunStatusApi(base_url='http://127.0.0.1:8765').save('jobs-api', overwrite=True)"
    python examples/prefect/remote_jobs.py            # serves both deployments
    prefect-runwatch watcher                          # resumes suspended flow runs when their jobs end
    prefect deployment run 'nightly-export/nightly-export'
"""

from __future__ import annotations

import asyncio
from typing import Any

from prefect import flow, serve, task

from prefect_runwatch import start_run, start_run_and_wait, wait_for_run

API_BLOCK = "jobs-api"  # a saved RunStatusApi block (suspend mode loads it by name: no token in the flow run)

# Bodies for the reference server: a scripted lifecycle. A real API takes its own start body.
EXPORT_JOB: dict[str, Any] = {
    "script": [
        {"status": "QUEUED", "for": 2},
        {"status": "RUNNING", "for": 20, "progress": {"percent": 50, "message": "exporting"}},
        {"status": "SUCCEEDED", "output_ref": "s3://lake/exports/orders.parquet"},
    ]
}
BACKFILL_JOB: dict[str, Any] = {"script": [{"status": "RUNNING", "for": 10}, {"status": "SUCCEEDED"}]}


@task(persist_result=True)
def announce(table: str) -> str:
    """Work done before the wait: its result is persisted, so the rerun after a resume skips it."""
    print(f"exporting {table}")
    return table


@task
def publish(output_ref: str) -> None:
    print(f"published {output_ref}")


@flow(persist_result=True, log_prints=True)
async def nightly_export(
    api_block: str = API_BLOCK, job: dict[str, Any] = EXPORT_JOB, table: str = "orders"
) -> dict[str, Any]:
    """Start the export, suspend while it runs, publish its result once resumed."""
    announce(table)
    # If the job is still going after one look, the flow run is suspended here and its process exits.
    # When the watcher resumes it, Prefect reruns the flow from the top: the start is idempotent (same
    # remote run), and this call returns the final status at once. A failed job raises RunFailed.
    status = await start_run_and_wait(api_block, job, release_infrastructure=True)
    publish(status["output_ref"])
    return status


@flow(log_prints=True)
async def backfill(api_block: str = API_BLOCK, days: int = 30, job: dict[str, Any] = BACKFILL_JOB) -> int:
    """Start one job per day and wait for all of them at once, in this process."""
    runs = await asyncio.gather(
        *(start_run(api_block, {**job, "metadata": {"day": day}}) for day in range(days))
    )
    statuses = await asyncio.gather(*(wait_for_run(run, api_block, {"max_interval": 15}) for run in runs))
    print(f"{len(statuses)} days backfilled")
    return len(statuses)


if __name__ == "__main__":
    serve(nightly_export.to_deployment("nightly-export"), backfill.to_deployment("backfill"))
