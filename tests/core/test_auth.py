"""Credentials that outlive a wait: tokens fetched before they expire, once more on a 401, once per credential."""

from __future__ import annotations

import asyncio
import json

import pytest

from runwatch import (
    AccessDenied,
    ClientCredentials,
    Policy,
    RunApi,
    State,
    Token,
    TokenAuth,
    TokenFunction,
    wait_for_run,
)
from runwatch.server import ReferenceServer

CLIENT = ("rw-client", "secret-7f3b1c")
FAST = Policy(interval=0.05, max_interval=0.2, unavailable_after=10)


def issued(server: ReferenceServer) -> int:
    return int(server.stats()["tokens"]["issued"])


@pytest.fixture
def auth_server(runwatch_server_factory: object) -> ReferenceServer:
    factory = runwatch_server_factory
    assert callable(factory)
    server: ReferenceServer = factory(retry_after=0, client_credentials=CLIENT, token_lifetime=1.0)
    return server


def credentials(server: ReferenceServer, secret: str = CLIENT[1], method: str = "post") -> TokenAuth:
    provider = ClientCredentials(f"{server.url}/oauth/token", CLIENT[0], secret, auth_method=method)
    return TokenAuth(provider, refresh_before=0.2)


@pytest.mark.parametrize("method", ["post", "basic"])
async def test_a_wait_of_many_token_lifetimes_refreshes_once_per_lifetime(
    auth_server: ReferenceServer, method: str
) -> None:
    auth = credentials(auth_server, method=method)
    api = RunApi(auth_server.url, auth=auth)
    runs = [
        auth_server.create_run(script=[{"status": "RUNNING", "for": 4.0}, {"status": "SUCCEEDED"}])
        for _ in range(20)
    ]
    finals = await asyncio.gather(*(wait_for_run(api, r["id"], policy=FAST) for r in runs))
    assert {f.status for f in finals} == {State.SUCCEEDED}
    # 20 waits over about five lifetimes of 1 s, renewed 0.2 s early: one token per 0.8 s for all of them,
    # never one per wait.
    assert 4 <= issued(auth_server) == auth.fetches <= 8
    assert auth_server.stats()["tokens"]["expired_seen"] == 0  # renewed before, never after, expiry


async def test_a_401_is_answered_once_with_a_fresh_token_and_a_second_401_stands(
    auth_server: ReferenceServer,
) -> None:
    served = iter(["revoked-token", "still-revoked"])
    auth = TokenAuth(TokenFunction(lambda: next(served)))
    run = auth_server.create_run(script=[{"status": "SUCCEEDED"}])
    with pytest.raises(AccessDenied):
        await wait_for_run(RunApi(auth_server.url, auth=auth), run["id"], policy=FAST)
    assert auth.fetches == 2  # the first 401 fetched a new token; the second 401 ended the wait

    real = credentials(auth_server)
    good = await real.provider.fetch(RunApi(auth_server.url))
    tokens = iter([Token("revoked-token"), good])
    recovering = TokenAuth(TokenFunction(lambda: next(tokens)))
    final = await wait_for_run(RunApi(auth_server.url, auth=recovering), run["id"], policy=FAST)
    assert final.status is State.SUCCEEDED and recovering.fetches == 2


async def test_a_wrong_client_secret_is_access_denied_at_once_and_never_shown(
    auth_server: ReferenceServer,
) -> None:
    auth = credentials(auth_server, secret="wrong-9d2e")
    run = auth_server.create_run(script=[{"status": "SUCCEEDED"}])
    with pytest.raises(AccessDenied, match="refused the client credentials") as info:
        await wait_for_run(RunApi(auth_server.url, auth=auth), run["id"], policy=FAST)
    assert "wrong-9d2e" not in str(info.value) + repr(auth) + repr(auth.provider)
    api = RunApi(auth_server.url, auth=auth)
    assert "wrong-9d2e" not in repr(api) + json.dumps(api.to_dict())


async def test_an_async_token_function_and_a_sync_one_that_blocks(auth_server: ReferenceServer) -> None:
    real = credentials(auth_server)
    token = await real.provider.fetch(RunApi(auth_server.url))

    async def async_source() -> Token:
        return token

    def blocking_source() -> str:
        import time

        time.sleep(0.05)  # a cloud SDK's blocking call: runs in a thread, not in the loop
        return token.value

    run = auth_server.create_run(script=[{"status": "SUCCEEDED"}])
    for source in (async_source, blocking_source):
        api = RunApi(auth_server.url, auth=TokenAuth(TokenFunction(source)))
        assert (await wait_for_run(api, run["id"], policy=FAST)).status is State.SUCCEEDED


async def test_the_token_goes_only_to_the_apis_origin(
    auth_server: ReferenceServer, runwatch_server_factory: object
) -> None:
    factory = runwatch_server_factory
    assert callable(factory)
    other: ReferenceServer = factory(retry_after=0)
    run = other.create_run(script=[{"status": "SUCCEEDED"}])
    auth = credentials(auth_server)
    api = RunApi(auth_server.url, auth=auth, other_origins="anonymous")
    final = await wait_for_run(api, run["url"], policy=FAST)
    assert final.status is State.SUCCEEDED
    assert auth.fetches == 0  # no token was even fetched for another origin
