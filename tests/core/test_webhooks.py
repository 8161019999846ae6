"""Standard Webhooks signing and verification (runwatch.webhooks)."""

from __future__ import annotations

import base64
import hmac

import pytest

from runwatch import webhooks
from runwatch._errors import RunwatchError
from runwatch.webhooks import WebhookVerificationError

# The published Standard Webhooks / Svix example.
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TS = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIG = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

NOW = 1_700_000_000.0


def signed(
    secret: str, body: bytes = b'{"id":"r-1"}', msg_id: str = "r-1.3", ts: int = int(NOW)
) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": webhooks.sign(secret, msg_id, ts, body),
    }


def test_generate_secret_is_whsec_and_32_random_bytes() -> None:
    secret = webhooks.generate_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert webhooks.generate_secret() != secret


def test_sign_matches_the_published_vector() -> None:
    assert webhooks.sign(VECTOR_SECRET, VECTOR_ID, VECTOR_TS, VECTOR_BODY) == VECTOR_SIG


def test_verify_the_published_vector_returns_the_id() -> None:
    headers = {"webhook-id": VECTOR_ID, "webhook-timestamp": str(VECTOR_TS), "webhook-signature": VECTOR_SIG}
    assert webhooks.verify(VECTOR_SECRET, headers, VECTOR_BODY, now=VECTOR_TS + 10) == VECTOR_ID


def test_headers_are_case_insensitive() -> None:
    secret = webhooks.generate_secret()
    headers = {k.title(): v for k, v in signed(secret).items()}
    assert "Webhook-Id" in headers
    assert webhooks.verify(secret, headers, b'{"id":"r-1"}', now=NOW) == "r-1.3"


def test_rotation_any_secret_may_match() -> None:
    old, new = webhooks.generate_secret(), webhooks.generate_secret()
    headers = signed(old)
    assert webhooks.verify([new, old], headers, b'{"id":"r-1"}', now=NOW) == "r-1.3"
    with pytest.raises(WebhookVerificationError, match="no webhook signature matched"):
        webhooks.verify([new], headers, b'{"id":"r-1"}', now=NOW)


def test_several_signatures_any_may_match() -> None:
    secret, other = webhooks.generate_secret(), webhooks.generate_secret()
    good = signed(secret)
    wrong = signed(other)["webhook-signature"]
    good["webhook-signature"] = f"{wrong} v1a,c29tZWVkMjU1MTk= {good['webhook-signature']} v1,!!notbase64"
    assert webhooks.verify(secret, good, b'{"id":"r-1"}', now=NOW) == "r-1.3"


def test_tampered_body_or_id_is_refused() -> None:
    secret = webhooks.generate_secret()
    headers = signed(secret)
    with pytest.raises(WebhookVerificationError):
        webhooks.verify(secret, headers, b'{"id":"r-2"}', now=NOW)
    with pytest.raises(WebhookVerificationError):
        webhooks.verify(secret, {**headers, "webhook-id": "r-1.4"}, b'{"id":"r-1"}', now=NOW)


@pytest.mark.parametrize(
    ("offset", "message"), [(-301, "too old"), (301, "too new")], ids=["too-old", "too-new"]
)
def test_timestamps_outside_the_tolerance_are_refused(offset: int, message: str) -> None:
    secret = webhooks.generate_secret()
    headers = signed(secret, ts=int(NOW) + offset)
    with pytest.raises(WebhookVerificationError, match=message):
        webhooks.verify(secret, headers, b'{"id":"r-1"}', now=NOW)
    # at its own time, and with a wider tolerance, the same delivery passes
    assert webhooks.verify(secret, headers, b'{"id":"r-1"}', now=NOW + offset)
    assert webhooks.verify(secret, headers, b'{"id":"r-1"}', now=NOW, tolerance=400)


def test_default_now_is_the_clock() -> None:
    import time

    secret = webhooks.generate_secret()
    assert webhooks.verify(secret, signed(secret, ts=int(time.time())), b'{"id":"r-1"}') == "r-1.3"
    with pytest.raises(WebhookVerificationError, match="too old"):
        webhooks.verify(secret, signed(secret, ts=int(time.time()) - 3600), b'{"id":"r-1"}')


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_headers_are_named(missing: str) -> None:
    secret = webhooks.generate_secret()
    headers = signed(secret)
    del headers[missing]
    with pytest.raises(WebhookVerificationError, match=f"missing {missing} header"):
        webhooks.verify(secret, headers, b'{"id":"r-1"}', now=NOW)


def test_malformed_timestamp_and_signature_header() -> None:
    secret = webhooks.generate_secret()
    with pytest.raises(WebhookVerificationError, match="not an integer"):
        webhooks.verify(secret, {**signed(secret), "webhook-timestamp": "soon"}, b"{}", now=NOW)
    with pytest.raises(WebhookVerificationError, match="no v1 signature"):
        webhooks.verify(secret, {**signed(secret), "webhook-signature": "v1a,abc"}, b"{}", now=NOW)


def test_errors_never_show_the_secret() -> None:
    secret = webhooks.generate_secret()
    key_part = secret.removeprefix("whsec_")
    headers = signed(webhooks.generate_secret())
    with pytest.raises(WebhookVerificationError) as info:
        webhooks.verify(secret, headers, b'{"id":"r-1"}', now=NOW)
    assert key_part not in str(info.value)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, RunwatchError)
    with pytest.raises(ValueError) as bad:
        webhooks.verify("whsec_not base64!", headers, b"{}", now=NOW)
    assert "not base64!" not in str(bad.value)


def test_no_secret_is_a_usage_error() -> None:
    with pytest.raises(ValueError, match="at least one"):
        webhooks.verify([], {}, b"", now=NOW)


def test_comparison_is_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    one, two = webhooks.generate_secret(), webhooks.generate_secret()
    headers = signed(two)
    assert webhooks.verify([one, two], headers, b'{"id":"r-1"}', now=NOW) == "r-1.3"
    # every (secret, signature) pair is compared with compare_digest, with no early exit
    assert len(calls) == 2
    assert all(len(a) == len(b) == 32 for a, b in calls)
