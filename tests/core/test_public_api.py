"""The public surface is deliberate: a name added to or dropped from `runwatch.__all__` fails here first."""

from __future__ import annotations

import runwatch

PUBLIC = {
    # waiting
    "watch_run", "wait_for_run", "wait_for_run_sync", "run_sync", "outcome", "Policy", "Hooks", "Clock",
    # starting runs from tasks that may be retried
    "start_attempt",
    # the hand-off
    "WaitSpec", "WaitResult", "Outcome", "wait_result",
    # the model
    "State", "Phase", "RunStatus", "Progress", "RunError", "RunMachine", "Verdict", "Anomaly",
    # APIs, profiles, credentials, transports
    "RunApi", "StartedRun", "Auth", "BearerAuth", "BasicAuth", "HeaderAuth", "Profile", "load_profile",
    "builtin_profiles", "Token", "TokenAuth", "TokenFunction", "TokenProvider", "ClientCredentials", "auth_for", "AUTH_STYLES", "Transport", "AiohttpTransport", "HttpxTransport", "MockTransport", "Request",
    "RedisBudget",
    "Response",
    # runs that end under a filter (event sources)
    "EndedRuns", "Outcomes", "ended_runs", "read_run_list", "run_lists",
    # push
    "WebhookInbox", "webhooks",
    # remote text, shown as data
    "text",
    # errors
    "RunwatchError", "ProfileError", "ConfigurationError", "InvalidURL", "TransientError", "BodyTooLarge", "WaitOutcome",
    "RunFailed", "RunCancelled", "RunTimedOut", "RunPartiallySucceeded", "WaitTimeout", "RunLost",
    "StatusUnavailable", "BadStatusPayload", "RunNotFound", "AccessDenied", "IllegalTransition",
}  # fmt: skip


def test_all_is_exactly_the_public_surface_and_each_name_resolves() -> None:
    assert set(runwatch.__all__) == PUBLIC
    assert len(runwatch.__all__) == len(PUBLIC)  # no name twice
    for name in runwatch.__all__:
        assert getattr(runwatch, name) is not None


def test_every_error_is_a_runwatch_error_with_its_own_exit_code() -> None:
    errors = [getattr(runwatch, n) for n in PUBLIC if isinstance(getattr(runwatch, n), type)]
    errors = [e for e in errors if issubclass(e, BaseException)]
    assert all(issubclass(e, runwatch.RunwatchError) for e in errors)
    codes = {e.__name__: e.exit_code for e in errors}
    assert codes["RunFailed"] == 1
    assert [n for n, c in codes.items() if c == 1] == ["RunFailed"]  # 1 says the run failed, and only that
