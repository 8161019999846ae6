"""Packaging suite fixtures: the built sdists and wheels, and one fresh environment per wheel.

The sdists and wheels are built once per session with ./dev's pinned uv (`uv build`, which builds the wheel
from the sdist, so a file missing from the sdist fails here too). Each wheel is installed, never editable,
into a fresh environment of its own with the versions of the matching lock (`-c locks/<env>.txt`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from distributions import COLLECTION, CORE, DISTS, PROVIDER, ROOT, UV, Dist, FreshEnv, requirement, run


@pytest.fixture(scope="session")
def dist_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist and wheel of each distribution, freshly built."""
    out = tmp_path_factory.mktemp("dist")
    for dist in DISTS:
        run(UV, "build", "--quiet", "--out-dir", out, ROOT / dist.folder)
    return out


@pytest.fixture(scope="session")
def fresh_env(dist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[..., FreshEnv]:
    """fresh_env(dist, *requirements): a new environment with those requirements, constrained by dist's lock."""
    made: dict[Dist, FreshEnv] = {}

    def make(dist: Dist, *requirements: str) -> FreshEnv:
        if dist not in made:
            env = FreshEnv(tmp_path_factory.mktemp(f"venv-{dist.lock}"))
            run(UV, "venv", "--quiet", "--python", sys.executable, env.path)
            lock = ROOT / "locks" / f"{dist.lock}.txt"
            run(UV, "pip", "install", "--quiet", "--python", env.python, "-c", lock, *requirements)
            made[dist] = env
        return made[dist]

    return make


@pytest.fixture(scope="session")
def core_env(fresh_env: Callable[..., FreshEnv], dist_dir: Path) -> FreshEnv:
    """runwatch[server,cli] from its wheel (the server extra runs the reference server for the wait)."""
    return fresh_env(CORE, requirement(dist_dir, CORE, "[server,cli]"))


@pytest.fixture(scope="session")
def airflow_env(fresh_env: Callable[..., FreshEnv], dist_dir: Path) -> FreshEnv:
    """The provider from its wheel, with Airflow and runwatch[server] (from its wheel) under it."""
    return fresh_env(PROVIDER, requirement(dist_dir, PROVIDER), requirement(dist_dir, CORE, "[server]"))


@pytest.fixture(scope="session")
def prefect_env(fresh_env: Callable[..., FreshEnv], dist_dir: Path) -> FreshEnv:
    """The collection from its wheel, with Prefect and runwatch[server] (from its wheel) under it."""
    return fresh_env(COLLECTION, requirement(dist_dir, COLLECTION), requirement(dist_dir, CORE, "[server]"))
