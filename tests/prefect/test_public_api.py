"""The collection's public surface is deliberate: a name added to or dropped from `__all__` fails here."""

from __future__ import annotations

import prefect_runwatch

PUBLIC = {
    "RunStatusApi", "RemoteRunJob", "RemoteRun", "RunOutcome", "Watcher",
    "start_run", "wait_for_run", "start_run_and_wait", "create_resume_automation", "push_run_status",
}  # fmt: skip


def test_all_is_exactly_the_public_surface_and_each_name_resolves() -> None:
    assert set(prefect_runwatch.__all__) == PUBLIC and len(prefect_runwatch.__all__) == len(PUBLIC)
    for name in prefect_runwatch.__all__:
        assert getattr(prefect_runwatch, name) is not None
