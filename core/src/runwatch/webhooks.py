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
    "WebhookVerificationError",
    "generate_secret",
    "sign",
    "verify",
]

SECRET_PREFIX = "whsec_"


class WebhookVerificationError(RunwatchError):
    """A delivery failed verification: missing header, stale or future timestamp, or no signature matched."""


def generate_secret() -> str:
    """A new secret: `whsec_` and the base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(os.urandom(32)).decode("ascii")


def _key(secret: str) -> bytes:
    """The HMAC key of a secret. Raises ValueError (never showing the secret) if it is not base64."""
    encoded = secret[len(SECRET_PREFIX) :] if secret.startswith(SECRET_PREFIX) else secret
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a webhook secret must be 'whsec_' followed by base64") from None
    if not key:
        raise ValueError("a webhook secret must not be empty")
    return key


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
    past or the future are refused. Raises `WebhookVerificationError`; never mentions a secret.
    """
    secret_list = [secrets] if isinstance(secrets, str) else list(secrets)
    if not secret_list:
        raise ValueError("verify() needs at least one webhook secret")
    keys = [_key(s) for s in secret_list]

    lowered = {str(k).lower(): str(v) for k, v in headers.items()}
    msg_id = _header(lowered, "webhook-id")
    raw_timestamp = _header(lowered, "webhook-timestamp")
    raw_signatures = _header(lowered, "webhook-signature")

    try:
        timestamp = int(raw_timestamp)
    except ValueError:
        raise WebhookVerificationError(
            f"webhook-timestamp is not an integer number of seconds: {raw_timestamp[:40]!r}"
        ) from None
    current = time.time() if now is None else now
    if timestamp < current - tolerance:
        raise WebhookVerificationError(
            f"webhook timestamp too old: {current - timestamp:.0f} s ago, tolerance is {tolerance:g} s"
        )
    if timestamp > current + tolerance:
        raise WebhookVerificationError(
            f"webhook timestamp too new: {timestamp - current:.0f} s ahead, tolerance is {tolerance:g} s"
        )

    candidates: list[bytes] = []
    for entry in raw_signatures.split():
        version, _, encoded = entry.partition(",")
        if version != "v1" or not encoded:
            continue  # other schemes (v1a: ed25519) are not ours to check
        try:
            candidates.append(base64.b64decode(encoded, validate=True))
        except (binascii.Error, ValueError):
            continue
    if not candidates:
        raise WebhookVerificationError("webhook-signature has no v1 signature")

    body_bytes = bytes(body)
    matched = False
    for key in keys:
        expected = _digest(key, msg_id, timestamp, body_bytes)
        for candidate in candidates:
            # Compare every pair (no early exit) so timing says nothing about which one matched.
            matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise WebhookVerificationError(f"no webhook signature matched (webhook-id {msg_id[:80]!r})")
    return msg_id
