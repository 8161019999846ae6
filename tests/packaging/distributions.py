"""Our three distributions as the packaging suite sees them: where their sources are, how their built files
are named, and fresh environments that hold one from its wheel. Scripts run in those environments by their
own Python, from a directory outside the repository, so nothing can be imported from the source tree.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import zipfile
from dataclasses import dataclass
from email.parser import Parser
from pathlib import Path

import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
UV = os.environ.get("RUNWATCH_UV") or str(ROOT / ".venv" / "bootstrap" / "bin" / "uv")
BUILD_PINS = (
    ROOT / "locks" / "packaging.txt"
)  # pins hatchling, the build backend (`uv build --build-constraints`)


@dataclass(frozen=True)
class Dist:
    """One of our distributions: where its source is, what it installs, which lock it is tested with."""

    name: str  # the distribution name users pip-install
    folder: str  # its folder in the repository
    package: str  # the import package
    lock: str  # locks/<lock>.txt: the versions its fresh environment is installed with
    pythons: tuple[str, ...]  # the Python versions it declares, of those this project can resolve for

    @property
    def src(self) -> Path:
        return ROOT / self.folder / "src" / self.package

    @property
    def version(self) -> str:
        """`__version__` in the package's __init__.py: the one place a version is written."""
        match = re.search(r'^__version__ = "([^"]+)"$', (self.src / "__init__.py").read_text(), re.M)
        assert match, f"no __version__ in {self.src / '__init__.py'}"
        return match.group(1)

    @property
    def stem(self) -> str:
        """The file name prefix of its sdist and wheel (normalized name, version)."""
        return f"{re.sub(r'[-_.]+', '_', self.name).lower()}-{self.version}"


def extras(dist: Dist) -> str:
    """All the distribution's extras, as `[a,b]`: read from its pyproject so that a new one is covered."""
    project = tomllib.loads((ROOT / dist.folder / "pyproject.toml").read_text())["project"]
    return f"[{','.join(sorted(project.get('optional-dependencies', {})))}]"


CORE = Dist("runwatch", "core", "runwatch", "core", ("3.10", "3.11"))
PROVIDER = Dist("airflow-provider-runwatch", "airflow_provider", "runwatch_airflow", "airflow", ("3.11",))
COLLECTION = Dist("prefect-runwatch", "prefect_blocks", "prefect_runwatch", "prefect", ("3.10", "3.11"))
DISTS = (CORE, PROVIDER, COLLECTION)


def run(*args: str | Path, timeout: float = 600, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run a command, failing the test with its output when it fails."""
    done = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=timeout, check=False, **kwargs
    )
    assert done.returncode == 0, (
        f"{args[0]} {args[1]} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    )
    return done


def built_files(dist_dir: Path) -> list[Path]:
    """The sdists and wheels in dist_dir (uv build also leaves a .gitignore there)."""
    return sorted(p for p in dist_dir.iterdir() if p.name.endswith((".tar.gz", ".whl")))


def wheel(dist_dir: Path, dist: Dist) -> Path:
    return dist_dir / f"{dist.stem}-py3-none-any.whl"


def requirement(dist_dir: Path, dist: Dist, extras: str = "") -> str:
    """A requirement on the built wheel itself: never the editable tree, never a same-named index package."""
    return f"{dist.name}{extras} @ {wheel(dist_dir, dist).as_uri()}"


@dataclass(frozen=True)
class FreshEnv:
    """A virtual environment holding one distribution from its wheel, and what it needs."""

    path: Path

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    def site_packages(self) -> Path:
        return Path(
            run(self.python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))").stdout.strip()
        )

    def versions(self) -> dict[str, Version]:
        """The version of every distribution installed in it, by normalized name."""
        code = (
            "import json, importlib.metadata as m; "
            "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))"
        )
        found: dict[str, str] = json.loads(run(self.python, "-c", code).stdout)
        return {canonicalize_name(name): Version(version) for name, version in found.items()}

    def installed(self) -> set[str]:
        """The normalized names of every distribution installed in it."""
        return set(self.versions())

    def script(self, name: str, workdir: Path, **env: str) -> dict[str, object]:
        """Run tests/packaging/<name> with this environment's Python; the JSON line it prints last."""
        clean = {
            k: v
            for k, v in os.environ.items()
            if k not in {"PYTHONPATH", "VIRTUAL_ENV", "RUNWATCH_ENV"}
            and not k.startswith(("AIRFLOW", "PREFECT"))
        }
        clean |= {
            "VIRTUAL_ENV": str(self.path),
            "PATH": f"{self.path / 'bin'}{os.pathsep}{clean['PATH']}",
            **env,
        }
        done = run(self.python, HERE / name, cwd=workdir, env=clean, timeout=300)
        result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
        return result


def declared_floors(
    whl: Path, extras: frozenset[str] = frozenset({"server", "cli"})
) -> list[tuple[str, Version]]:
    """(name, lowest version allowed) of each dependency the wheel declares for Python 3.11 with `extras`."""
    with zipfile.ZipFile(whl) as archive:
        meta_name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(archive.read(meta_name).decode())
    floors = []
    for line in meta.get_all("Requires-Dist") or []:
        req = Requirement(line)
        envs = [{"extra": e, "python_version": "3.11", "sys_platform": "linux"} for e in ("", *extras)]
        if req.marker is not None and not any(req.marker.evaluate(env) for env in envs):
            continue
        lows = [spec.version for spec in req.specifier if spec.operator in {">=", "~="}]
        assert len(lows) == 1, f"{req}: no single floor"
        floors.append((canonicalize_name(req.name), Version(lows[0])))
    return floors
