"""Templated task arguments as the types the tasks need, whatever Jinja rendered them as.

With `render_template_as_native_obj=True` a template renders to a Python object (`"{{ params.run_id }}"`
to the int 4711, `"{{ params.body }}"` to a dict); without it, always to a string. Both must work, and a
value of the wrong kind is refused naming the argument, never met later as an `AttributeError`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from runwatch_airflow.exceptions import RunwatchArgumentError

__all__ = ["json_object", "profile_value", "text"]


def text(name: str, value: Any) -> str:
    """A string argument (a run id, a conn id, a key): a string as is, any other JSON scalar as its JSON.

    Raises `RunwatchArgumentError` (naming `name`) for an empty value or a list, dict or other object.
    """
    if isinstance(value, str):
        if not value.strip():
            raise RunwatchArgumentError(f"{name} is empty")
        return value
    if isinstance(value, (bool, int, float)):
        return json.dumps(value)  # 4711 -> "4711", True -> "true": the JSON text a param was written as
    raise RunwatchArgumentError(f"{name} must be a string or a JSON scalar, got {_kind(value)}")


def json_object(name: str, value: Any) -> dict[str, Any] | None:
    """A JSON object argument (a request body): a mapping, a string holding a JSON object, or None.

    Raises `RunwatchArgumentError` (naming `name`) for anything else.
    """
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise RunwatchArgumentError(f"{name} must be a JSON object; the string is not JSON") from None
    if not isinstance(value, Mapping):
        raise RunwatchArgumentError(f"{name} must be a JSON object, got {_kind(value)}")
    return dict(value)


def profile_value(value: Any) -> str | dict[str, Any] | None:
    """A profile argument: a built-in name or path (a string), an inline profile (a mapping), or None.

    Raises `RunwatchArgumentError` (naming `profile`) for anything else.
    """
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return dict(value)
    raise RunwatchArgumentError(f"profile must be a name, a path or a JSON object, got {_kind(value)}")


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__
