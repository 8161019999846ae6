"""Packaging suite fixtures: the built sdists and wheels, and one fresh environment per wheel.

The sdists and wheels are built once per session with ./dev's pinned uv (`uv build`, which builds the wheel
from the sdist, so a file missing from the sdist fails here too). Each wheel is installed, never editable,
into a fresh environment of its own with the versions of the matching lock (`-c locks/<env>.txt`).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from distributions import (
    BUILD_PINS,
    COLLECTION,
    CORE,
    DISTS,
    PROVIDER,
    ROOT,
    UV,
    Dist,
    FreshEnv,
    declared_floors,
    requirement,
    run,
    wheel,
)


@pytest.fixture(scope="session")
def dist_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist and wheel of each distribution, freshly built."""
    out = tmp_path_factory.mktemp("dist")
    for dist in DISTS:
        run(UV, "build", "--quiet", "--build-constraints", BUILD_PINS, "--out-dir", out, ROOT / dist.folder)
    return out


def fresh_env(
    tmp_path_factory: pytest.TempPathFactory, name: str, constraints: Path, *requirements: str
) -> FreshEnv:
    """A new environment holding `requirements`, with the versions `constraints` names."""
    env = FreshEnv(tmp_path_factory.mktemp(f"venv-{name}"))
    run(UV, "venv", "--quiet", "--python", sys.executable, env.path)
    run(UV, "pip", "install", "--quiet", "--python", env.python, "-c", constraints, *requirements)
    return env


def lock(dist: Dist) -> Path:
    return ROOT / "locks" / f"{dist.lock}.txt"


@pytest.fixture(scope="session")
def core_env(tmp_path_factory: pytest.TempPathFactory, dist_dir: Path) -> FreshEnv:
    """runwatch[server,cli] from its wheel (the server extra runs the reference server for the wait)."""
    return fresh_env(tmp_path_factory, "core", lock(CORE), requirement(dist_dir, CORE, "[server,cli]"))


@pytest.fixture(scope="session")
def core_floors_env(tmp_path_factory: pytest.TempPathFactory, dist_dir: Path) -> FreshEnv:
    """runwatch[server,cli] from its wheel with each of its dependencies at the floor its metadata declares."""
    floors = tmp_path_factory.mktemp("floors") / "floors.txt"
    floors.write_text(
        "".join(f"{name}=={version}\n" for name, version in declared_floors(wheel(dist_dir, CORE)))
    )
    return fresh_env(tmp_path_factory, "core-floors", floors, requirement(dist_dir, CORE, "[server,cli]"))


@pytest.fixture(scope="session")
def airflow_env(tmp_path_factory: pytest.TempPathFactory, dist_dir: Path) -> FreshEnv:
    """The provider from its wheel, with Airflow and runwatch[server] (from its wheel) under it."""
    wheels = requirement(dist_dir, PROVIDER), requirement(dist_dir, CORE, "[server]")
    return fresh_env(tmp_path_factory, "airflow", lock(PROVIDER), *wheels)


@pytest.fixture(scope="session")
def prefect_env(tmp_path_factory: pytest.TempPathFactory, dist_dir: Path) -> FreshEnv:
    """The collection from its wheel, with Prefect and runwatch[server] (from its wheel) under it."""
    wheels = requirement(dist_dir, COLLECTION), requirement(dist_dir, CORE, "[server]")
    return fresh_env(tmp_path_factory, "prefect", lock(COLLECTION), *wheels)
