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
    assert {"standard", "github-actions", "databricks", "dbt-cloud"} <= set(builtin_profiles())
    for name in builtin_profiles():
        profile = load_profile(name)
        assert profile.name == name and profile.source  # each names what it was checked against
        assert load_profile(json.loads(json.dumps(profile.to_dict()))) == profile


def test_the_underscore_names_in_use_stay_aliases() -> None:
    assert load_profile("github_actions") is load_profile("github-actions")
    assert load_profile("dbt_cloud").name == "dbt-cloud"
    assert "github_actions" not in builtin_profiles()  # listed once, under its name


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


def test_a_cancel_body_is_a_json_template() -> None:
    profile = load_profile(
        MINIMAL
        | {
            "parameters": {"ws": {"description": "workspace", "default": "main"}},
            "cancel": {"url": "{base_url}/c", "body": {"run_id": "{run_id:int}", "path": ["{ws}/{run_id}"]}},
        }
    )
    assert profile.cancel is not None
    body = profile.render_body(profile.cancel.body, run_id="42")
    assert body == {"run_id": 42, "path": ["main/42"]}  # a whole `{x:int}` is a JSON integer
    with pytest.raises(ProfileError, match="run_id 'r-1' is not an integer"):
        profile.render_body(profile.cancel.body, run_id="r-1")
    with pytest.raises(ProfileError, match="needs the parameter 'job'"):
        profile.render_body({"job": "{job}"}, run_id="1")


@pytest.mark.parametrize(
    ("cancel_body", "message"),
    [
        ({"id": "x-{run_id:int}"}, "'x-{run_id:int}': the only format is a whole '{run_id:int}'"),
        ({"id": "{run_id:>8}"}, "'{run_id:>8}': the only format is a whole '{run_id:int}'"),
        ({"id": "{run_id"}, "bad template"),
    ],
)
def test_bad_body_templates_are_named_on_load(cancel_body: dict[str, str], message: str) -> None:
    with pytest.raises(ProfileError, match=r"mini': cancel\.body: ") as info:
        load_profile(MINIMAL | {"cancel": {"url": "{base_url}/c", "body": cancel_body}})
    assert message in str(info.value)


def test_parameters_defaults_fill_urls_and_required_ones_are_named() -> None:
    profile = load_profile(
        MINIMAL
        | {
            "status_url": "{base_url}/{version}/{project}/jobs/{run_id}",
            "parameters": {"version": {"default": "v1"}, "project": {"description": "the project"}},
        }
    )
    assert profile.required_parameters(profile.status_url) == ["project"]
    assert (
        profile.url(profile.status_url, base_url="http://h", project="p", run_id="9")
        == "http://h/v1/p/jobs/9"
    )
    assert profile.url(profile.status_url, base_url="", project="p", run_id="9", version="v2").startswith(
        "/v2/"
    )
    with pytest.raises(ProfileError, match="needs the parameter 'project'"):
        profile.url(profile.status_url, base_url="http://h", run_id="9")


def test_rate_limit_and_list_sections_validate() -> None:
    assert load_profile(MINIMAL).rate_limit.statuses == (429,)
    assert load_profile(MINIMAL).rate_limit.reset == "epoch_s"
    with pytest.raises(ProfileError, match=r"rate_limit\.reset"):
        load_profile(MINIMAL | {"rate_limit": {"reset": "minutes"}})
    with pytest.raises(ProfileError, match=r"rate_limit\.remaining: unknown key"):
        load_profile(MINIMAL | {"rate_limit": {"remaining": "x"}})
    with pytest.raises(ProfileError, match=r"list_runs\.runs: Field required"):
        load_profile(MINIMAL | {"list_runs": {"url": "{base_url}/jobs"}})
    with pytest.raises(ProfileError, match=r"list_runs\.page_limit"):
        load_profile(MINIMAL | {"list_runs": {"url": "{base_url}/jobs", "runs": "items", "page_limit": 0}})


def test_parse_list_reads_each_run_of_a_list_answer() -> None:
    profile = load_profile(MINIMAL | {"list_runs": {"url": "{base_url}/jobs", "runs": "page.items"}})
    runs = profile.parse_list(
        {"page": {"items": [{"id": "a", "status": "going"}, {"id": "b", "status": "ok"}]}}
    )
    assert [(s.id, s.status) for s in runs] == [("a", State.RUNNING), ("b", State.SUCCEEDED)]
    with pytest.raises(BadStatusPayload, match=r"no list of runs at 'page\.items'"):
        profile.parse_list({"page": {}})
    with pytest.raises(ProfileError, match="has no \\[list_runs\\]"):
        load_profile(MINIMAL).parse_list([])


@pytest.mark.parametrize("name", builtin_profiles())
def test_every_builtin_declares_the_parameters_its_templates_use(name: str) -> None:
    # So that `runwatch profiles NAME` explains each one.
    from runwatch.cli._params import parameter_names

    profile = load_profile(name)
    assert set(parameter_names(profile)) == set(profile.parameters)


def test_the_worked_example_in_the_docs_reads_its_sample() -> None:
    import re
    import sys

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib

    doc = (Path(__file__).resolve().parents[2] / "docs" / "profiles.md").read_text()
    blocks = re.findall(r"```(\w+)\n(.*?)```", doc, re.S)
    example = next(text for lang, text in blocks if lang == "toml" and 'name = "batch"' in text)
    sample = next(text for lang, text in blocks if lang == "json" and '"Partial"' in text)
    profile = load_profile(tomllib.loads(example))
    status = profile.parse(json.loads(sample))
    assert (status.id, status.status, status.raw_status) == ("981", State.PARTIAL_SUCCESS, "Finished/Partial")
    assert (
        status.error_message == "3 of 40 files rejected"
        and status.output_ref == "s3://batch-reports/981.html"
    )
    assert status.ended_at == datetime(2026, 1, 1, 10, 15, tzinfo=timezone.utc)
    assert profile.cancel is not None and profile.render_body(profile.cancel.body, run_id="981") == {
        "job": 981
    }
    assert profile.rate_limit.reset == "delta_s" and profile.required_parameters(profile.status_url) == [
        "team"
    ]
    reference = next(text for lang, text in blocks if lang == "toml" and 'name = "acme-batch"' in text)
    assert load_profile(tomllib.loads(reference)).list_runs is not None  # the format reference loads too


# ------------------------------------------------------------------ exact reads (each found by mutation testing)


def test_to_dict_is_json_data_without_the_defaults() -> None:
    profile = load_profile(MINIMAL | {"aliases": ["tiny"], "not_found": [404, 410]})
    assert profile.to_dict() == {
        "name": "mini",
        "aliases": ["tiny"],  # lists, not tuples: JSON data
        "status_url": "{base_url}/jobs/{run_id}",
        "states": {"GOING": "RUNNING", "OK": "SUCCEEDED"},
        "not_found": [404, 410],
    }


def test_profiles_that_read_a_field_differently_are_not_equal() -> None:
    plain = load_profile(MINIMAL)  # `status`: a path of keys
    nested = load_profile(MINIMAL | {"fields": {"status": "runs[0].state"}})  # an expression
    keyed = load_profile(MINIMAL | {"fields": {"status": "state"}})
    assert (plain == nested, nested == plain, plain == keyed, plain == load_profile(MINIMAL)) == (
        False,
        False,
        False,
        True,
    )


def test_a_bad_expression_is_named_in_one_line_without_a_trailing_colon() -> None:
    with pytest.raises(ProfileError) as info:
        load_profile(MINIMAL | {"fields": {"status": "a.[b"}})
    assert str(info.value) == (
        "profile 'mini': fields.status: bad JMESPath 'a.[b': Invalid jmespath expression: Incomplete expression"
    )


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("{base_url}/jobs/{run_id:>8}", "{run_id:>8}"),  # the format spec is shown
        ("{base_url}/jobs?q={{x}}&id={0}", "{0}"),  # a placeholder after a literal brace is checked too
    ],
)
def test_a_url_placeholder_that_is_not_plain_is_shown_as_written(url: str, shown: str) -> None:
    with pytest.raises(ProfileError) as info:
        load_profile(MINIMAL | {"status_url": url})
    assert str(info.value) == (
        f"profile 'mini': status_url: bad URL template {url!r}: placeholder {shown} must be a plain {{name}} "
        "such as {base_url} or {run_id}"
    )


def test_a_body_template_in_a_list_is_checked_on_load() -> None:
    with pytest.raises(ProfileError) as info:
        load_profile(MINIMAL | {"cancel": {"url": "{base_url}/c", "body": {"ids": ["{run_id:>8}"]}}})
    assert str(info.value) == (
        "profile 'mini': cancel.body: '{run_id:>8}': the only format is a whole '{run_id:int}'"
    )


def test_run_ids_in_a_body_become_a_json_list() -> None:
    profile = load_profile(MINIMAL)
    body = {"ids": "{run_ids}", "numbers": "{run_ids:int}", "note": "{run_id}"}
    assert profile.render_body(body, run_ids=["7", "8"], run_id="7") == {
        "ids": ["7", "8"],
        "numbers": [7, 8],
        "note": "7",
    }


def test_listed_items_keys_each_run_of_a_list_answer_by_its_id() -> None:
    # GitHub's list answer (workflow_runs), with entries that name no run.
    profile = load_profile("github-actions")
    first = {"id": 30433642, "status": "completed", "conclusion": "success"}
    second = {"id": 30433643, "status": "in_progress", "conclusion": None}
    payload = {
        "total_count": 5,
        "workflow_runs": [first, {"status": "queued"}, {"id": "", "status": "queued"}, "junk", second],
    }
    assert profile.listed_items(payload) == {"30433642": first, "30433643": second}
    with pytest.raises(BadStatusPayload, match="no list of runs at 'workflow_runs'"):
        profile.listed_items({"total_count": 0})


def test_listed_items_skip_entries_that_are_not_objects_whatever_the_id_expression() -> None:
    listing = {"list_runs": {"url": "{base_url}/jobs", "runs": "items"}}
    profile = load_profile(MINIMAL | listing | {"fields": {"id": "id || [0]"}})
    assert profile.listed_items({"items": [["b", "going"], {"id": "a", "status": "ok"}]}) == {
        "a": {"id": "a", "status": "ok"}
    }
    no_ids = load_profile(MINIMAL | listing | {"fields": {"id": None}})  # runs named by their URL only
    assert no_ids.listed_items({"items": [{"id": "a", "status": "ok"}]}) == {}


def test_the_id_comes_from_the_payload_else_the_run_id_else_the_url() -> None:
    by_url = load_profile(MINIMAL | {"fields": {"id": None}})
    assert by_url.parse({"status": "ok"}, url="http://h/op/1").id == "http://h/op/1"
    assert by_url.parse({"status": "ok"}, run_id="r-7", url="http://h/op/1").id == "r-7"
    standard = load_profile("standard")
    assert standard.parse({"id": "r-9", "status": "RUNNING"}, run_id="r-7").id == "r-9"
    with pytest.raises(BadStatusPayload) as info:
        standard.parse({"id": "", "status": "RUNNING"})
    assert str(info.value) == "no run id at 'id' in the payload"  # an empty id names no run


def test_an_id_too_long_to_read_is_no_id() -> None:
    # Python will not write an integer of more than 4,300 digits as text: a typed error, not a ValueError.
    with pytest.raises(BadStatusPayload) as info:
        load_profile("standard").parse({"id": 10**5000, "status": "RUNNING"})
    assert str(info.value) == "no run id at 'id' in the payload"


def test_a_payload_that_is_not_an_object_is_named_by_its_type() -> None:
    with pytest.raises(BadStatusPayload) as info:
        load_profile("standard").parse(["RUNNING"])
    assert str(info.value) == "expected a JSON object, got list"


def test_a_parse_stamps_when_it_was_observed() -> None:
    before = datetime.now(timezone.utc)
    status = load_profile("standard").parse({"id": "r", "status": "RUNNING"})
    assert status.observed_at is not None and before <= status.observed_at <= datetime.now(timezone.utc)


def test_a_detail_field_is_never_an_auxiliary_value() -> None:
    dropped: list[str] = []
    status = load_profile("github-actions").parse(
        {"id": 7, "status": "completed", "conclusion": "failure"}, dropped=dropped
    )
    assert (status.status, status.raw_status, dropped) == (State.FAILED, "completed/failure", [])


def test_a_wildcard_detail_maps_any_detail_and_keeps_it_in_the_raw_status() -> None:
    databricks = load_profile("databricks")
    status = databricks.parse(
        {"run_id": 5, "state": {"life_cycle_state": "INTERNAL_ERROR", "result_state": "FAILED"}}
    )
    assert (status.status, status.raw_status) == (State.FAILED, "INTERNAL_ERROR/FAILED")
    mine = load_profile(
        MINIMAL
        | {"states": {"done": "RUNNING", "done/*": "FAILED", "done/ok": "SUCCEEDED"}}
        | {"fields": {"status_detail": "detail"}}
    )
    assert [
        (s.status, s.raw_status)
        for s in (
            mine.parse({"id": "r", "status": "done", "detail": "ok"}),
            mine.parse({"id": "r", "status": "done", "detail": "boom"}),
            mine.parse({"id": "r", "status": "done"}),
        )
    ] == [(State.SUCCEEDED, "done/ok"), (State.FAILED, "done/boom"), (State.RUNNING, "done")]


def test_state_words_as_numbers_keep_their_fractions() -> None:
    profile = load_profile(
        MINIMAL
        | {"states": {"1": "RUNNING", "1.5": "SUCCEEDED", "2.5": "FAILED", "done/1.0": "CANCELLED"}}
        | {"fields": {"status_detail": "detail"}}
    )
    assert [profile.parse({"id": "r", "status": word}).status for word in (1, "1.0", 1.5, "2.50")] == [
        State.RUNNING,
        State.RUNNING,
        State.SUCCEEDED,
        State.FAILED,
    ]
    # Each part of a two-field key is compared by value too.
    done = profile.parse({"id": "r", "status": "done", "detail": 1})
    assert (done.status, done.raw_status) == (State.CANCELLED, "done/1")


def test_a_boolean_state_keeps_its_json_spelling() -> None:
    lro = load_profile(
        {
            "name": "lro",
            "status_url": "{base_url}/{run_id}",
            "fields": {"id": "name", "status": "done"},
            "states": {"false": "RUNNING", "true": "SUCCEEDED"},
        }
    )
    assert lro.parse({"name": "operations/1", "done": True}).raw_status == "true"


UTC = timezone.utc


def test_times_are_read_to_the_instant() -> None:
    status = load_profile("standard").parse(
        {
            "id": "r",
            "status": "RUNNING",
            "created_at": "2026-03-01T10:00:00Z",
            "started_at": "2026-03-01T12:00:00+02:00",  # an offset is kept, not replaced
            "updated_at": "2026-03-01T10:00:05",  # no offset: UTC
            "heartbeat_at": "2026-03-01T10:00:06+00:00",
            "ended_at": "",  # not yet
        }
    )
    assert (
        status.created_at,
        status.started_at,
        status.updated_at,
        status.heartbeat_at,
        status.ended_at,
    ) == (
        datetime(2026, 3, 1, 10, tzinfo=UTC),
        datetime(2026, 3, 1, 10, tzinfo=UTC),
        datetime(2026, 3, 1, 10, 0, 5, tzinfo=UTC),
        datetime(2026, 3, 1, 10, 0, 6, tzinfo=UTC),
        None,
    )


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("ended_at", "", None),  # an empty time is no time, not a problem
        ("created_at", 1_700_000_000, "created_at: expected an ISO 8601 time, got 1700000000"),
        ("heartbeat_at", {"at": "now"}, "heartbeat_at: expected a time, got {'at': 'now'}"),
        ("started_at", "yesterday", "started_at: Invalid isoformat string: 'yesterday'"),
        # Python reads only an upper-case Z as UTC.
        (
            "started_at",
            "2026-03-01T10:00:00z",
            "started_at: Invalid isoformat string: '2026-03-01T10:00:00z'",
        ),
        ("duration", "NaN", "duration: duration 'NaN' is not a number"),
        ("version", "seven", "version: invalid literal for int() with base 10: 'seven'"),
        (
            "progress",
            {"percent": "50%"},
            "progress: percent: Input should be a valid number, unable to parse string as a number",
        ),
    ],
)
def test_an_auxiliary_value_left_out_is_named_with_its_reason(
    field: str, value: object, problem: str | None
) -> None:
    dropped: list[str] = []
    status = load_profile("standard").parse({"id": "x", "status": "RUNNING", field: value}, dropped=dropped)
    assert getattr(status, field) is None
    assert dropped == ([] if problem is None else [problem])


def test_durations_are_read_in_the_profiles_unit() -> None:
    payload = {"id": "x", "status": "SUCCEEDED", "duration": 90}
    assert load_profile("standard").parse(payload).duration == 90.0
    assert (
        load_profile(MINIMAL | {"duration_unit": "ms", "fields": {"duration": "duration"}})
        .parse(payload | {"status": "ok"})
        .duration
        == 0.09
    )


def test_epoch_seconds_times() -> None:
    profile = load_profile(MINIMAL | {"timestamps": "epoch_s", "fields": {"started_at": "t"}})
    assert profile.parse({"id": "r", "status": "ok", "t": 1_700_000_000}).started_at == datetime(
        2023, 11, 14, 22, 13, 20, tzinfo=UTC
    )


def test_progress_is_a_percent_a_message_or_an_object() -> None:
    profile = load_profile("standard")
    read = [
        profile.parse({"id": "x", "status": "RUNNING", "progress": value}).progress
        for value in (40, 12.5, "step 3 of 5", {"items_done": 3, "items_total": 5})
    ]
    assert [(p.percent, p.message, p.items_done) if p else None for p in read] == [
        (40.0, None, None),
        (12.5, None, None),
        (None, "step 3 of 5", None),
        (None, None, 3),
    ]


def test_errors_keep_code_message_retriable_and_a_known_category() -> None:
    status = load_profile("standard").parse(
        {
            "id": "x",
            "status": "FAILED",
            "errors": [
                {"code": "E_DISK"},  # a code alone is its own message
                {},  # nothing to say: skipped, and the rest still read
                {"message": "node lost", "retriable": True, "category": "infrastructure"},
                {"message": "bad input", "category": "logic", "retriable": "yes"},
            ],
        }
    )
    assert [(e.code, e.message, e.retriable, e.category) for e in status.errors] == [
        ("E_DISK", "E_DISK", False, "logic"),
        (None, "node lost", True, "infrastructure"),
        (None, "bad input", False, "logic"),
    ]


def test_load_errors_name_the_profile_and_the_reason_exactly(tmp_path: Path) -> None:
    with pytest.raises(ProfileError) as info:
        load_profile({"status_url": "{base_url}/{run_id}", "states": {}})
    assert str(info.value) == "profile '(unnamed)': name: Field required"
    with pytest.raises(ProfileError) as info:
        load_profile("nope")
    assert str(info.value) == (
        f"no built-in profile 'nope' (known: {', '.join(builtin_profiles())}) and not a .json or .toml file"
    )
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ProfileError) as info:
        load_profile(bad)
    assert str(info.value) == (
        f"profile {bad} is not valid JSON: Expecting property name enclosed in double quotes: "
        "line 1 column 2 (char 1)"
    )
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"name": "p", "states": {}}))
    with pytest.raises(ProfileError) as info:
        load_profile(partial)
    assert str(info.value) == f"profile {partial}: status_url: Field required"
