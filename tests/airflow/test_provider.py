"""The provider as Airflow's providers manager sees it: metadata, connection type and form."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from importlib.metadata import entry_points
from pathlib import Path

import jsonschema
from airflow import providers_manager
from airflow.providers_manager import ProvidersManager
from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

from runwatch_airflow.get_provider_info import get_provider_info
from runwatch_airflow.hooks.runwatch import RunStatusHook

SCHEMAS = Path(providers_manager.__file__).parent


def test_provider_info_is_valid_for_airflow() -> None:
    info = get_provider_info()
    jsonschema.validate(info, json.loads((SCHEMAS / "provider_info.schema.json").read_text()))
    # The 3.2+ connection form (conn-fields, ui-field-behaviour) is defined by provider.yaml's schema.
    item_schema = json.loads((SCHEMAS / "provider.yaml.schema.json").read_text())["properties"][
        "connection-types"
    ]
    jsonschema.validate(info["connection-types"], item_schema)
    assert info["package-name"] == "airflow-provider-runwatch"
    ours = [
        ep for ep in entry_points(group="apache_airflow_provider") if ep.value.startswith("runwatch_airflow.")
    ]
    [entry] = ours
    assert entry.value == "runwatch_airflow.get_provider_info:get_provider_info"
    assert entry.dist is not None and entry.dist.name == info["package-name"]


def test_airflow_providers_list_shows_the_provider() -> None:
    airflow = str(Path(sys.executable).parent / "airflow")
    out = subprocess.run(
        [airflow, "providers", "list", "--output", "json"],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    listed = {p["package_name"]: p for p in json.loads(out[out.index("[") :])}
    assert listed["airflow-provider-runwatch"]["version"] == "0.1.0"


def test_connection_type_and_form_load_declaratively_without_deprecated_hooks() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # get_ui_field_behaviour / get_connection_form_widgets warn since 3.2
        hook = ProvidersManagerTaskRuntime().hooks["runwatch"]
        manager = ProvidersManager()
        widgets = manager.connection_form_widgets
        behaviour = manager.field_behaviours["runwatch"]
    assert hook is not None
    assert (hook.hook_class_name, hook.connection_id_attribute_name) == (
        "runwatch_airflow.hooks.runwatch.RunStatusHook",
        "conn_id",
    )
    for field in ("profile", "auth_style", "auth_header", "verify", "headers", "params", "run_link"):
        assert f"extra__runwatch__{field}" in widgets
    assert behaviour["relabeling"]["password"] == "Token, password or client secret"
    assert "get_ui_field_behaviour" not in vars(RunStatusHook)
    assert "get_connection_form_widgets" not in vars(RunStatusHook)
    assert RunStatusHook.default_conn_name == "runwatch_default"
