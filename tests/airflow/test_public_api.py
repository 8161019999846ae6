"""The provider's public modules say what they export, and that is deliberate: a change fails here first."""

from __future__ import annotations

import importlib

import pytest

PUBLIC = {
    "runwatch_airflow.hooks.runwatch": {"PROBE_RUN_ID", "RunStatusHook"},
    "runwatch_airflow.operators.runwatch": {"RUN_ID_KEY", "StartRunOperator", "default_idempotency_key"},
    "runwatch_airflow.sensors.runwatch": {"RunStatusSensor"},
    "runwatch_airflow.triggers.runwatch": {"RunStatusTrigger", "error_event", "status_payload"},
    "runwatch_airflow.triggers.run_ended": {"CURSOR_KEY_PREFIX", "PERSIST_GRACE", "RunEndedTrigger"},
}


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_each_public_module_exports_exactly_its_names(module: str) -> None:
    loaded = importlib.import_module(module)
    assert set(loaded.__all__) == PUBLIC[module]
    for name in loaded.__all__:
        assert getattr(loaded, name) is not None


def test_every_outcome_has_its_own_exception_and_none_says_failed_for_what_we_could_not_tell() -> None:
    import runwatch
    from runwatch_airflow import exceptions

    classes = {name: getattr(exceptions, name) for name in exceptions.__all__ if name.startswith("Remote")}
    assert len(set(classes.values())) == len(classes)  # one class per outcome
    for name in (
        "RunNotFound",
        "AccessDenied",
        "StatusUnavailable",
        "BadStatusPayload",
        "ConfigurationError",
    ):
        assert exceptions.for_outcome(name) is not exceptions.RemoteRunFailed
        assert not issubclass(exceptions.for_outcome(name), exceptions.RemoteRunFailed)
    assert exceptions.for_outcome(runwatch.RunFailed.__name__) is exceptions.RemoteRunFailed
