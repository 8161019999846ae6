"""Each wheel's dependency tree: the provider pulls no Prefect, the collection no Airflow, the core neither.

Read twice: resolved from the package index as a user's `pip install` would (no lock, newest versions the
ranges allow, for each Python the distributions declare and this project can resolve for), and as installed
in the fresh environments the smoke tests use.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from distributions import COLLECTION, CORE, PROVIDER, UV, Dist, FreshEnv, extras, requirement, run

AIRFLOW = re.compile(r"^apache-airflow($|-)")
PREFECT = re.compile(r"^prefect($|-)")

# What each wheel, installed with the core from its wheel, must and must not bring (the core with every extra).
CASES = {
    "runwatch": (CORE, extras(CORE), None, (AIRFLOW, PREFECT)),
    "airflow-provider-runwatch": (PROVIDER, "[server]", "apache-airflow", (PREFECT,)),
    "prefect-runwatch": (COLLECTION, "[server]", "prefect", (AIRFLOW,)),
}

# Builds, resolutions and installs of Airflow or Prefect take minutes on a loaded 2-core machine.
pytestmark = pytest.mark.timeout(900)


def resolve(dist_dir: Path, tmp_path: Path, dist: Dist, core_extras: str, python: str) -> set[str]:
    """The names `uv pip compile` resolves for the wheel with all its extras (and the core's wheel) from the
    index."""
    wanted = tmp_path / "requirements.in"
    lines = {requirement(dist_dir, CORE, core_extras), requirement(dist_dir, dist, extras(dist))}
    wanted.write_text("\n".join(sorted(lines)) + "\n")
    done = run(
        UV, "pip", "compile", "--quiet", "--no-header", "--no-annotate", wanted,
        "--python-version", python, "--python-platform", "x86_64-unknown-linux-gnu",
    )  # fmt: skip
    names = set()
    for line in done.stdout.splitlines():
        if line and not line.startswith(("#", " ")):
            names.add(re.split(r"[ =@\[;]", line, maxsplit=1)[0].lower().replace("_", "-"))
    return names


@pytest.mark.parametrize(
    ("name", "python"), [(name, python) for name, case in CASES.items() for python in case[0].pythons]
)
def test_the_resolved_tree_keeps_the_orchestrators_apart(
    dist_dir: Path, tmp_path: Path, name: str, python: str
) -> None:
    dist, core_extras, needs, forbidden = CASES[name]
    names = resolve(dist_dir, tmp_path, dist, core_extras, python)
    assert {"runwatch", dist.name, "aiohttp", "pydantic", "tenacity", "jmespath", "redis"} <= names
    if needs is not None:
        assert needs in names
    for pattern in forbidden:
        assert not {n for n in names if pattern.match(n)}, f"{name} pulls {pattern.pattern}"


def test_the_installed_core_has_neither_orchestrator(core_env: FreshEnv) -> None:
    installed = core_env.installed()
    assert {"runwatch", "aiohttp", "starlette", "rich"} <= installed
    assert not {n for n in installed if AIRFLOW.match(n) or PREFECT.match(n)}


def test_the_installed_provider_has_no_prefect(airflow_env: FreshEnv) -> None:
    installed = airflow_env.installed()
    assert {"airflow-provider-runwatch", "runwatch", "apache-airflow"} <= installed
    assert not {n for n in installed if PREFECT.match(n)}


def test_the_installed_collection_has_no_airflow(prefect_env: FreshEnv) -> None:
    installed = prefect_env.installed()
    assert {"prefect-runwatch", "runwatch", "prefect"} <= installed
    assert not {n for n in installed if AIRFLOW.match(n)}


@pytest.mark.parametrize("env_name", ["core_env", "airflow_env", "prefect_env"])
def test_every_installed_requirement_is_satisfied(request: pytest.FixtureRequest, env_name: str) -> None:
    env: FreshEnv = request.getfixturevalue(env_name)
    done = run(UV, "pip", "check", "--python", env.python)
    assert "All installed packages are compatible" in done.stdout + done.stderr
