"""Standard Webhooks 1.0: sign and verify deliveries (pure standard library).

A delivery carries three headers: `webhook-id` (stable across retries: the idempotency key),
`webhook-timestamp` (unix seconds of this attempt) and `webhook-signature` (space-separated
`v1,<base64 HMAC-SHA256>` entries, several during a key rotation). The signed content is
`{id}.{timestamp}.{raw body}`; the key is the base64-decoded part of the `whsec_...` secret.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import time
from collections.abc import Mapping, Sequence

from runwatch._errors import RunwatchError

__all__ = [
    "SECRET_PREFIX",
    "WebhookSecretError",
    "WebhookVerificationError",
    "check_secrets",
    "generate_secret",
    "sign",
    "verify",
    "verify_headers",
]

SECRET_PREFIX = "whsec_"


class WebhookVerificationError(RunwatchError):
    """A delivery failed verification: missing header, stale or future timestamp, or no signature matched."""


class WebhookSecretError(RunwatchError, ValueError):
    """A webhook secret is not `whsec_` followed by base64 (a usage error: exit code 64). Never shows it."""

    exit_code = 64


def generate_secret() -> str:
    """A new secret: `whsec_` and the base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(os.urandom(32)).decode("ascii")


def _key(secret: str) -> bytes:
    """The HMAC key of a secret. Raises WebhookSecretError (never showing the secret) if it is not base64."""
    if not isinstance(secret, str):
        raise WebhookSecretError(f"a webhook secret must be a string, not {type(secret).__name__}")
    encoded = secret[len(SECRET_PREFIX) :] if secret.startswith(SECRET_PREFIX) else secret
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        # A pasted signature ("v1,<base64>") is the usual mistake; saying so shows nothing of the secret.
        hint = " (a 'v1,...' value is a signature, not a secret)" if secret.startswith("v1,") else ""
        raise WebhookSecretError(f"a webhook secret must be 'whsec_' followed by base64{hint}") from None
    if not key:
        raise WebhookSecretError("a webhook secret must not be empty")
    return key


def check_secrets(secrets: str | Sequence[str]) -> list[bytes]:
    """The HMAC keys of one secret or several (rotation). Raises WebhookSecretError naming the bad one."""
    secret_list = [secrets] if isinstance(secrets, str) else list(secrets)
    if not secret_list:
        raise WebhookSecretError("at least one webhook secret is needed")
    keys = []
    for n, secret in enumerate(secret_list, 1):
        try:
            keys.append(_key(secret))
        except WebhookSecretError as exc:
            where = f"webhook secret {n} of {len(secret_list)}" if len(secret_list) > 1 else "webhook secret"
            raise WebhookSecretError(f"{where}: {exc}") from None
    return keys


def _digest(key: bytes, msg_id: str, timestamp: int, body: bytes) -> bytes:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return hmac.new(key, signed, hashlib.sha256).digest()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value (`v1,<base64>`) for one delivery attempt."""
    digest = _digest(_key(secret), msg_id, int(timestamp), bytes(body))
    return "v1," + base64.b64encode(digest).decode("ascii")


def _header(lowered: Mapping[str, str], name: str) -> str:
    value = lowered.get(name)
    if value is None or not value.strip():
        raise WebhookVerificationError(f"missing {name} header")
    return value.strip()


def verify_headers(headers: Mapping[str, str], *, tolerance: float = 300, now: float | None = None) -> str:
    """Check what can be checked before the body is read; return the `webhook-id`.

    The three headers must be present, the timestamp within `tolerance` seconds of `now` (default: the clock)
    and at least one `v1` signature well formed. A receiver calls this first, so a request that can never
    verify is refused without reading its body. Raises `WebhookVerificationError`.
    """
    return _read_headers(headers, tolerance, now)[0]


def _read_headers(
    headers: Mapping[str, str], tolerance: float, now: float | None
) -> tuple[str, int, list[bytes]]:
    lowered = {str(k).lower(): str(v) for k, v in headers.items()}
    msg_id = _header(lowered, "webhook-id")
    timestamp = _timestamp(_header(lowered, "webhook-timestamp"), tolerance, now)
    return msg_id, timestamp, _signatures(_header(lowered, "webhook-signature"))


def _timestamp(raw: str, tolerance: float, now: float | None) -> int:
    """The delivery's UNIX time, if within `tolerance` seconds of `now` (default: the clock)."""
    # Digits only, and few enough that the arithmetic below stays in float range whatever the sender says.
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 15):
        raise WebhookVerificationError(f"webhook-timestamp is not an integer number of seconds: {raw[:40]!r}")
    timestamp = int(raw)
    current = time.time() if now is None else now
    if timestamp < current - tolerance:
        raise WebhookVerificationError(
            f"webhook timestamp too old: {current - timestamp:.0f} s ago, tolerance is {tolerance:g} s"
        )
    if timestamp > current + tolerance:
        raise WebhookVerificationError(
            f"webhook timestamp too new: {timestamp - current:.0f} s ahead, tolerance is {tolerance:g} s"
        )
    return timestamp


def _signatures(raw: str) -> list[bytes]:
    """The well-formed `v1` signatures of a space-separated list; at least one."""
    candidates: list[bytes] = []
    for entry in raw.split():
        version, _, encoded = entry.partition(",")
        if version != "v1" or not encoded:
            continue  # other schemes (v1a: ed25519) are not ours to check
        try:
            candidates.append(base64.b64decode(encoded, validate=True))
        except (binascii.Error, ValueError):
            continue
    if not candidates:
        raise WebhookVerificationError("webhook-signature has no v1 signature")
    return candidates


def _matches(keys: list[bytes], msg_id: str, timestamp: int, body: bytes, candidates: list[bytes]) -> bool:
    matched = False
    for key in keys:
        expected = _digest(key, msg_id, timestamp, body)
        for candidate in candidates:
            # Compare every pair (no early exit) so timing says nothing about which one matched.
            matched |= hmac.compare_digest(expected, candidate)
    return matched


def verify(
    secrets: str | Sequence[str],
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance: float = 300,
    now: float | None = None,
) -> str:
    """Check one delivery and return its `webhook-id`.

    `secrets` may list several keys (rotation): any one may match, and so may any of the space-separated
    signatures. Header names are matched case-insensitively. Timestamps more than `tolerance` seconds in the
    past or the future are refused. Raises `WebhookVerificationError`, or `WebhookSecretError` for a
    malformed secret; never mentions a secret.
    """
    keys = check_secrets(secrets)
    msg_id, timestamp, candidates = _read_headers(headers, tolerance, now)
    if not _matches(keys, msg_id, timestamp, bytes(body), candidates):
        raise WebhookVerificationError(f"no webhook signature matched (webhook-id {msg_id[:80]!r})")
    return msg_id
