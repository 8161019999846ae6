"""End-to-end harness: one PostgreSQL for the session, Airflow clusters on it started for a test module and
stopped (killed) after it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from airflow_cluster import AirflowCluster
from postgres_server import PostgresServer


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server on 127.0.0.1 (installed from the system packages if missing), stopped at the end."""
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def airflow_cluster_factory(
    tmp_path_factory: pytest.TempPathFactory, postgres: PostgresServer
) -> Iterator[Callable[..., AirflowCluster]]:
    """Start an Airflow with these DAG files and extra environment (and `env_later`'s, made while its database
    migrates: see AirflowCluster.start), each on a new database of the session's PostgreSQL; stopped when the
    module ends."""
    clusters: list[AirflowCluster] = []

    def start(
        dags: list[Path], env: dict[str, str], env_later: Callable[[], dict[str, str]] | None = None
    ) -> AirflowCluster:
        cluster = AirflowCluster(tmp_path_factory.mktemp("airflow-home"), dags, env, postgres)
        clusters.append(cluster)
        cluster.start(env_later)
        return cluster

    try:
        yield start
    finally:
        for cluster in clusters:
            cluster.stop()
