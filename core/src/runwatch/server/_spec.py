"""Validation of what clients send the reference server: run scripts, faults, webhook subscriptions.

Every error names the offending field (`script[1].status`, `faults.rate_limit.first`, ...).
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

from runwatch import webhooks

PENDING_STATES = frozenset({"QUEUED", "PENDING", "SCHEDULED"})
ACTIVE_STATES = frozenset({"RUNNING", "IN_PROGRESS", "CANCELLING"})
TERMINAL_STATES = frozenset({"SUCCEEDED", "FAILED", "CANCELLED", "TIMED_OUT", "PARTIAL_SUCCESS"})
ALL_STATES = PENDING_STATES | ACTIVE_STATES | TERMINAL_STATES
STATE_ORDER = (
    *("QUEUED", "PENDING", "SCHEDULED", "RUNNING", "IN_PROGRESS", "CANCELLING"),
    *("SUCCEEDED", "FAILED", "CANCELLED", "TIMED_OUT", "PARTIAL_SUCCESS"),
)

MAX_STEPS = 1000
MIN_HEARTBEAT = 0.01
ERROR_STATUSES = (500, 502, 503, 504)
RATE_LIMIT_STATUSES = (429, 403)
# How a rate-limited answer says when to come back: Retry-After in seconds or as an HTTP-date, Retry-After-Ms
# (milliseconds), GitHub's X-RateLimit-Reset (epoch seconds, with X-RateLimit-Remaining: 0), or not at all.
RATE_LIMIT_HINTS = ("seconds", "date", "ms", "reset", "none")
DEFAULT_OVERSIZE = 16 * 1024 * 1024
MAX_OVERSIZE = 1024 * 1024 * 1024
# Fields of the status object that `omit` may leave out (id and status make a status; they always stay).
OMITTABLE = frozenset(
    {
        *("created_at", "updated_at", "started_at", "ended_at", "duration", "executor", "progress"),
        *("errors", "output_ref", "heartbeat_at", "version", "url"),
    }
)

_UNSET: Any = object()


class SpecError(ValueError):
    """A request body the server refuses (422). The message names the field."""


# ------------------------------------------------------------------------------------------------ helpers


def _number(value: Any, where: str, *, minimum: float = 0.0, strict: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SpecError(f"{where}: must be a number of seconds (got {value!r})")
    if value < minimum or (strict and value == minimum):
        raise SpecError(f"{where}: must be {'>' if strict else '>='} {minimum:g} (got {value!r})")
    return float(value)


def _opt_number(value: Any, where: str, *, minimum: float = 0.0) -> float | None:
    return None if value is None else _number(value, where, minimum=minimum)


def _int(value: Any, where: str, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"{where}: must be an integer (got {value!r})")
    if value < minimum:
        raise SpecError(f"{where}: must be >= {minimum} (got {value!r})")
    return value


def _opt_str(value: Any, where: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise SpecError(f"{where}: must be a string or null (got {value!r})")
    return value


def _object(value: Any, where: str, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SpecError(f"{where}: must be an object (got {type(value).__name__})")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise SpecError(f"{where}.{unknown[0]}: unknown field (allowed: {', '.join(sorted(allowed))})")
    return value


# ------------------------------------------------------------------------------------------------ scripts


@dataclass(frozen=True, slots=True)
class Step:
    """One scripted state; `duration` is None for the last step (it lasts for ever)."""

    status: str
    duration: float | None
    progress: dict[str, Any] | None = None
    errors: tuple[dict[str, Any], ...] = ()
    output_ref: str | None = None
    executor: Any = _UNSET  # str | None when the step sets it

    @property
    def phase(self) -> str:
        return phase_of(self.status)


def phase_of(status: str) -> str:
    if status in ACTIVE_STATES:
        return "ACTIVE"
    if status in TERMINAL_STATES:
        return "TERMINAL"
    return "PENDING"


def _progress(value: Any, where: str) -> dict[str, Any] | None:
    if value is None:
        return None
    obj = _object(value, where, {"percent", "items_done", "items_total", "message"})
    percent = obj.get("percent")
    if percent is not None:
        percent = _number(percent, f"{where}.percent")
    out: dict[str, Any] = {"percent": percent}
    for key in ("items_done", "items_total"):
        item = obj.get(key)
        out[key] = None if item is None else _int(item, f"{where}.{key}", minimum=0)
    out["message"] = _opt_str(obj.get("message"), f"{where}.message")
    return out


def _errors(value: Any, where: str) -> tuple[dict[str, Any], ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise SpecError(f"{where}: must be a list of errors")
    out = []
    for i, item in enumerate(value):
        at = f"{where}[{i}]"
        obj = _object(item, at, {"code", "message", "retriable", "category"})
        message = obj.get("message")
        if not isinstance(message, str):
            raise SpecError(f"{at}.message: required, a string")
        retriable = obj.get("retriable", False)
        if not isinstance(retriable, bool):
            raise SpecError(f"{at}.retriable: must be true or false")
        category = obj.get("category", "logic")
        if category not in ("infrastructure", "logic"):
            raise SpecError(f"{at}.category: must be 'infrastructure' or 'logic' (got {category!r})")
        code = _opt_str(obj.get("code"), f"{at}.code")
        out.append({"code": code, "message": message, "retriable": retriable, "category": category})
    return tuple(out)


def parse_script(value: Any) -> tuple[Step, ...]:
    if not isinstance(value, list) or not value:
        raise SpecError("script: must be a non-empty list of steps")
    if len(value) > MAX_STEPS:
        raise SpecError(f"script: at most {MAX_STEPS} steps")
    steps = []
    last = len(value) - 1
    for i, raw in enumerate(value):
        at = f"script[{i}]"
        obj = _object(raw, at, {"status", "for", "progress", "errors", "output_ref", "executor"})
        status = obj.get("status")
        if status not in ALL_STATES:
            raise SpecError(f"{at}.status: must be one of {', '.join(STATE_ORDER)} (got {status!r})")
        if "for" in obj:
            duration: float | None = _number(obj["for"], f"{at}.for")
        elif i == last:
            duration = None
        else:
            raise SpecError(f"{at}.for: required on every step but the last (seconds the step lasts)")
        executor = _opt_str(obj["executor"], f"{at}.executor") if "executor" in obj else _UNSET
        steps.append(
            Step(
                status=status,
                duration=None if i == last else duration,
                progress=_progress(obj.get("progress"), f"{at}.progress"),
                errors=_errors(obj.get("errors"), f"{at}.errors"),
                output_ref=_opt_str(obj.get("output_ref"), f"{at}.output_ref"),
                executor=executor,
            )
        )
    return tuple(steps)


# ------------------------------------------------------------------------------------------------ faults


@dataclass(frozen=True, slots=True)
class Trigger:
    """Which requests a fault hits: the first `first`, every `every`-th, or all after the first `after`."""

    first: int | None = None
    every: int | None = None
    after: int | None = None

    def hits(self, count: int) -> bool:
        """`count` is the 1-based number of this request among those that reached the fault."""
        if self.first is not None:
            return count <= self.first
        if self.after is not None:
            return count > self.after
        return self.every is not None and count % self.every == 0


@dataclass(frozen=True, slots=True)
class RateLimitFault:
    trigger: Trigger
    retry_after: float = 1.0
    hint: str = "seconds"  # one of RATE_LIMIT_HINTS
    status: int = 429
    retry_after_text: str | None = None  # sent verbatim as Retry-After, whatever it says


@dataclass(frozen=True, slots=True)
class SlowFault:
    trigger: Trigger
    seconds: float


@dataclass(frozen=True, slots=True)
class TruncatedFault:
    trigger: Trigger
    keep: int | None = None  # bytes of the real body to send; None: half of it


@dataclass(frozen=True, slots=True)
class OversizedFault:
    trigger: Trigger
    size: int = DEFAULT_OVERSIZE
    chunked: bool = False


@dataclass(frozen=True, slots=True)
class ErrorFault:
    trigger: Trigger
    status: int = 503
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class MalformedFault:
    trigger: Trigger
    shape: str = "text"  # "text": not JSON at all; "wrong": JSON without a status


@dataclass(frozen=True, slots=True)
class QuotaSpec:
    quota: int
    window: float


@dataclass(frozen=True, slots=True)
class FaultSet:
    latency: float = 0.0
    drop: Trigger | None = None
    rate_limit: RateLimitFault | None = None
    errors_5xx: ErrorFault | None = None
    malformed: MalformedFault | None = None
    ratelimit_headers: QuotaSpec | None = None
    slow: SlowFault | None = None
    truncated: TruncatedFault | None = None
    oversized: OversizedFault | None = None
    etag_lies: Trigger | None = None
    # Modes: how an API that lacks a feature behaves (every answer, not some).
    no_etag: bool = False
    no_304: bool = False
    omit: frozenset[str] = frozenset()
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not self.source


TRIGGER_KEYS = frozenset({"first", "every", "after"})


def _trigger(obj: dict[str, Any], where: str) -> Trigger:
    given = [key for key in ("first", "every", "after") if key in obj]
    if len(given) != 1:
        raise SpecError(f"{where}: give exactly one of 'first', 'every' or 'after'")
    if given[0] == "first":
        return Trigger(first=_int(obj["first"], f"{where}.first", minimum=0))
    if given[0] == "after":
        return Trigger(after=_int(obj["after"], f"{where}.after", minimum=0))
    return Trigger(every=_int(obj["every"], f"{where}.every"))


def _flag(obj: dict[str, Any], key: str, where: str) -> bool:
    value = obj.get(key, False)
    if not isinstance(value, bool):
        raise SpecError(f"{where}.{key}: must be true or false")
    return value


def _rate_limit(value: Any, at: str) -> RateLimitFault:
    allowed = {*TRIGGER_KEYS, "retry_after", "retry_after_date", "hint", "status", "retry_after_text"}
    sub = _object(value, at, allowed)
    date = _flag(sub, "retry_after_date", at)
    hint = sub.get("hint", "date" if date else "seconds")
    if hint not in RATE_LIMIT_HINTS:
        raise SpecError(f"{at}.hint: must be one of {', '.join(RATE_LIMIT_HINTS)} (got {hint!r})")
    if date and hint != "date":
        raise SpecError(f"{at}.retry_after_date: true only goes with hint 'date' (got {hint!r})")
    status = sub.get("status", 429)
    if status not in RATE_LIMIT_STATUSES or isinstance(status, bool):
        raise SpecError(f"{at}.status: must be 429 or 403 (got {status!r})")
    text = _opt_str(sub.get("retry_after_text"), f"{at}.retry_after_text")
    if text is not None and (hint not in ("seconds", "date") or not text.isprintable()):
        raise SpecError(
            f"{at}.retry_after_text: a printable Retry-After value, with hint 'seconds' or 'date'"
        )
    retry_after = _number(sub.get("retry_after", 1.0), f"{at}.retry_after")
    return RateLimitFault(_trigger(sub, at), retry_after, hint, status, text)


def _omit(value: Any, at: str) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise SpecError(f"{at}: must be a list of status fields")
    unknown = sorted(set(value) - OMITTABLE)
    if unknown:
        raise SpecError(f"{at}: {unknown[0]!r} cannot be omitted (allowed: {', '.join(sorted(OMITTABLE))})")
    return frozenset(value)


FAULT_KEYS = {
    *("latency", "drop", "rate_limit", "errors_5xx", "malformed", "ratelimit_headers"),
    *("slow", "truncated", "oversized", "etag_lies", "no_etag", "no_304", "omit"),
}


def parse_faults(value: Any, where: str = "faults") -> FaultSet:
    """A run's (or the server's) fault set; `SpecError` naming the first bad key."""
    if value is None:
        return FaultSet()
    obj = _object(value, where, FAULT_KEYS)

    def part(key: str, parse: Callable[[Any, str], _P]) -> _P | None:
        return None if obj.get(key) is None else parse(obj[key], f"{where}.{key}")

    return FaultSet(
        latency=_number(obj.get("latency", 0.0), f"{where}.latency"),
        drop=part("drop", _bare_trigger),
        rate_limit=part("rate_limit", _rate_limit),
        errors_5xx=part("errors_5xx", _errors_5xx),
        malformed=part("malformed", _malformed),
        ratelimit_headers=part("ratelimit_headers", _quota),
        slow=part("slow", _slow),
        truncated=part("truncated", _truncated),
        oversized=part("oversized", _oversized),
        etag_lies=part("etag_lies", _bare_trigger),
        no_etag=_flag(obj, "no_etag", where),
        no_304=_flag(obj, "no_304", where),
        omit=frozenset() if obj.get("omit") is None else _omit(obj["omit"], f"{where}.omit"),
        source=dict(obj),
    )


_P = TypeVar("_P")


def _bare_trigger(value: Any, at: str) -> Trigger:
    return _trigger(_object(value, at, set(TRIGGER_KEYS)), at)


def _slow(value: Any, at: str) -> SlowFault:
    sub = _object(value, at, {*TRIGGER_KEYS, "seconds"})
    if "seconds" not in sub:
        raise SpecError(f"{at}.seconds: required (how long each hit request is held)")
    return SlowFault(_trigger(sub, at), _number(sub["seconds"], f"{at}.seconds"))


def _truncated(value: Any, at: str) -> TruncatedFault:
    sub = _object(value, at, {*TRIGGER_KEYS, "keep"})
    keep = None if sub.get("keep") is None else _int(sub["keep"], f"{at}.keep", minimum=0)
    return TruncatedFault(_trigger(sub, at), keep)


def _oversized(value: Any, at: str) -> OversizedFault:
    sub = _object(value, at, {*TRIGGER_KEYS, "size", "chunked"})
    size = _int(sub.get("size", DEFAULT_OVERSIZE), f"{at}.size")
    if size > MAX_OVERSIZE:
        raise SpecError(f"{at}.size: at most {MAX_OVERSIZE} bytes (got {size})")
    return OversizedFault(_trigger(sub, at), size, _flag(sub, "chunked", at))


def _errors_5xx(value: Any, at: str) -> ErrorFault:
    sub = _object(value, at, {*TRIGGER_KEYS, "status", "retry_after"})
    status = sub.get("status", 503)
    if status not in ERROR_STATUSES or isinstance(status, bool):
        raise SpecError(f"{at}.status: must be one of {', '.join(map(str, ERROR_STATUSES))}")
    return ErrorFault(_trigger(sub, at), status, _opt_number(sub.get("retry_after"), f"{at}.retry_after"))


def _malformed(value: Any, at: str) -> MalformedFault:
    sub = _object(value, at, {*TRIGGER_KEYS, "shape"})
    shape = sub.get("shape", "text")
    if shape not in ("text", "wrong"):
        raise SpecError(f"{at}.shape: must be 'text' (not JSON) or 'wrong' (JSON without status)")
    return MalformedFault(_trigger(sub, at), shape)


def _quota(value: Any, at: str) -> QuotaSpec:
    sub = _object(value, at, {"quota", "window"})
    if "quota" not in sub or "window" not in sub:
        raise SpecError(f"{at}: needs 'quota' (requests) and 'window' (seconds)")
    return QuotaSpec(_int(sub["quota"], f"{at}.quota"), _number(sub["window"], f"{at}.window", strict=True))


# ------------------------------------------------------------------------------------------------ runs


@dataclass(frozen=True, slots=True)
class RunSpec:
    script: tuple[Step, ...] | None  # None: the default script
    heartbeat_every: float | None = None
    stop_heartbeat_after: float | None = None
    not_found_for: float = 0.0
    faults: FaultSet = field(default_factory=FaultSet)
    duplicate: bool = False
    out_of_order: bool = False
    retry_after: float | None = None
    metadata: Any = None


RUN_FIELDS = {
    "script",
    "heartbeat_every",
    "stop_heartbeat_after",
    "not_found_for",
    "faults",
    "webhook",
    "metadata",
    "retry_after",
}


def parse_run(body: Any) -> RunSpec:
    obj = _object({} if body is None else body, "body", RUN_FIELDS)
    script = None if obj.get("script") is None else parse_script(obj["script"])
    every = obj.get("heartbeat_every")
    heartbeat_every = None if every is None else _number(every, "heartbeat_every", minimum=MIN_HEARTBEAT)
    duplicate = out_of_order = False
    if obj.get("webhook") is not None:
        hook = _object(obj["webhook"], "webhook", {"duplicate", "out_of_order"})
        duplicate = hook.get("duplicate", False)
        out_of_order = hook.get("out_of_order", False)
        for name, flag in (("duplicate", duplicate), ("out_of_order", out_of_order)):
            if not isinstance(flag, bool):
                raise SpecError(f"webhook.{name}: must be true or false")
    return RunSpec(
        script=script,
        heartbeat_every=heartbeat_every,
        stop_heartbeat_after=_opt_number(obj.get("stop_heartbeat_after"), "stop_heartbeat_after"),
        not_found_for=_opt_number(obj.get("not_found_for"), "not_found_for") or 0.0,
        faults=parse_faults(obj.get("faults")),
        duplicate=duplicate,
        out_of_order=out_of_order,
        retry_after=_opt_number(obj.get("retry_after"), "retry_after"),
        metadata=obj.get("metadata"),
    )


# ------------------------------------------------------------------------------------------------ webhooks


@dataclass(frozen=True, slots=True)
class SubscriptionSpec:
    url: str
    secret: str
    runs: frozenset[str] | None


def is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_subscription(body: Any, *, allow_remote: bool) -> SubscriptionSpec:
    obj = _object(body, "body", {"url", "secret", "runs"})
    url = obj.get("url")
    if not isinstance(url, str):
        raise SpecError("url: required, an http(s) URL")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SpecError(f"url: must be an absolute http(s) URL (got {url!r})")
    if not allow_remote and not is_loopback(parts.hostname):
        raise SpecError("url: this server delivers webhooks to loopback addresses only (127.0.0.1, ::1)")
    secret = obj.get("secret")
    if not isinstance(secret, str) or not secret.startswith(webhooks.SECRET_PREFIX):
        raise SpecError("secret: required, 'whsec_' followed by base64 (runwatch.webhooks.generate_secret())")
    try:
        webhooks.sign(secret, "probe", 0, b"")
    except ValueError:
        raise SpecError("secret: the part after 'whsec_' is not valid base64") from None
    runs = obj.get("runs")
    if runs is not None and (not isinstance(runs, list) or not all(isinstance(r, str) for r in runs)):
        raise SpecError("runs: must be a list of run ids, or null for every run")
    return SubscriptionSpec(url, secret, None if runs is None else frozenset(runs))
