"""The CLI with real APIs' profiles: URL parameters (`--param`, `RUNWATCH_PARAM_<NAME>`) and `profiles NAME`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runwatch import load_profile
from runwatch.cli import main
from runwatch.server import ReferenceServer

pytestmark = pytest.mark.runwatch_server(retry_after=0)

FAST = ["--interval", "0.02", "--max-interval", "0.1"]


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_a_vendor_run_id_with_its_parameter(
    runwatch_server: ReferenceServer, capsys: pytest.CaptureFixture[str]
) -> None:
    script = [{"state": "1", "for": 0.05}, {"state": "3", "for": 0.05}, {"state": "10"}]
    run = runwatch_server.create_vendor_run("dbt-cloud", script)
    argv = ["watch", run["id"], "--base-url", run["base_url"], "--profile", "dbt-cloud", "--json", *FAST]
    code, out, err = run_cli(capsys, *argv, "--param", "account_id=7")
    assert (code, err) == (0, "")
    last = json.loads(out.splitlines()[-1])
    assert (last["id"], last["status"], last["raw_status"]) == (run["id"], "SUCCEEDED", "10")


def _echo_profile(tmp_path: Path) -> Path:
    # The standard API, with a parameter in its URL; the status URL (with the parameter) shows as `url`.
    path = tmp_path / "echo.toml"
    path.write_text(
        'name = "echo"\nstatus_url = "{base_url}/runs/{run_id}?account={account_id}"\n'
        '[fields]\nid = "id"\nstatus = "status"\n[states]\nSUCCEEDED = "SUCCEEDED"\n'
    )
    return path


def test_parameters_come_from_the_environment_and_flags_win(
    runwatch_server: ReferenceServer,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run = runwatch_server.create_run(script=[{"status": "SUCCEEDED"}])
    argv = ["watch", run["id"], "--base-url", runwatch_server.url, "--profile", str(_echo_profile(tmp_path))]
    monkeypatch.setenv("RUNWATCH_PARAM_ACCOUNT_ID", "from-env")
    code, out, _ = run_cli(capsys, *argv, "--json")
    assert code == 0 and json.loads(out)["url"].endswith("?account=from-env")
    code, out, _ = run_cli(capsys, *argv, "--json", "--param", "account_id=from-flag")
    assert code == 0 and json.loads(out)["url"].endswith("?account=from-flag")


def test_a_missing_parameter_is_a_usage_error_before_any_request(
    runwatch_server: ReferenceServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RUNWATCH_PARAM_OWNER", raising=False)
    monkeypatch.delenv("RUNWATCH_PARAM_REPO", raising=False)
    base = f"{runwatch_server.url}/vendors/github-actions"
    code, out, err = run_cli(
        capsys, "watch", "5", "--base-url", base, "--profile", "github-actions", "--param", "owner=o"
    )
    assert (code, out) == (64, "")
    assert err.strip() == (
        "runwatch: profile 'github-actions' needs --param repo=... (or RUNWATCH_PARAM_REPO) to make the URL of run '5'"
    )
    assert runwatch_server.stats()["requests_total"] == 0
    # A full status URL needs no parameter.
    run = runwatch_server.create_vendor_run("github-actions", [{"state": "completed/success"}])
    url = f"{run['base_url']}/repos/o/r/actions/runs/{run['id']}"
    code, out, _ = run_cli(capsys, "watch", url, "--profile", "github-actions", "--json")
    assert code == 0 and json.loads(out)["status"] == "SUCCEEDED"


@pytest.mark.parametrize("bad", ["account_id", "=7", "two words=7"])
def test_a_malformed_param_is_a_usage_error(capsys: pytest.CaptureFixture[str], bad: str) -> None:
    code, _, err = run_cli(capsys, "watch", "5", "--base-url", "http://127.0.0.1:9", "--param", bad)
    assert code == 64 and "expected NAME=VALUE" in err and len(err.splitlines()) == 1


def test_help_shows_param_and_its_environment_spelling(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["watch", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--param NAME=VALUE" in out and "RUNWATCH_PARAM_<NAME>" in out


def test_profiles_name_shows_one_whole_with_its_parameters(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "profiles", "github_actions")  # an alias finds it too
    assert code == 0
    head, _, rest = out.partition("{")
    assert head.splitlines()[0].startswith("github-actions: GitHub Actions workflow runs")
    assert "source: GitHub REST API 2022-11-28" in head and "also known as: github_actions" in head
    rows = [" ".join(line.split()) for line in head.splitlines()]
    assert (
        "owner RUNWATCH_PARAM_OWNER the repository's owner (user or organization); needed for a run id"
        in rows
    )
    assert "workflow RUNWATCH_PARAM_WORKFLOW the workflow's file name or id, for start_run" in rows
    assert load_profile(json.loads("{" + rest)) == load_profile("github-actions")
    code, out, _ = run_cli(capsys, "profiles", "google-lro", "--json")
    shown = load_profile(json.loads(out))
    assert shown == load_profile("google-lro") and shown.parameters["version"].default == "v1"
    code, out, _ = run_cli(capsys, "profiles", "google-lro")
    assert "  version   RUNWATCH_PARAM_VERSION   the service's API version; default 'v1'" in out


def test_profiles_name_of_a_file_and_of_nothing(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = run_cli(capsys, "profiles", str(_echo_profile(tmp_path)))
    assert code == 0 and "account_id  RUNWATCH_PARAM_ACCOUNT_ID  needed for a run id" in out
    code, out, err = run_cli(capsys, "profiles", "nope")
    assert (code, out) == (64, "") and "no built-in profile 'nope'" in err


def test_profiles_lists_every_builtin_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "profiles")
    rows = dict(line.split(maxsplit=1) for line in out.splitlines())
    assert code == 0 and len(rows) == 13
    assert rows["kubernetes-job"].startswith("Kubernetes batch/v1 Jobs")
    assert all(description.strip() for description in rows.values())


def test_profiles_json_lines_say_what_each_profile_offers(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "profiles", "--json")
    rows = {row["name"]: row for row in map(json.loads, out.splitlines())}
    assert code == 0
    assert rows["dbt-cloud"]["parameters"] == ["account_id", "job_id"]
    assert (rows["kubernetes-job"]["cancel"], rows["kubernetes-job"]["list_runs"]) == (False, True)
    assert rows["airflow"]["source"].startswith("Apache Airflow 3.3.2 REST API v2")
