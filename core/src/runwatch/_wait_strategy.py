"""A tenacity wait that lets the server's hint win over our own backoff."""

from __future__ import annotations

from tenacity import RetryCallState, wait_random_exponential
from tenacity.wait import wait_base

from runwatch._transport import TransientError

__all__ = ["wait_server_hint"]


class wait_server_hint(wait_base):
    """Wait what `Retry-After` asked for when the failure carried one; otherwise full-jitter backoff."""

    def __init__(self, multiplier: float, max: float) -> None:
        self.fallback = wait_random_exponential(multiplier=multiplier, max=max)

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        if isinstance(exc, TransientError) and exc.retry_after is not None:
            return exc.retry_after
        return float(self.fallback(retry_state))
