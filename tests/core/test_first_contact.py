"""A new user's first mistakes are caught at once, in one line that says what to fix (issue 15)."""

from __future__ import annotations

import io
import time
import traceback
from collections.abc import Iterator
from typing import Any

import pytest
from rich.console import Console
from rich.progress_bar import ProgressBar
from rich.table import Table

import runwatch
from runwatch.cli import main
from runwatch.cli._display import LiveDisplay
from runwatch.server import ReferenceServer

pytestmark = pytest.mark.runwatch_server(retry_after=0)


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# ------------------------------------------------------------------------------------------ names


def test_states_and_phases_print_as_their_names() -> None:
    assert str(runwatch.State.QUEUED) == "QUEUED"
    assert f"{runwatch.State.RUNNING}" == "RUNNING"
    assert "%s" % runwatch.Phase.ACTIVE == "ACTIVE"  # noqa: UP031 - as logging formats it
    assert str(runwatch.State.PARTIAL_SUCCESS.phase) == "TERMINAL"
    assert runwatch.State("QUEUED") is runwatch.State.QUEUED  # the value is unchanged


# ------------------------------------------------------------------------------------------ URLs


@pytest.mark.parametrize(
    ("base_url", "says"),
    [
        ("api.example.com", "must start with http:// or https://: did you mean 'https://api.example.com'?"),
        ("localhost:8765", "did you mean 'https://localhost:8765'?"),
        ("ftp://files.example.com", "must start with http:// or https://"),
        ("http://", "has no host"),
        ("http://127.0.0.1:99999", "bad port"),
        ("http://127.0.0.1:80a", "bad port"),
        ("http://api.example .com", "contains whitespace"),
    ],
)
def test_a_malformed_base_url_is_refused_when_the_api_is_made(base_url: str, says: str) -> None:
    with pytest.raises(runwatch.InvalidURL) as caught:
        runwatch.RunApi(base_url)
    assert says in str(caught.value)
    assert isinstance(caught.value, ValueError) and caught.value.exit_code == 64


def test_a_malformed_url_never_shows_its_credentials() -> None:
    with pytest.raises(runwatch.InvalidURL) as caught:
        runwatch.RunApi("https://me:hunter2@api.example.com:port")
    assert "hunter2" not in str(caught.value) and "bad port" in str(caught.value)


def test_good_base_urls_are_kept() -> None:
    assert runwatch.RunApi("http://127.0.0.1:8765/").base_url == "http://127.0.0.1:8765"
    assert runwatch.RunApi("https://[::1]:8443/api/v2").base_url == "https://[::1]:8443/api/v2"


def test_cli_base_url_without_scheme_is_a_usage_error_at_once(capsys: pytest.CaptureFixture[str]) -> None:
    begun = time.monotonic()
    code, out, err = run_cli(capsys, "watch", "r-1", "--base-url", "127.0.0.1:8765")
    assert code == 64 and out == ""
    assert err == (
        "runwatch: base URL '127.0.0.1:8765' must start with http:// or https://: "
        "did you mean 'https://127.0.0.1:8765'?\n"
    )
    assert time.monotonic() - begun < 20  # no retries: far below the 300 s it used to take


def test_cli_malformed_status_url_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "watch", "http://127.0.0.1:70000/runs/r-1")
    assert code == 64 and "status URL 'http://127.0.0.1:70000/runs/r-1' has a bad port" in err


def test_an_empty_run_id_is_refused_before_any_request(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(runwatch.InvalidURL, match="the run id is empty"):
        runwatch.RunApi("http://127.0.0.1:9").status_url(" ")
    code, _, err = run_cli(capsys, "watch", "", "--base-url", "http://127.0.0.1:9")
    assert (code, err) == (64, "runwatch: the run id is empty: give a run id or a full status URL\n")


# ------------------------------------------------------------------------------------------ flags and secrets


def test_token_is_not_taken_for_token_env_and_never_printed(capsys: pytest.CaptureFixture[str]) -> None:
    secret = "s3cr3t-Value.42"
    code, out, err = run_cli(capsys, "watch", "r-1", "--base-url", "http://127.0.0.1:9", "--token", secret)
    assert code == 64 and out == ""
    assert secret not in err
    assert err.startswith("runwatch: unrecognized arguments: --token and 1 value(s), not shown")
    assert "--token-env VAR" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize(
    "argv", [["--token=s3cr3t-Value.42"], ["--tok", "s3cr3t-Value.42"], ["--token-e", "X"]]
)
def test_no_flag_is_abbreviated(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    code, _, err = run_cli(capsys, "watch", "r-1", "--base-url", "http://127.0.0.1:9", *argv)
    assert code == 64 and "unrecognized arguments" in err and "s3cr3t" not in err


@pytest.mark.parametrize("command", [["watch", "r-1", "--base-url", "http://127.0.0.1:9"], ["serve"]])
def test_token_env_value_that_is_no_variable_name_is_refused_unseen(
    capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    secret = "eyJhbGciOi.J9-x"
    code, out, err = run_cli(capsys, *command, "--token-env", secret)
    assert code == 64 and out == "" and secret not in err
    assert "expects the NAME of an environment variable" in err and len(err.splitlines()) == 1


def test_unset_token_variable_is_named_only_when_it_looks_like_one(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RUNWATCH_TEST_UNSET_TOKEN", raising=False)
    code, _, err = run_cli(
        capsys, "watch", "http://127.0.0.1:9/runs/r", "--token-env", "RUNWATCH_TEST_UNSET_TOKEN"
    )
    assert code == 64 and "RUNWATCH_TEST_UNSET_TOKEN is not set or empty" in err
    lookalike = "ghp_16C7e42F292c6912E7710c838347Ae178B4a"  # a GitHub token is a valid variable name
    code, _, err = run_cli(capsys, "watch", "http://127.0.0.1:9/runs/r", "--token-env", lookalike)
    assert code == 64 and lookalike not in err
    assert err == "runwatch: --token-env: the environment variable it names is not set or empty\n"


def test_unknown_command_is_not_echoed(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "s3cr3t-Value.42", "watch")
    assert code == 64 and "s3cr3t" not in err and "invalid choice (choose from 'watch'" in err


# ------------------------------------------------------------------------------------------ errors say why


def test_an_error_answer_carries_the_servers_reason(runwatch_server: ReferenceServer) -> None:
    api = runwatch.RunApi(runwatch_server.url)
    with pytest.raises(runwatch.RunwatchError) as caught:
        runwatch.run_sync(api.start_run({"job": "export"}))
    assert str(caught.value) == (
        f"{runwatch_server.url}/runs: HTTP 422: body.job: unknown field (allowed: faults, heartbeat_every, "
        "metadata, not_found_for, retry_after, script, stop_heartbeat_after, webhook)"
    )


def test_not_found_and_denied_carry_the_reason_too(
    runwatch_server_factory: Any, runwatch_server: ReferenceServer
) -> None:
    with pytest.raises(runwatch.RunNotFound, match=r"\(HTTP 404: no such run\)$"):
        runwatch.run_sync(runwatch.RunApi(runwatch_server.url).get_status("r-none"))
    locked = runwatch_server_factory(token="right", retry_after=0)
    wrong = runwatch.RunApi(locked.url, auth=runwatch.BearerAuth("wrong"))
    with pytest.raises(runwatch.AccessDenied, match=r"\(HTTP 401: \S.*\)$") as caught:
        runwatch.run_sync(wrong.get_status("r-any"))
    assert "wrong" not in str(caught.value)  # the token is never in the message


def test_html_and_long_bodies_are_not_pasted_into_the_error() -> None:
    from runwatch._api import _reason

    assert _reason(b"<html><body>502 Bad Gateway</body></html>") == ""
    assert _reason(b'{"error": {"message": "quota\\n exceeded"}}') == "quota exceeded"
    assert _reason(b'{"detail": [{"loc": ["body"]}]}') == ""
    assert _reason(b"plain words") == "plain words"
    long = _reason(b'{"message": "' + b"x" * 500 + b'"}')
    assert len(long) == 200 and long.endswith("\u2026")


def test_sync_errors_do_not_chain_no_running_event_loop(runwatch_server: ReferenceServer) -> None:
    api = runwatch.RunApi(runwatch_server.url)
    with pytest.raises(runwatch.RunNotFound) as caught:
        runwatch.run_sync(api.get_status("r-none"))
    printed = "".join(traceback.format_exception(caught.value))
    assert "no running event loop" not in printed
    assert caught.value.__context__ is None and caught.value.__cause__ is None


# ------------------------------------------------------------------------------------------ live panel


def _bars(renderable: Any) -> Iterator[ProgressBar]:
    """Every progress bar inside a rich renderable made of panels and grids."""
    inner = getattr(renderable, "renderable", None)
    if inner is not None:
        yield from _bars(inner)
    if isinstance(renderable, ProgressBar):
        yield renderable
    if isinstance(renderable, Table):
        for column in renderable.columns:
            for cell in column._cells:
                yield from _bars(cell)


@pytest.mark.parametrize(("final", "completed"), [("SUCCEEDED", 100.0), ("FAILED", 0.0)])
def test_the_final_panel_shows_a_still_bar(final: str, completed: float) -> None:
    display = LiveDisplay(io.StringIO(), runwatch.RunApi("http://127.0.0.1:9"))
    display.change(runwatch.RunStatus(id="r-1", status=runwatch.State.RUNNING))
    (bar,) = _bars(display.__rich__())
    assert bar.pulse  # running with no percent: the bar says "working"
    display.change(runwatch.RunStatus(id="r-1", status=runwatch.State(final)))
    (bar,) = _bars(display.__rich__())
    assert (bar.pulse, bar.completed) == (False, completed)
    Console(file=io.StringIO(), width=100).print(display)  # and it still renders
