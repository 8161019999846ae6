"""Every README and docs snippet that needs Airflow runs as written: DAGs through `dag.test()` (as the docs'
`airflow dags test` does), other code with `python FILE`. How snippets are found: tests/docs_snippets.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from docs_snippets import Snippet, python_snippets, report

from runwatch.server import ReferenceServer

AIRFLOW = python_snippets("airflow")

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("airflow_db")]


@pytest.mark.parametrize("snippet", AIRFLOW, ids=[s.where for s in AIRFLOW])
def test_airflow_snippet_runs_as_written(
    snippet: Snippet,
    runwatch_server: ReferenceServer,
    connection: Callable[..., str],
    dag_file: Callable[[str, str], Path],
    tmp_path: Path,
) -> None:
    # The quickstart's connection: AIRFLOW_CONN_RUNWATCH_DEFAULT pointing at the reference server.
    connection(host=runwatch_server.url)
    if "@dag" not in snippet.code:
        script = tmp_path / "snippet.py"
        script.write_text(snippet.code)
        done = subprocess.run(
            [sys.executable, str(script)], env=dict(os.environ), capture_output=True, text=True, timeout=110
        )
        assert done.returncode == 0, f"{snippet.where} failed:\n{done.stderr}"
        return
    path = dag_file(f"snippet_{snippet.path.stem}_{snippet.line}.py", snippet.code)
    bag = DagBag(dag_folder=str(path))
    assert bag.import_errors == {} and len(bag.dags) == 1, bag.import_errors
    (dag,) = bag.dags.values()
    conf = None
    if (
        "upstream_run" in dag.params
    ):  # what the docs pass: `airflow dags test nightly -c '{"upstream_run": ...}'`
        conf = {"upstream_run": runwatch_server.create_run()["id"]}
    run = dag.test(run_conf=conf)
    assert run.state == "success", (
        f"{snippet.where}: {[(ti.task_id, ti.state) for ti in run.get_task_instances()]}"
    )
    assert runwatch_server.stats()["runs_created"] == (2 if conf else 1)


def test_airflow_snippets_were_found(capsys: pytest.CaptureFixture[str]) -> None:
    assert [s.path.name for s in AIRFLOW] == ["README.md", "airflow.md"]  # the two quickstarts
    report(
        capsys, f"docs snippets: {len(AIRFLOW)} Airflow snippets run ({', '.join(s.where for s in AIRFLOW)})"
    )
