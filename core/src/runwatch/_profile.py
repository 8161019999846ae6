"""Profiles: a run API described as data, and the engine that reads it."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping
from datetime import datetime, timezone
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import jmespath
import jmespath.exceptions
import jmespath.parser
import jmespath.visitor
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from runwatch._errors import BadStatusPayload, ProfileError
from runwatch._states import State
from runwatch._status import Progress, RunError, RunStatus

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["Profile", "RateLimitSpec", "builtin_profiles", "load_profile"]

_TIMES = frozenset({"created_at", "updated_at", "started_at", "ended_at", "heartbeat_at"})


class _FieldPath:
    """A path of plain keys (`a.b.c`), which most profile fields are: read without an interpreter."""

    __slots__ = ("keys",)

    def __init__(self, keys: tuple[str, ...]) -> None:
        self.keys = keys

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _FieldPath) and other.keys == self.keys

    def search(self, payload: Any) -> Any:
        value = payload
        for key in self.keys:
            if not isinstance(value, dict):
                return None  # as JMESPath answers for a field of a non-object
            value = value.get(key)
        return value


class _Expression:
    """Any other JMESPath expression, with one interpreter kept for it.

    `ParsedResult.search` builds an interpreter per call, whose method cache makes a reference cycle: garbage
    for the cyclic collector on every poll, which at thousands of waits turns into long loop stalls.
    """

    __slots__ = ("interpreter", "node")

    def __init__(self, parsed: jmespath.parser.ParsedResult) -> None:
        self.node = parsed.parsed
        self.interpreter = jmespath.visitor.TreeInterpreter()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Expression) and other.node == self.node

    def search(self, payload: Any) -> Any:
        return self.interpreter.visit(self.node, payload)


def _compile(expr: str) -> _FieldPath | _Expression:
    parsed = jmespath.compile(expr)
    keys = _plain_keys(parsed.parsed)
    return _FieldPath(keys) if keys is not None else _Expression(parsed)


def _plain_keys(node: Any) -> tuple[str, ...] | None:
    if node["type"] == "field":
        return (node["value"],)
    if node["type"] == "subexpression":
        keys: tuple[str, ...] = ()
        for child in node["children"]:
            more = _plain_keys(child)
            if more is None:
                return None
            keys += more
        return keys
    return None


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Fields(_Spec):
    """Where each part of the status lives in the remote's JSON: JMESPath expressions (None: absent)."""

    id: str | None = "id"
    status: str = "status"
    status_detail: str | None = None  # a second field that refines the first (GitHub's conclusion)
    created_at: str | None = None
    updated_at: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    duration: str | None = None
    executor: str | None = None
    progress: str | None = None
    errors: str | None = None
    output_ref: str | None = None
    heartbeat_at: str | None = None
    version: str | None = None
    url: str | None = None


class LongPoll(_Spec):
    """How the API holds a status request until the run changes."""

    style: Literal["query", "prefer"]
    param: str = "wait"  # the query parameter, for style "query"
    max: float = Field(60.0, gt=0)  # the longest hold the API allows, in seconds


class RateLimitSpec(_Spec):
    """How the API says "slow down" besides `429`.

    An answer with a status in `statuses` is a rate limit when it carries `Retry-After` or says no requests
    remain (`remaining_header: 0`); then the wait pauses until the hint or the reset, and goes on. GitHub
    answers its rate limits with 403 this way (docs.github.com, "Rate limits for the REST API"); a plain 403
    stays "access denied". `reset` says how `reset_header` is written: a UNIX time or seconds from now.
    """

    statuses: tuple[int, ...] = (429,)
    remaining_header: str = "x-ratelimit-remaining"
    reset_header: str = "x-ratelimit-reset"
    reset: Literal["epoch_s", "delta_s"] = "epoch_s"


class StartSpec(_Spec):
    """How to start a run."""

    url: str
    method: str = "POST"
    idempotency_header: str | None = "Idempotency-Key"
    run_id: str = "id"  # JMESPath into the answer's body
    # Headers that may carry the status URL of an asynchronous request-reply, in order of preference.
    status_url_headers: tuple[str, ...] = ("Operation-Location", "Location")


class CancelSpec(_Spec):
    """How to cancel a run."""

    url: str
    method: str = "POST"


class Profile(_Spec):
    """One run API, described as data: where to read a run, how to read it, how to start and cancel one.

    URL templates may use `{base_url}`, `{run_id}` and any parameter given to the `RunApi`.
    """

    format: Literal[1] = 1  # the profile format's version: a newer one is refused, by name
    name: str
    description: str = ""
    status_url: str
    auth_scheme: str = "Bearer"  # the word before a token in the Authorization header
    fields: Fields = Fields()
    states: dict[str, State]
    timestamps: Literal["iso8601", "epoch_s", "epoch_ms"] = "iso8601"
    duration_unit: Literal["s", "ms"] = "s"
    long_poll: LongPoll | None = None
    start: StartSpec | None = None
    cancel: CancelSpec | None = None
    not_found: tuple[int, ...] = (404,)
    denied: tuple[int, ...] = (401, 403)
    rate_limit: RateLimitSpec = RateLimitSpec()

    _getters: dict[str, _FieldPath | _Expression] = PrivateAttr(default_factory=dict)

    @field_validator("format", mode="before")
    @classmethod
    def _format(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool) and value > 1:
            raise ValueError(f"format {value} is newer than this runwatch reads (1): upgrade runwatch")
        return value

    @field_validator("states", mode="before")
    @classmethod
    def _states(cls, value: Any) -> Any:
        if not isinstance(value, Mapping):
            return value
        out: dict[str, Any] = {}
        for raw, canonical in value.items():
            key = str(raw).upper()  # remote words match in any case
            if key in out:
                raise ValueError(f"{raw!r} is mapped twice (keys match in any case)")
            try:
                out[key] = canonical if isinstance(canonical, State) else State.parse(str(canonical))
            except ValueError:
                raise ValueError(f"{raw!r} maps to {canonical!r}, which is not a canonical state") from None
        return out

    def model_post_init(self, context: Any, /) -> None:
        exprs = self.fields.model_dump(exclude_none=True)
        for key, expr in exprs.items():
            try:
                self._getters[key] = _compile(expr)
            except jmespath.exceptions.ParseError as exc:
                reason = _first_line(exc).rstrip(":")
                raise ProfileError(
                    f"profile {self.name!r}: fields.{key}: bad JMESPath {expr!r}: {reason}"
                ) from None

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_defaults=True)

    def url(self, template: str, **values: str) -> str:
        try:
            return template.format(**values)
        except KeyError as exc:
            raise ProfileError(f"profile {self.name!r}: URL {template!r} needs the parameter {exc}") from None

    def parse(
        self,
        payload: Any,
        *,
        run_id: str | None = None,
        etag: str | None = None,
        url: str | None = None,
        dropped: list[str] | None = None,
    ) -> RunStatus:
        """Read one status from the remote's JSON payload.

        The id and the state are required: without them, `BadStatusPayload`; a state the profile does not
        map, `ProfileError`. Every other field is auxiliary: one that does not parse is left out, and its
        name and reason are appended to `dropped` (so a caller can warn once), never a reason to fail.
        """
        if not isinstance(payload, Mapping):
            raise BadStatusPayload(f"expected a JSON object, got {type(payload).__name__}")
        getters = self._getters  # a private attribute costs a __getattr__ call on every access
        raw = getters["status"].search(payload)
        if raw is None:
            raise BadStatusPayload(f"no status at {self.fields.status!r} in the payload")
        detail = getters["status_detail"].search(payload) if "status_detail" in getters else None
        raw_status, state = self._map_state(raw, detail)
        values: dict[str, Any] = {"id": run_id if run_id is not None else url, "url": url}
        problems: list[str] = []
        for key, getter in getters.items():
            found = getter.search(payload)
            if found is None or key in ("status", "status_detail"):
                continue
            try:
                values[key] = self._read(key, found)
            except (
                ValidationError,
                ValueError,
                TypeError,
                OverflowError,
                OSError,
            ) as exc:  # OSError: a year past 9999
                if key == "id":
                    raise BadStatusPayload(f"unreadable id {found!r}: {_first_line(exc)}") from None
                problems.append(f"{key}: {_first_line(exc)}")
        if values["id"] is None:
            raise BadStatusPayload(f"no run id at {self.fields.id!r} in the payload")
        common: dict[str, Any] = {"status": state, "raw_status": raw_status, "etag": etag}
        try:
            status = RunStatus(observed_at=datetime.now(timezone.utc), **common, **values)
        except ValidationError as exc:  # a value of the right type that the model still refuses
            bad = {str(err["loc"][0]) for err in exc.errors() if err["loc"]} - {"id", "status"}
            problems += [f"{key}: {_first_line(exc)}" for key in sorted(bad)]
            kept = {k: v for k, v in values.items() if k not in bad}
            status = RunStatus(observed_at=datetime.now(timezone.utc), **common, **kept)
        if dropped is not None:
            dropped += problems
        return status

    def _map_state(self, raw: Any, detail: Any) -> tuple[str, State]:
        raw_s = _json_word(raw)
        if detail is not None:
            combined = f"{raw_s}/{_json_word(detail)}"
            found = self.states.get(combined.upper()) or self.states.get(f"{raw_s.upper()}/*")
            if found is not None:
                return combined, found
        found = self.states.get(raw_s.upper())
        if found is None:
            shown = raw_s if detail is None else f"{raw_s}/{_json_word(detail)}"
            raise ProfileError(f"profile {self.name!r} does not map the remote status {shown!r}")
        return raw_s, found

    def _read(self, key: str, value: Any) -> Any:
        if key in _TIMES:
            return self._time(value)
        if key == "duration":
            return self._duration(value)
        if key == "progress":
            return _progress(value)
        if key == "errors":
            return _errors(value)
        if key == "version":
            return int(value)
        return str(value)

    def _time(self, value: Any) -> datetime | None:
        if value == "":
            return None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if self.timestamps == "iso8601":
                raise ValueError(f"expected an ISO 8601 time, got {value!r}")
            seconds = value / 1000 if self.timestamps == "epoch_ms" else value
            return datetime.fromtimestamp(seconds, timezone.utc)
        if isinstance(value, str):
            parsed = datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith("Z") else value)
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
        raise ValueError(f"expected a time, got {value!r}")

    def _duration(self, value: Any) -> float:
        seconds = float(value) / (1000 if self.duration_unit == "ms" else 1)
        if not math.isfinite(seconds):
            raise ValueError(f"duration {value!r} is not a number")
        return seconds


def _json_word(value: Any) -> str:
    # Booleans are spelled as JSON spells them, so `done: true` maps as "true".
    return json.dumps(value) if isinstance(value, bool) else str(value)


def _progress(value: Any) -> Progress:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return Progress(percent=float(value))
    if isinstance(value, Mapping):
        return Progress.model_validate(dict(value))
    return Progress(message=str(value))


def _errors(value: Any) -> tuple[RunError, ...]:
    # What decides an outcome is read as far as it goes: keys we do not model are ignored, codes and
    # messages of any JSON type become text, and a `category` we do not know keeps the default.
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        if isinstance(item, Mapping):
            code, message = item.get("code"), item.get("message")
            if message is None and code is None:
                continue
            data: dict[str, Any] = {"message": str(message if message is not None else code)}
            if code is not None:
                data["code"] = str(code)
            if isinstance(item.get("retriable"), bool):
                data["retriable"] = item["retriable"]
            if item.get("category") in ("infrastructure", "logic"):
                data["category"] = item["category"]
            out.append(RunError(**data))
        elif item is not None:
            out.append(RunError(message=str(item)))
    return tuple(out)


def _first_line(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        return f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
    return str(exc).splitlines()[0]


def builtin_profiles() -> list[str]:
    """The names of the profiles shipped in the package."""
    return sorted(_builtin_names())


@cache
def _builtin_names() -> frozenset[str]:
    # Listed once: the package's files do not change while it runs, and an event loop should not wait on disk.
    files = resources.files("runwatch") / "profiles"
    return frozenset(p.name.removesuffix(".toml") for p in files.iterdir() if p.name.endswith(".toml"))


@cache
def _builtin(name: str) -> Profile:
    text = (resources.files("runwatch") / "profiles" / f"{name}.toml").read_text("utf-8")
    return _validate(tomllib.loads(text), f"built-in profile {name!r}")


def load_profile(source: Profile | Mapping[str, Any] | str | Path) -> Profile:
    """A profile from a built-in name, a .json or .toml file, a dict, or a Profile."""
    if isinstance(source, Profile):
        return source
    if isinstance(source, Mapping):
        return _validate(source, f"profile {source.get('name', '(unnamed)')!r}")
    text = str(source)
    if text in _builtin_names():
        return _builtin(text)
    path = Path(text)
    if path.suffix not in (".json", ".toml"):
        known = ", ".join(builtin_profiles())
        raise ProfileError(f"no built-in profile {text!r} (known: {known}) and not a .json or .toml file")
    try:
        raw = path.read_text("utf-8")
        data = json.loads(raw) if path.suffix == ".json" else tomllib.loads(raw)
    except OSError as exc:
        raise ProfileError(f"cannot read profile {text}: {exc.strerror}") from None
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise ProfileError(
            f"profile {text} is not valid {path.suffix[1:].upper()}: {_first_line(exc)}"
        ) from None
    if not isinstance(data, dict):
        raise ProfileError(f"profile {text} must hold an object at the top")
    return _validate(data, f"profile {text}")


def _validate(data: Mapping[str, Any], where: str) -> Profile:
    try:
        return Profile.model_validate(dict(data))
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "(top)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        raise ProfileError(f"{where}: {loc}: {msg}") from None
