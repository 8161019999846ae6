"""The built sdists and wheels: names, metadata that passes twine, ranges not pins, the files inside."""

from __future__ import annotations

import re
import sys
import tarfile
import zipfile
from email.message import Message
from email.parser import Parser
from pathlib import Path

import pytest
from distributions import BUILD_PINS, COLLECTION, CORE, DISTS, PROVIDER, ROOT, Dist, built_files, run, wheel
from packaging.requirements import Requirement

# What each wheel must declare to Python's tooling and to Airflow / Prefect / pytest.
ENTRY_POINTS = {
    CORE: ["[console_scripts]\nrunwatch = runwatch.cli:main", "[pytest11]\nrunwatch = runwatch.testing"],
    PROVIDER: [
        "[apache_airflow_provider]\nprovider_info = runwatch_airflow.get_provider_info:get_provider_info"
    ],
    COLLECTION: [
        "[console_scripts]\nprefect-runwatch = prefect_runwatch.cli:main",
        "[prefect.collections]\nprefect_runwatch = prefect_runwatch",
    ],
}

# Builds, resolutions and installs of Airflow or Prefect take minutes on a loaded 2-core machine.
pytestmark = pytest.mark.timeout(900)


def source_files(dist: Dist) -> set[str]:
    """Every file of the import package in the source tree, as paths inside a wheel."""
    return {
        str(p.relative_to(dist.src.parent))
        for p in dist.src.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }


def metadata(dist_dir: Path, dist: Dist) -> Message:
    with zipfile.ZipFile(wheel(dist_dir, dist)) as whl:
        text = whl.read(f"{dist.stem}.dist-info/METADATA").decode()
    return Parser().parsestr(text)


def test_each_distribution_builds_exactly_one_sdist_and_one_wheel(dist_dir: Path) -> None:
    expected = {f"{d.stem}.tar.gz" for d in DISTS} | {f"{d.stem}-py3-none-any.whl" for d in DISTS}
    assert {p.name for p in dist_dir.iterdir() if not p.name.startswith(".")} == expected


def test_twine_check_passes_strict(dist_dir: Path) -> None:
    files = built_files(dist_dir)
    done = run(sys.executable, "-m", "twine", "check", "--strict", *files)
    assert done.stdout.count("PASSED") == len(files) == 6, done.stdout


@pytest.mark.parametrize("dist", DISTS, ids=lambda d: d.name)
def test_the_wheel_holds_the_whole_package_with_its_data_files(dist_dir: Path, dist: Dist) -> None:
    with zipfile.ZipFile(wheel(dist_dir, dist)) as whl:
        names = set(whl.namelist())
    inside = {n for n in names if n.startswith(f"{dist.package}/")}
    assert inside == source_files(dist)
    assert f"{dist.package}/py.typed" in inside
    assert not names - inside - {n for n in names if n.startswith(f"{dist.stem}.dist-info/")}


def test_the_core_wheel_ships_every_built_in_profile(dist_dir: Path) -> None:
    profiles = sorted(p.name for p in (CORE.src / "profiles").glob("*.toml"))
    assert "standard.toml" in profiles
    with zipfile.ZipFile(wheel(dist_dir, CORE)) as whl:
        shipped = sorted(n.removeprefix("runwatch/profiles/") for n in whl.namelist() if n.endswith(".toml"))
    assert shipped == profiles


@pytest.mark.parametrize("dist", DISTS, ids=lambda d: d.name)
def test_the_sdist_holds_the_sources_readme_and_pyproject(dist_dir: Path, dist: Dist) -> None:
    with tarfile.open(dist_dir / f"{dist.stem}.tar.gz") as sdist:
        names = {n.removeprefix(f"{dist.stem}/") for n in sdist.getnames()}
    assert {"pyproject.toml", "README.md", "PKG-INFO"} <= names
    assert {f"src/{f}" for f in source_files(dist)} <= names


@pytest.mark.parametrize("dist", DISTS, ids=lambda d: d.name)
def test_the_wheel_is_built_by_the_locked_hatchling(dist_dir: Path, dist: Dist) -> None:
    locked = re.search(r"^hatchling==(\S+)$", BUILD_PINS.read_text(), re.M)
    assert locked
    with zipfile.ZipFile(wheel(dist_dir, dist)) as whl:
        generator = Parser().parsestr(whl.read(f"{dist.stem}.dist-info/WHEEL").decode())["Generator"]
    assert generator == f"hatchling {locked.group(1)}"


@pytest.mark.parametrize("dist", DISTS, ids=lambda d: d.name)
def test_entry_points_are_declared(dist_dir: Path, dist: Dist) -> None:
    with zipfile.ZipFile(wheel(dist_dir, dist)) as whl:
        text = whl.read(f"{dist.stem}.dist-info/entry_points.txt").decode()
    for section in ENTRY_POINTS[dist]:
        assert section in text


@pytest.mark.parametrize("dist", DISTS, ids=lambda d: d.name)
def test_metadata_names_version_python_license_and_readme(dist_dir: Path, dist: Dist) -> None:
    meta = metadata(dist_dir, dist)
    assert (meta["Name"], meta["Version"]) == (dist.name, dist.version)
    assert meta["Requires-Python"] == f">={dist.pythons[0]}"
    assert meta["License-Expression"] == "Apache-2.0"
    assert meta["Description-Content-Type"] == "text/markdown"
    assert meta.get_payload() == (ROOT / dist.folder / "README.md").read_text()


@pytest.mark.parametrize("dist", DISTS, ids=lambda d: d.name)
def test_dependencies_are_ranges_with_a_floor_never_pins(dist_dir: Path, dist: Dist) -> None:
    requirements = [Requirement(r) for r in metadata(dist_dir, dist).get_all("Requires-Dist") or []]
    assert requirements
    for req in requirements:
        operators = {spec.operator for spec in req.specifier}
        assert not operators & {"==", "==="}, f"{dist.name} pins {req}"
        assert operators & {">=", ">", "~="}, f"{dist.name} has no floor for {req}"
        assert req.url is None, f"{dist.name} depends on a URL: {req}"


@pytest.mark.parametrize("dist", [PROVIDER, COLLECTION], ids=lambda d: d.name)
def test_the_integrations_take_the_core_of_their_own_minor_version(dist_dir: Path, dist: Dist) -> None:
    core = [
        Requirement(r)
        for r in metadata(dist_dir, dist).get_all("Requires-Dist") or []
        if r.startswith("runwatch")
    ]
    # One plain dependency; an extra (`[redis]`) may ask for the core again, with extras, in the same range.
    assert len([r for r in core if r.marker is None]) == 1
    major, minor = CORE.version.split(".")[:2]
    for requirement in core:
        assert requirement.specifier.contains(CORE.version), requirement
        assert not requirement.specifier.contains(f"{major}.{int(minor) + 1}.0"), requirement


def test_readmes_give_an_install_line_and_an_example() -> None:
    for dist in DISTS:
        readme = (ROOT / dist.folder / "README.md").read_text()
        assert f"pip install {dist.name}" in readme, dist.name
        assert "```python" in readme, dist.name
        assert "](../" not in readme, f"{dist.name}: a relative link does not resolve on the package index"
