"""End-to-end harness: Airflow clusters started for a test module and stopped (killed) after it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from airflow_cluster import AirflowCluster


@pytest.fixture(scope="module")
def airflow_cluster_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., AirflowCluster]]:
    """Start an Airflow with these DAG files and extra environment; stopped when the module ends."""
    clusters: list[AirflowCluster] = []

    def start(dags: list[Path], env: dict[str, str]) -> AirflowCluster:
        cluster = AirflowCluster(tmp_path_factory.mktemp("airflow-home"), dags, env)
        clusters.append(cluster)
        cluster.start()
        return cluster

    try:
        yield start
    finally:
        for cluster in clusters:
            cluster.stop()
