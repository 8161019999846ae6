"""Flow runs for the Airflow e2e test, run in the Prefect environment (`PrefectServer.run_script`): the Airflow
environment cannot import Prefect.

`python prefect_upstream.py DEPLOYMENT_ID SECONDS`: for each line read from stdin (`succeed` or `fail`), one flow
run of the deployment, created from it and run here to its end by Prefect's engine; it sleeps SECONDS, then
returns or raises. Its id is printed when it is created. Exits at the end of stdin.
"""

from __future__ import annotations

import sys
import time
from uuid import UUID

from prefect import flow
from prefect.client.orchestration import get_client
from prefect.flow_engine import run_flow


@flow(name="rw-upstream")
def upstream(seconds: float, fail: bool = False) -> int:
    time.sleep(seconds)
    if fail:
        raise ValueError("bad row 7")
    return 42


def main(deployment_id: UUID, seconds: float) -> None:
    for line in sys.stdin:
        parameters = {"seconds": seconds, "fail": line.strip() == "fail"}
        with get_client(sync_client=True) as client:
            flow_run = client.create_flow_run_from_deployment(deployment_id, parameters=parameters)
        print(flow_run.id, flush=True)
        run_flow(upstream, flow_run=flow_run, parameters=parameters, return_type="state")


if __name__ == "__main__":
    main(UUID(sys.argv[1]), float(sys.argv[2]))
