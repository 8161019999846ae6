"""Profiles: a run API described as data, and the engine that reads it."""

from __future__ import annotations

import json
import math
import re
import string
import sys
from collections.abc import Mapping
from datetime import datetime, timezone
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import jmespath
import jmespath.exceptions
import jmespath.parser
import jmespath.visitor
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
)

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


def _check_jmespath(expr: str) -> str:
    try:
        jmespath.compile(expr)
    except jmespath.exceptions.JMESPathError as exc:
        raise ValueError(f"bad JMESPath {expr!r}: {_first_line(exc).rstrip(':')}") from None
    return expr


def _check_template(template: str) -> str:
    """A URL template whose placeholders are all `{name}`, checked on load: no request meets a bad one."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:  # a lone { or }
        raise ValueError(
            f"bad URL template {template!r}: {exc} (write {{{{ or }}}} for a literal brace)"
        ) from None
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            shown = "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
            raise ValueError(
                f"bad URL template {template!r}: placeholder {shown} must be a plain {{name}} "
                "such as {base_url} or {run_id}"
            )
    return template


JmesPath = Annotated[str, AfterValidator(_check_jmespath)]
"""A JMESPath expression, compiled on load so that a profile with a bad one never loads."""
UrlTemplate = Annotated[str, AfterValidator(_check_template)]
"""A URL template with `{name}` placeholders, checked on load."""


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Fields(_Spec):
    """Where each part of the status lives in the remote's JSON: JMESPath expressions (None: absent)."""

    id: JmesPath | None = "id"
    status: JmesPath = "status"
    status_detail: JmesPath | None = None  # a second field that refines the first (GitHub's conclusion)
    created_at: JmesPath | None = None
    updated_at: JmesPath | None = None
    started_at: JmesPath | None = None
    ended_at: JmesPath | None = None
    duration: JmesPath | None = None
    executor: JmesPath | None = None
    progress: JmesPath | None = None
    errors: JmesPath | None = None
    output_ref: JmesPath | None = None
    heartbeat_at: JmesPath | None = None
    version: JmesPath | None = None
    url: JmesPath | None = None


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

    url: UrlTemplate
    method: str = "POST"
    idempotency_header: str | None = "Idempotency-Key"
    run_id: JmesPath = "id"  # into the answer's body
    # Headers that may carry the status URL of an asynchronous request-reply, in order of preference.
    status_url_headers: tuple[str, ...] = ("Operation-Location", "Location")


class CancelSpec(_Spec):
    """How to cancel a run. `body` is a JSON template (see `render_body`); None sends no body."""

    url: UrlTemplate
    method: str = "POST"
    body: Any = None

    @field_validator("body")
    @classmethod
    def _body(cls, value: Any) -> Any:
        _check_body(value)
        return value


class ListSpec(_Spec):
    """The vendor's endpoint that reads many runs in one request, for batch reads.

    `url` and `body` are templates like the others, and may name the runs to read with `{run_ids}` (in a URL,
    comma-separated; a body string that is exactly `"{run_ids}"` becomes a JSON list, `"{run_ids:int}"` a
    list of integers); `page_limit` is the most runs one answer may hold (None: the vendor documents no
    limit); `runs` is a JMESPath to the list of runs in the answer, each shaped as one run's status payload
    (an expression may reshape them: `data[].{data: @}`); `active_only` says the list shows only runs that
    have not ended, so a watched run missing from it is read once on its own for its end.
    """

    url: str
    method: Literal["GET", "POST"] = "GET"
    body: Any = None
    page_limit: int | None = Field(None, gt=0)
    runs: str
    active_only: bool = False

    @property
    def by_ids(self) -> bool:
        """Whether a request names the runs it reads (`{run_ids}` in the URL or the body)."""
        return "{run_ids" in self.url or "{run_ids" in json.dumps(self.body)

    @field_validator("body")
    @classmethod
    def _body(cls, value: Any) -> Any:
        _check_body(value)
        return value


class Parameter(_Spec):
    """A URL parameter the profile's templates use (`{account_id}`): what it is, and its default if any."""

    description: str = ""
    default: str | None = None


class Profile(_Spec):
    """One run API, described as data: where to read a run, how to read it, how to start and cancel one.

    URL templates may use `{base_url}`, `{run_id}` and any parameter given to the `RunApi` (or declared with
    a default under `parameters`). `source` names the vendor document and version the profile was checked
    against; `aliases` are other names a built-in profile answers to.
    """

    format: Literal[1] = 1  # the profile format's version: a newer one is refused, by name
    name: str
    description: str = ""
    source: str = ""
    aliases: tuple[str, ...] = ()
    parameters: dict[str, Parameter] = {}
    status_url: UrlTemplate
    auth_scheme: str = "Bearer"  # the word before a token in the Authorization header
    fields: Fields = Fields()
    states: dict[str, State]
    timestamps: Literal["iso8601", "epoch_s", "epoch_ms"] = "iso8601"
    duration_unit: Literal["s", "ms"] = "s"
    long_poll: LongPoll | None = None
    start: StartSpec | None = None
    cancel: CancelSpec | None = None
    list_runs: ListSpec | None = None
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
            text = _json_word(raw)
            if text != text.strip():
                raise ValueError(
                    f"{raw!r} can never match: remote words are trimmed of surrounding whitespace"
                )
            key = _state_key(text)
            if key in out:
                raise ValueError(f"{raw!r} is mapped twice (keys match in any case, and numbers by value)")
            try:
                out[key] = canonical if isinstance(canonical, State) else State.parse(str(canonical))
            except ValueError:
                raise ValueError(f"{raw!r} maps to {canonical!r}, which is not a canonical state") from None
        return out

    def model_post_init(self, context: Any, /) -> None:
        exprs = self.fields.model_dump(exclude_none=True)
        for key, expr in exprs.items():
            self._getters[key] = _compile(expr)  # each one already compiled once by its validator

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_defaults=True)

    def url(self, template: str, **values: str) -> str:
        """Fill a URL template; declared defaults fill what `values` leaves out.

        Raises ProfileError naming a parameter that has no value.
        """
        values = {**self._defaults(), **values}
        try:
            return template.format(**values)
        except KeyError as exc:
            raise ProfileError(f"profile {self.name!r}: URL {template!r} needs the parameter {exc}") from None

    def render_body(self, body: Any, **values: str) -> Any:
        """Fill a JSON body template: each string in it is a template like a URL's.

        A string that is one placeholder with the `int` format (`"{run_id:int}"`) becomes a JSON integer.
        Raises ProfileError naming a missing parameter or a value that is not an integer.
        """
        values = {**self._defaults(), **values}
        if isinstance(body, Mapping):
            return {key: self.render_body(item, **values) for key, item in body.items()}
        if isinstance(body, list):
            return [self.render_body(item, **values) for item in body]
        if not isinstance(body, str):
            return body
        whole = _whole_placeholder(body)
        if whole is not None and isinstance(values.get(whole[0]), list):  # `{run_ids}`: a JSON list
            items: list[str] = values[whole[0]]  # type: ignore[assignment]
            return [self.render_body(f"{{item:{whole[1]}}}", item=item) for item in items]
        try:
            if whole is not None and whole[1] == "int":
                try:
                    return int(values[whole[0]])
                except ValueError:
                    raise ProfileError(
                        f"profile {self.name!r}: {whole[0]} {values[whole[0]]!r} is not an integer"
                    ) from None
            return body.format(**values)
        except KeyError as exc:
            raise ProfileError(f"profile {self.name!r}: body {body!r} needs the parameter {exc}") from None

    def required_parameters(self, *templates: str) -> list[str]:
        """The parameters these templates need beyond `base_url`, `run_id`, `run_ids` and the defaults."""
        defaults = self._defaults()
        names: list[str] = []
        for template in templates:
            for name, _ in _placeholders(template):
                if (
                    name not in ("base_url", "run_id", "run_ids")
                    and name not in defaults
                    and name not in names
                ):
                    names.append(name)
        return names

    def _defaults(self) -> dict[str, str]:
        return {k: p.default for k, p in self.parameters.items() if p.default is not None}

    def parse_list(self, payload: Any) -> list[RunStatus]:
        """Read every run of one answer of the `list_runs` endpoint (each id from `fields.id`).

        Raises ProfileError when the profile has no `list_runs`, BadStatusPayload when the answer has no list
        where `list_runs.runs` says.
        """
        return [self.parse(run) for run in self._listed(payload)]

    def listed_items(self, payload: Any) -> dict[str, Any]:
        """Each run's own payload in one answer of the `list_runs` endpoint, by run id (not parsed yet).

        Raises ProfileError when the profile has no `list_runs`, BadStatusPayload when the answer has no list
        where `list_runs.runs` says.
        """
        runs = self._listed(payload)
        getter = self._getters.get("id")
        found: dict[str, Any] = {}
        for run in runs:
            run_id = getter.search(run) if getter is not None and isinstance(run, Mapping) else None
            if run_id is not None and run_id != "":
                found[str(run_id)] = run
        return found

    def _listed(self, payload: Any) -> list[Any]:
        """The runs of one answer of the `list_runs` endpoint, as the API wrote them."""
        if self.list_runs is None:
            raise ProfileError(f"profile {self.name!r} has no [list_runs] section")
        runs = jmespath.search(self.list_runs.runs, payload)
        if not isinstance(runs, list):
            raise BadStatusPayload(f"no list of runs at {self.list_runs.runs!r} in the answer")
        return runs

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
        raw = self._state_value(payload, "status")
        if raw is None:
            raise BadStatusPayload(f"no status at {self.fields.status!r} in the payload")
        detail = self._state_value(payload, "status_detail") if "status_detail" in getters else None
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
                problems.append(f"{key}: {_first_line(exc)}")  # an id too long for str(): no id
        if values["id"] is None or values["id"] == "":  # an empty id names no run
            raise BadStatusPayload(f"no run id at {self.fields.id!r} in the payload")
        # Each value _read gives is one the model takes, so this does not fail.
        status = RunStatus(
            observed_at=datetime.now(timezone.utc),
            status=state,
            raw_status=raw_status,
            etag=etag,
            **values,
        )
        if dropped is not None:
            dropped += problems
        return status

    def _state_value(self, payload: Any, key: str) -> Any:
        """A state word from its expression: a filter's one-element list is its element, `[]` is absent."""
        found = self._getters[key].search(payload)
        if isinstance(found, list) and len(found) <= 1:
            found = found[0] if found else None
        if isinstance(found, (list, dict)):
            shape = f"a list of {len(found)} values" if isinstance(found, list) else "an object"
            raise ProfileError(
                f"profile {self.name!r}: fields.{key} {getattr(self.fields, key)!r} gave {shape}, "
                "not one state word"
            )
        return found

    def _map_state(self, raw: Any, detail: Any) -> tuple[str, State]:
        raw_s = _json_word(raw).strip()
        detail_s = None if detail is None else _json_word(detail).strip()
        if detail_s is not None:
            combined = f"{raw_s}/{detail_s}"
            found = self.states.get(f"{_state_key(raw_s)}/{_state_key(detail_s)}") or self.states.get(
                f"{_state_key(raw_s)}/*"
            )
            if found is not None:
                return combined, found
        found = self.states.get(_state_key(raw_s))
        if found is None:
            shown = raw_s if detail_s is None else f"{raw_s}/{detail_s}"
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


def _placeholders(template: str) -> list[tuple[str, str]]:
    """(name, format spec) of each `{...}` in a template."""
    return [(name, spec or "") for _, name, spec, _ in string.Formatter().parse(template) if name is not None]


def _whole_placeholder(text: str) -> tuple[str, str] | None:
    """(name, spec) when the text is exactly one placeholder, else None."""
    parts = list(string.Formatter().parse(text))
    if len(parts) == 1 and parts[0][0] == "" and parts[0][1] is not None:
        return parts[0][1], parts[0][2] or ""
    return None


def _check_body(body: Any) -> None:
    """A body template's placeholders use no format but `int`, and `int` only for a whole string."""
    if isinstance(body, Mapping):
        for item in body.values():
            _check_body(item)
    elif isinstance(body, list):
        for item in body:
            _check_body(item)
    elif isinstance(body, str):
        try:
            found = _placeholders(body)
        except ValueError as exc:
            raise ValueError(f"bad template {body!r}: {exc}") from None
        whole = _whole_placeholder(body)
        for name, spec in found:
            if spec and not (spec == "int" and whole == (name, spec)):
                raise ValueError(f"{body!r}: the only format is a whole '{{{name}:int}}'")


def _json_word(value: Any) -> str:
    # Booleans are spelled as JSON spells them, so `done: true` maps as "true".
    return json.dumps(value) if isinstance(value, bool) else str(value)


_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _state_key(word: str) -> str:
    """How a state word is looked up: any case, and a number by its value ("3", "3.0" and 3 are one key).

    A two-field key (`completed/success`) is normalised part by part.
    """
    if "/" in word:
        return "/".join(_state_key(part) for part in word.split("/", 1))
    if _NUMBER.fullmatch(word):
        number = float(word)
        if math.isfinite(number):
            return str(int(number)) if number.is_integer() else repr(number)
    return word.upper()


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
def _builtin_aliases() -> dict[str, str]:
    """Alias -> built-in name (`github_actions` -> `github-actions`), read from the profiles' own files."""
    return {alias: name for name in _builtin_names() for alias in _builtin(name).aliases}


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
    if text in _builtin_aliases():
        return _builtin(_builtin_aliases()[text])
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
        loc = ".".join(str(p) for p in err["loc"])  # never empty: the input is always a dict
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        raise ProfileError(f"{where}: {loc}: {msg}") from None
