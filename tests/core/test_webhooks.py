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


BODY = b'{"id":"r-1"}'


@pytest.mark.parametrize("place", ["first", "last"])
def test_rotation_the_matching_secret_first_or_last(place: str) -> None:
    match = webhooks.generate_secret()
    others = [webhooks.generate_secret(), webhooks.generate_secret()]
    secrets = [match, *others] if place == "first" else [*others, match]
    assert webhooks.verify(secrets, signed(match), BODY, now=NOW) == "r-1.3"
    # the matching signature first or last among several
    wrong = signed(others[0])["webhook-signature"]
    headers = signed(match)
    both = [headers["webhook-signature"], wrong]
    headers["webhook-signature"] = " ".join(both if place == "first" else both[::-1])
    assert webhooks.verify(secrets, headers, BODY, now=NOW) == "r-1.3"


def test_a_signature_of_one_secret_is_not_accepted_for_another() -> None:
    a, b, c = (webhooks.generate_secret() for _ in range(3))
    with pytest.raises(
        WebhookVerificationError, match=r"^no webhook signature matched \(webhook-id 'r-1.3'\)$"
    ):
        webhooks.verify([b], signed(a), BODY, now=NOW)
    with pytest.raises(WebhookVerificationError):
        webhooks.verify([a], signed(b), BODY, now=NOW)
    headers = signed(a)
    headers["webhook-signature"] += " " + signed(b)["webhook-signature"]
    with pytest.raises(WebhookVerificationError):
        webhooks.verify([c, c], headers, BODY, now=NOW)


def test_the_id_in_a_refusal_is_cut_at_80_characters() -> None:
    secret = webhooks.generate_secret()
    long_id = "i" * 100
    with pytest.raises(WebhookVerificationError) as info:
        webhooks.verify(secret, signed(webhooks.generate_secret(), msg_id=long_id), BODY, now=NOW)
    assert str(info.value) == f"no webhook signature matched (webhook-id {'i' * 80!r})"


def test_a_secret_without_the_prefix_is_the_same_key() -> None:
    secret = webhooks.generate_secret()
    bare = secret.removeprefix("whsec_")
    assert webhooks.sign(bare, "m", 1, BODY) == webhooks.sign(secret, "m", 1, BODY)
    assert webhooks.check_secrets(secret) == [base64.b64decode(bare)]
    assert webhooks.check_secrets([secret, secret]) == [base64.b64decode(bare)] * 2


@pytest.mark.parametrize(
    ("secrets", "message"),
    [
        ([], "at least one webhook secret is needed"),
        ("whsec_", "webhook secret: a webhook secret must not be empty"),
        ("whsec_abc", "webhook secret: a webhook secret must be 'whsec_' followed by base64"),
        (
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            "webhook secret: a webhook secret must be 'whsec_' followed by base64"
            " (a 'v1,...' value is a signature, not a secret)",
        ),
        (
            [VECTOR_SECRET, 42],
            "webhook secret 2 of 2: a webhook secret must be a string, not int",
        ),
        (
            [VECTOR_SECRET.replace("MfKQ", "Mf!KQ"), VECTOR_SECRET, VECTOR_SECRET],
            "webhook secret 1 of 3: a webhook secret must be 'whsec_' followed by base64",
        ),
    ],
)
def test_bad_secrets_are_named_exactly(secrets: object, message: str) -> None:
    with pytest.raises(webhooks.WebhookSecretError) as info:
        webhooks.check_secrets(secrets)  # type: ignore[arg-type]
    assert str(info.value) == message


def test_a_whsec_secret_is_decoded_without_its_prefix() -> None:
    # "whsec_" would decode as base64 too ("whsec" + padding error aside): the prefix must be cut first.
    assert webhooks.check_secrets("whsec_AAAA") == [b"\x00\x00\x00"]


@pytest.mark.parametrize(("offset", "accepted"), [(-300, True), (-301, False), (300, True), (301, False)])
def test_the_tolerance_is_inclusive_to_the_second(offset: int, accepted: bool) -> None:
    secret = webhooks.generate_secret()
    headers = signed(secret, ts=int(NOW) + offset)
    if accepted:
        assert webhooks.verify(secret, headers, BODY, now=NOW) == "r-1.3"
        assert webhooks.verify_headers(headers, now=NOW) == "r-1.3"
        return
    word, where = ("old", "301 s ago") if offset < 0 else ("new", "301 s ahead")
    with pytest.raises(WebhookVerificationError) as info:
        webhooks.verify_headers(headers, now=NOW)
    assert str(info.value) == f"webhook timestamp too {word}: {where}, tolerance is 300 s"


def test_verify_headers_applies_its_tolerance_and_clock() -> None:
    headers = signed(webhooks.generate_secret(), ts=int(NOW) - 50)
    assert webhooks.verify_headers(headers, tolerance=50, now=NOW) == "r-1.3"
    with pytest.raises(WebhookVerificationError, match="too old"):
        webhooks.verify_headers(headers, tolerance=49, now=NOW)
    with pytest.raises(WebhookVerificationError, match="too old"):
        webhooks.verify_headers(headers)  # the real clock is years later
    with pytest.raises(WebhookVerificationError, match=r"^missing webhook-signature header$"):
        webhooks.verify_headers({**headers, "webhook-signature": "  "}, now=NOW)


@pytest.mark.parametrize(
    ("timestamp", "accepted"),
    [
        ("1" * 15, True),
        ("1" * 16, False),
        ("\u0661\u0667" + "\u0660" * 8, False),
        ("-5", False),
        (" 1700000000 ", True),
    ],
)
def test_timestamps_are_ascii_digits_of_at_most_15(timestamp: str, accepted: bool) -> None:
    headers = {"webhook-id": "m", "webhook-timestamp": timestamp, "webhook-signature": VECTOR_SIG}
    if accepted:
        now = float(timestamp.strip())
        assert webhooks.verify_headers(headers, now=now) == "m"
        return
    with pytest.raises(WebhookVerificationError) as info:
        webhooks.verify_headers(headers, now=NOW)
    assert (
        str(info.value)
        == f"webhook-timestamp is not an integer number of seconds: {timestamp.strip()[:40]!r}"
    )


def test_a_long_bad_timestamp_is_cut_at_40_characters() -> None:
    headers = {"webhook-id": "m", "webhook-timestamp": "x" * 60, "webhook-signature": VECTOR_SIG}
    with pytest.raises(WebhookVerificationError) as info:
        webhooks.verify_headers(headers, now=NOW)
    assert str(info.value).endswith(f": {'x' * 40!r}")


@pytest.mark.parametrize(
    "signature",
    # "v1,g0h!M9...": base64 with a stray character, which a lenient decoder would skip over
    [
        "v1,",
        "v2," + VECTOR_SIG[3:],
        "v1,g0h!" + VECTOR_SIG[6:],
        "v1,=" + VECTOR_SIG[3:],
        "v1a," + VECTOR_SIG[3:],
    ],
)
def test_only_well_formed_v1_entries_count(signature: str) -> None:
    headers = {"webhook-id": "m", "webhook-timestamp": str(int(NOW)), "webhook-signature": signature}
    with pytest.raises(WebhookVerificationError) as info:
        webhooks.verify_headers(headers, now=NOW)
    assert str(info.value) == "webhook-signature has no v1 signature"


def test_a_malformed_entry_before_the_good_one_is_passed_over() -> None:
    secret = webhooks.generate_secret()
    headers = signed(secret)
    headers["webhook-signature"] = "v1,!!notbase64 " + headers["webhook-signature"]
    assert webhooks.verify(secret, headers, BODY, now=NOW) == "r-1.3"
