"""Every README and docs snippet that needs Prefect runs as written, in document order (`python FILE`), against
the session's Prefect server and a reference server. How snippets are found: tests/docs_snippets.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from docs_snippets import python_snippets, report

from runwatch.server import ReferenceServer

PREFECT = python_snippets("prefect")
FILES = sorted({s.path for s in PREFECT}, key=lambda p: (p.name != "README.md", p.name))


@pytest.mark.timeout(600)
@pytest.mark.parametrize("doc", FILES, ids=[p.name for p in FILES])
def test_prefect_snippets_run_as_written_in_order(
    doc: Path, prefect_api: str, runwatch_server: ReferenceServer, tmp_path: Path
) -> None:
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "JOBS_URL": runwatch_server.url}
    outputs = []
    for snippet in (s for s in PREFECT if s.path == doc):
        script = tmp_path / f"snippet_{snippet.line}.py"
        script.write_text(snippet.code)
        done = subprocess.run(
            [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=280
        )
        assert done.returncode == 0, f"{snippet.where} failed:\n{done.stderr[-3000:]}"
        outputs.append(done.stdout + done.stderr)
    # The quickstart's flow: one export and a backfill of 30 days, each a remote run that succeeded.
    stats = runwatch_server.stats()
    assert stats["runs_created"] == 31
    assert f"memory://runwatch/{next(iter(stats['runs']))}/output" in outputs[-1]


def test_prefect_snippets_were_found(capsys: pytest.CaptureFixture[str]) -> None:
    assert [p.name for p in FILES] == ["README.md", "prefect.md"]
    report(
        capsys, f"docs snippets: {len(PREFECT)} Prefect snippets run ({', '.join(s.where for s in PREFECT)})"
    )
