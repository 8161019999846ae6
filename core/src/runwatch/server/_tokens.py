"""Short-lived access tokens, as an OAuth 2.0 authorization server issues them (RFC 6749 §4.4).

`POST /oauth/token` with `grant_type=client_credentials` and the configured client id and secret (in the form
or as HTTP Basic) answers `{"access_token", "token_type": "Bearer", "expires_in"}`; an issued token opens the
API until it expires, then the API answers 401. The server counts the tokens it issued, so a test can say
how often a client refreshed.
"""

from __future__ import annotations

import base64
import hmac
import secrets
import time
from urllib.parse import parse_qs

__all__ = ["TokenIssuer"]


class TokenIssuer:
    """Issues tokens for one client and checks them; `issued` counts them."""

    def __init__(self, client_id: str, client_secret: str, lifetime: float) -> None:
        self.client_id, self._secret, self.lifetime = client_id, client_secret, lifetime
        self._tokens: dict[str, float] = {}  # token -> monotonic expiry
        self.issued = 0
        self.expired_seen = 0  # requests that came with a token past its expiry

    def issue(
        self, body: bytes, authorization: str | None, *, counted: bool = True
    ) -> tuple[int, dict[str, object]]:
        """(HTTP status, JSON body) for one token request (`counted`: False for the server's own helpers)."""
        form = {k: v[0] for k, v in parse_qs(body.decode("latin-1")).items()}
        if form.get("grant_type") != "client_credentials":
            return 400, {"error": "unsupported_grant_type"}
        client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        if authorization and authorization.lower().startswith("basic "):
            pair = base64.b64decode(authorization[6:].strip() + "==").decode("latin-1")
            client_id, _, secret = pair.partition(":")
        if not (
            hmac.compare_digest(client_id.encode(), self.client_id.encode())
            and hmac.compare_digest(secret.encode(), self._secret.encode())
        ):
            return 401, {"error": "invalid_client"}
        token = "rt-" + secrets.token_urlsafe(18)
        now = time.monotonic()
        self._tokens = {t: e for t, e in self._tokens.items() if e > now}  # forget the dead ones
        self._tokens[token] = now + self.lifetime
        self.issued += counted
        return 200, {"access_token": token, "token_type": "Bearer", "expires_in": self.lifetime}

    def valid(self, token: bytes) -> bool:
        expiry = self._tokens.get(token.decode("latin-1"))
        if expiry is None:
            return False
        if expiry <= time.monotonic():
            self.expired_seen += 1
            return False
        return True
