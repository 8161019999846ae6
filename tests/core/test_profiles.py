"""Profiles: loading, validation errors that name the key, and the built-in vocabularies."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from runwatch import BadStatusPayload, ProfileError, State, builtin_profiles, load_profile

MINIMAL = {
    "name": "mini",
    "status_url": "{base_url}/jobs/{run_id}",
    "states": {"going": "RUNNING", "ok": "SUCCEEDED"},
}


def test_builtins_load_and_round_trip_as_data() -> None:
    assert {"standard", "github_actions", "databricks", "dbt_cloud"} <= set(builtin_profiles())
    for name in builtin_profiles():
        profile = load_profile(name)
        assert load_profile(json.loads(json.dumps(profile.to_dict()))) == profile


def test_profiles_load_from_json_and_toml_files(tmp_path: Path) -> None:
    (tmp_path / "p.json").write_text(json.dumps(MINIMAL))
    (tmp_path / "p.toml").write_text(
        'name = "mini"\nstatus_url = "{base_url}/jobs/{run_id}"\n[states]\ngoing = "RUNNING"\nok = "SUCCEEDED"\n'
    )
    assert (
        load_profile(tmp_path / "p.json") == load_profile(str(tmp_path / "p.toml")) == load_profile(MINIMAL)
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"fieldz": {}}, "fieldz: unknown key"),
        ({"fields": {"stauts": "x"}}, "fields.stauts: unknown key"),
        ({"states": {"going": "RUNNIN"}}, "states: 'going' maps to 'RUNNIN', which is not a canonical state"),
        ({"timestamps": "epoch_us"}, "timestamps: Input should be"),
        ({"long_poll": {"style": "socket"}}, "long_poll.style"),
        ({"fields": {"status": "a.[b"}}, "fields.status: bad JMESPath"),
        ({"states": {"Done": "SUCCEEDED", "done": "FAILED"}}, "mapped twice"),
    ],
)
def test_validation_errors_name_the_bad_key(change: dict[str, object], message: str) -> None:
    with pytest.raises(ProfileError, match="mini") as info:
        load_profile(MINIMAL | change)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_required_key_is_named() -> None:
    with pytest.raises(ProfileError, match="status_url: Field required"):
        load_profile({"name": "x", "states": {}})


def test_unknown_name_and_bad_files_are_profile_errors(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match=r"no built-in profile .nope..*standard"):
        load_profile("nope")
    with pytest.raises(ProfileError, match="cannot read profile"):
        load_profile(tmp_path / "absent.toml")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ProfileError, match="not valid JSON"):
        load_profile(bad)
    top = tmp_path / "list.json"
    top.write_text("[]")
    with pytest.raises(ProfileError, match="object at the top"):
        load_profile(top)


def test_an_unmapped_remote_value_is_a_profile_error_naming_it() -> None:
    with pytest.raises(ProfileError, match="does not map the remote status 'paused'"):
        load_profile(MINIMAL).parse({"id": "1", "status": "paused"})


def test_payloads_that_are_not_statuses_are_bad_payloads() -> None:
    profile = load_profile("standard")
    with pytest.raises(BadStatusPayload, match="JSON object"):
        profile.parse(["RUNNING"])
    with pytest.raises(BadStatusPayload, match="no status"):
        profile.parse({"id": "x"})
    with pytest.raises(BadStatusPayload, match="no run id"):
        profile.parse({"status": "RUNNING"})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("progress", {"percent": "50%"}),
        ("started_at", "yesterday"),
        ("created_at", 1e300),
        ("duration", "NaN"),
        ("version", "seven"),
        ("heartbeat_at", {"at": "now"}),
        ("progress", {"percent": 50, "eta": "soon"}),
    ],
)
def test_an_unreadable_auxiliary_field_is_left_out_and_named(field: str, value: object) -> None:
    dropped: list[str] = []
    status = load_profile("standard").parse(
        {"id": "x", "status": "RUNNING", "executor": "node-1", field: value}, dropped=dropped
    )
    assert (status.id, status.status, status.executor) == ("x", State.RUNNING, "node-1")
    assert getattr(status, field) is None
    assert [p.partition(":")[0] for p in dropped] == [field]


def test_errors_are_read_as_far_as_they_go() -> None:
    status = load_profile("standard").parse(
        {
            "id": "x",
            "status": "FAILED",
            "errors": [
                None,
                7,
                {"code": 42, "message": "disk full", "details": {"node": 3}, "category": "?"},
            ],
        }
    )
    assert [(e.code, e.message, e.category) for e in status.errors] == [
        (None, "7", "logic"),
        ("42", "disk full", "logic"),
    ]


def test_standard_profile_reads_the_reference_status_object() -> None:
    status = load_profile("standard").parse(
        {
            "id": "r-1",
            "status": "IN_PROGRESS",
            "created_at": "2026-03-01T10:00:00Z",
            "progress": {"percent": 40, "items_done": 4, "items_total": 10, "message": "m"},
            "errors": [],
            "heartbeat_at": "2026-03-01T10:00:05+00:00",
            "version": 9,
            "output_ref": "s3://not-yet",
        },
        etag='"9"',
    )
    assert status.status is State.RUNNING and status.raw_status == "IN_PROGRESS"
    assert status.created_at == datetime(2026, 3, 1, 10, tzinfo=timezone.utc)
    assert status.progress is not None and status.progress.items_done == 4
    assert status.output_ref is None  # never a result link for unfinished data
    assert (status.version, status.etag) == (9, '"9"')


def test_two_field_vocabulary_and_epoch_ms_databricks() -> None:
    profile = load_profile("databricks")
    payload = {
        "run_id": 42,
        "state": {"life_cycle_state": "TERMINATED", "result_state": "FAILED"},
        "start_time": 1_700_000_000_000,
        "end_time": 1_700_000_060_500,
        "run_duration": 60_500,
        "status": {"termination_details": {"code": "RUN_EXECUTION_ERROR", "message": "Task x failed"}},
    }
    status = profile.parse(payload)
    assert (status.id, status.status, status.raw_status) == ("42", State.FAILED, "TERMINATED/FAILED")
    assert status.started_at == datetime.fromtimestamp(1_700_000_000, timezone.utc)
    assert status.duration == 60.5
    assert status.errors[0].code == "RUN_EXECUTION_ERROR"
    retry = profile.parse({"run_id": 42, "state": {"life_cycle_state": "WAITING_FOR_RETRY"}})
    assert retry.status is State.RUNNING  # an in-run retry wait stays ACTIVE


def test_two_field_vocabulary_github_actions() -> None:
    profile = load_profile("github_actions")
    done = profile.parse({"id": 7, "status": "completed", "conclusion": "timed_out"})
    assert (done.status, done.raw_status) == (State.TIMED_OUT, "completed/timed_out")
    assert profile.parse({"id": 7, "status": "in_progress", "conclusion": None}).status is State.RUNNING
    with pytest.raises(ProfileError, match="completed/exploded"):
        profile.parse({"id": 7, "status": "completed", "conclusion": "exploded"})


def test_numeric_vocabulary_dbt_cloud() -> None:
    profile = load_profile("dbt_cloud")
    status = profile.parse({"data": {"id": 5, "status": 20, "status_message": "compile error"}})
    assert (status.status, status.error_message) == (State.FAILED, "compile error")
    assert profile.auth_scheme == "Token"


def test_boolean_status_fields_map_as_json_words() -> None:
    lro = load_profile(
        {
            "name": "lro",
            "status_url": "{base_url}/{run_id}",
            "fields": {"id": "name", "status": "done"},
            "states": {"false": "RUNNING", "true": "SUCCEEDED"},
        }
    )
    assert lro.parse({"name": "operations/1", "done": True}).status is State.SUCCEEDED
