"""Every README and docs snippet that needs only the core runs as written; every shell command is checked.

How snippets are found and marked: tests/docs_snippets.py. The Airflow and Prefect snippets run in their own
suites (tests/airflow, tests/prefect).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from docs_snippets import (
    SHELL_LANGS,
    Snippet,
    check_command,
    commands,
    python_snippets,
    report,
    snippets,
)

from runwatch.server import ReferenceServer

CORE = python_snippets("core")


def run_snippet(snippet: Snippet, tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The snippet saved as a file and run with `python FILE`, as a reader would."""
    script = tmp_path / f"snippet_{snippet.line}.py"
    script.write_text(snippet.code)
    return subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=110,
    )


@pytest.mark.parametrize("snippet", CORE, ids=[s.where for s in CORE])
def test_core_snippet_runs_as_written(
    snippet: Snippet, runwatch_server: ReferenceServer, tmp_path: Path
) -> None:
    done = run_snippet(snippet, tmp_path, {"JOBS_URL": runwatch_server.url})
    assert done.returncode == 0, f"{snippet.where} failed:\n{done.stderr}"
    assert "Traceback" not in done.stderr


def test_the_readme_core_quickstart_waits_for_a_run_it_started(
    runwatch_server: ReferenceServer, tmp_path: Path
) -> None:
    (quickstart,) = [s for s in CORE if s.path.name == "README.md" and "start_run" in s.code]
    done = run_snippet(quickstart, tmp_path, {"JOBS_URL": runwatch_server.url})
    assert done.returncode == 0, done.stderr
    (run_id,) = runwatch_server.stats()["runs"]
    assert done.stdout == f"SUCCEEDED memory://runwatch/{run_id}/output\n"


SHELL = [s for s in snippets() if s.lang in SHELL_LANGS]


@pytest.mark.parametrize("snippet", SHELL, ids=[s.where for s in SHELL])
def test_shell_commands_in_the_docs_exist_as_written(snippet: Snippet) -> None:
    problems = [p for words in commands(snippet) if (p := check_command(words))]
    assert not problems, f"{snippet.where}: " + "; ".join(problems)


def test_every_python_snippet_runs_somewhere_or_is_marked(capsys: pytest.CaptureFixture[str]) -> None:
    python = [s for s in snippets() if s.lang == "python"]
    envs = {env: len(python_snippets(env)) for env in ("core", "airflow", "prefect")}
    marked = [s.where for s in python if not s.runs]
    assert sum(envs.values()) + len(marked) == len(python)
    assert envs["core"] >= 3 and envs["airflow"] >= 2 and envs["prefect"] >= 4  # the quickstarts at least
    checked = sum(len(commands(s)) for s in SHELL)
    report(
        capsys,
        f"docs snippets: {len(python)} Python blocks: {envs['core']} run in tests/core, {envs['airflow']} in "
        f"tests/airflow, {envs['prefect']} in tests/prefect, {len(marked)} marked norun ({', '.join(marked)}); "
        f"{len(SHELL)} shell blocks, {checked} commands checked",
    )


def test_the_checks_catch_what_they_are_for() -> None:
    assert (
        check_command(["runwatch", "serve", "--token", "x"]) is not None
    )  # the stale docs/reference-server.md line
    assert check_command(["runwatch", "watch", "r", "--base-url", "http://h", "--json"]) is None
    assert (
        check_command(["runwatch", "watch", "RUN", "[--bogus", "S]"])
        == "runwatch watch: no such flag --bogus"
    )
    assert check_command(["./dev", "wheelz"]) is not None and check_command(["./dev", "demo"]) is None
    assert (
        check_command(["pip", "install", "./core[cli]", "./nope"])
        == "pip install: no ./nope in this repository"
    )
    assert check_command(["pip", "install", "runwatch[cli]"]).startswith("pip install runwatch[cli]: not on")  # type: ignore[union-attr]
    assert check_command(["pip", "install", "rich"]) is None
    block = Snippet(Path("x.md"), 1, "bash", frozenset(), "A=1 runwatch watch r \\\n  --json | jq . # c\n")
    assert commands(block) == [["A=1", "runwatch", "watch", "r", "--json"], ["jq", "."]]
