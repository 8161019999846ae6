"""Each wheel installed alone in a fresh environment: it imports from there and does one real wait."""

from __future__ import annotations

from pathlib import Path

import pytest
from distributions import COLLECTION, CORE, PROVIDER, FreshEnv, declared_floors, run, wheel

# Builds, resolutions and installs of Airflow or Prefect take minutes on a loaded 2-core machine.
pytestmark = pytest.mark.timeout(900)


def test_the_core_wheel_waits_for_a_run_with_its_built_in_profile(core_env: FreshEnv, tmp_path: Path) -> None:
    out = core_env.script("smoke_core.py", tmp_path)
    assert Path(str(out["file"])).is_relative_to(core_env.site_packages())
    assert out["version"] == out["dist_version"] == CORE.version
    assert out["profiles"] == sorted(p.stem for p in (CORE.src / "profiles").glob("*.toml"))
    assert out["py_typed"] is True
    assert (out["profile_used"], out["status"], out["run_id"]) == ("standard", "SUCCEEDED", True)


def test_the_core_wheel_waits_with_every_dependency_at_its_declared_floor(
    core_floors_env: FreshEnv, dist_dir: Path, tmp_path: Path
) -> None:
    floors = declared_floors(wheel(dist_dir, CORE))
    assert {"aiohttp", "pydantic", "tenacity", "jmespath", "starlette", "uvicorn", "rich"} <= {
        n for n, _ in floors
    }
    installed = core_floors_env.versions()
    assert [(name, installed[name]) for name, _ in floors] == floors
    out = core_floors_env.script("smoke_core.py", tmp_path)
    assert (out["profile_used"], out["status"], out["run_id"]) == ("standard", "SUCCEEDED", True)


def test_the_core_wheel_cli_lists_the_built_in_profiles(core_env: FreshEnv, tmp_path: Path) -> None:
    done = run(core_env.path / "bin" / "runwatch", "profiles", cwd=tmp_path)
    listed = done.stdout
    for profile in (CORE.src / "profiles").glob("*.toml"):
        assert profile.stem in listed


def test_the_provider_wheel_registers_with_airflow_and_waits(airflow_env: FreshEnv, tmp_path: Path) -> None:
    home = tmp_path / "airflow-home"
    out = airflow_env.script(
        "smoke_airflow.py", tmp_path, AIRFLOW_HOME=str(home), AIRFLOW__CORE__LOAD_EXAMPLES="False"
    )
    assert Path(str(out["file"])).is_relative_to(airflow_env.site_packages())
    assert out["version"] == out["dist_version"] == out["provider_version"] == PROVIDER.version
    assert out["connection_type"] is True
    assert out["py_typed"] is True
    assert (out["event"], out["final"]) == ("success", "SUCCEEDED")


def test_the_collection_wheel_loads_in_prefect_and_waits_in_a_flow(
    prefect_env: FreshEnv, tmp_path: Path
) -> None:
    home = tmp_path / "prefect-home"
    out = prefect_env.script(
        "smoke_prefect.py",
        tmp_path,
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        # Prefect's default of 20 s is too short on a loaded 2-core machine (seen: a timeout at 20 s).
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="180",
    )
    assert Path(str(out["file"])).is_relative_to(prefect_env.site_packages())
    assert out["version"] == out["dist_version"] == COLLECTION.version
    assert out["collection"] == "prefect_runwatch"
    assert out["py_typed"] is True
    assert (out["status"], out["output_ref"]) == ("SUCCEEDED", "s3://bucket/out")
