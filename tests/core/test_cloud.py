"""Cloud credentials through the clouds' own libraries, each against a test double of its token endpoint on
127.0.0.1 (the real clouds are out of reach here), and a real wait on the reference server with the token.

- Azure: azure-identity's own `ManagedIdentityCredential`, on the App Service managed identity protocol
  (IDENTITY_ENDPOINT, IDENTITY_HEADER; plain http on localhost, as App Service serves it). Its client
  secret and certificate credentials insist on an https authority, so they are not run here.
- Google: google-auth's own user `Credentials` refreshed at a local `token_uri` (the refresh-token grant).
- GitHub: the app's JWT, checked by the double with the app's public key, exchanged for a token.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

import jwt
import pytest
from aiohttp import web
from azure.identity import ManagedIdentityCredential
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.oauth2.credentials import Credentials

import runwatch
from runwatch import Policy, RunApi, State, TokenAuth, wait_for_run
from runwatch.cloud import AzureCredential, GitHubAppInstallation, GoogleCredentials
from runwatch.server import ReferenceServer

ACCESS = "cloud-token-9f2c"  # what each double issues, and what the reference server takes
FAST = Policy(interval=0.05, max_interval=0.05)
SCRIPT = [{"status": "RUNNING", "for": 0.2}, {"status": "SUCCEEDED"}]
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PEM = KEY.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
).decode()


class Double:
    """The token endpoints, as the clouds document them; `seen` records what each was asked."""

    def __init__(self) -> None:
        self.url = ""
        self.seen: list[dict[str, Any]] = []
        self.refuse = False

    async def github(self, request: web.Request) -> web.Response:
        claims = jwt.decode(
            request.headers["Authorization"].removeprefix("Bearer "), KEY.public_key(), algorithms=["RS256"]
        )
        self.seen.append({"installation": request.match_info["installation"], **claims})
        if self.refuse:
            return web.json_response({"message": "Bad credentials"}, status=401)
        expires = datetime.fromtimestamp(time.time() + 3600, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        return web.json_response({"token": ACCESS, "expires_at": expires}, status=201)

    async def google(self, request: web.Request) -> web.Response:
        self.seen.append(dict(await request.post()))
        return web.json_response({"access_token": ACCESS, "expires_in": 3599, "token_type": "Bearer"})

    async def azure(self, request: web.Request) -> web.Response:
        self.seen.append({"header": request.headers.get("X-IDENTITY-HEADER"), **request.query})
        expires_on = str(int(time.time()) + 3600)
        return web.json_response({"access_token": ACCESS, "expires_on": expires_on, "token_type": "Bearer"})


@pytest.fixture
async def double() -> AsyncIterator[Double]:
    found = Double()
    app = web.Application()
    app.router.add_post("/app/installations/{installation}/access_tokens", found.github)
    app.router.add_post("/token", found.google)
    app.router.add_get("/msi/token", found.azure)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    found.url = f"http://127.0.0.1:{port}"
    yield found
    await runner.cleanup()


async def waited(server: ReferenceServer, auth: TokenAuth) -> runwatch.RunStatus:
    run = server.create_run(script=SCRIPT)
    return await wait_for_run(RunApi(server.url, auth=auth), run["id"], policy=FAST)


@pytest.mark.runwatch_server(token=ACCESS)
async def test_a_github_app_installation_token_from_the_apps_jwt(
    double: Double, runwatch_server: ReferenceServer
) -> None:
    auth = TokenAuth(GitHubAppInstallation(12345, PEM, 678, api_url=double.url))
    assert (await waited(runwatch_server, auth)).status is State.SUCCEEDED
    [asked] = double.seen
    assert asked["installation"] == "678" and asked["iss"] == "12345"
    assert asked["exp"] - asked["iat"] == 600 and asked["iat"] <= time.time() - 59  # GitHub's clock skew
    assert auth.fetches == 1
    assert "BEGIN" not in repr(auth.provider)


async def test_a_github_app_refused_is_access_denied(double: Double) -> None:
    double.refuse = True
    provider = GitHubAppInstallation("1", PEM, "2", api_url=double.url)
    with pytest.raises(runwatch.AccessDenied, match="GitHub refused app 1"):
        await provider.fetch(RunApi("http://127.0.0.1:9"))


@pytest.mark.runwatch_server(token=ACCESS)
async def test_google_auth_credentials_refreshed_in_a_thread(
    double: Double, runwatch_server: ReferenceServer
) -> None:
    credentials = Credentials(  # type: ignore[no-untyped-call]
        token=None, refresh_token="r-1", token_uri=f"{double.url}/token", client_id="c-1", client_secret="s-1"
    )
    provider = GoogleCredentials(credentials)
    token = await provider.fetch(RunApi("http://127.0.0.1:9"))
    assert token.value == ACCESS and token.expires_at is not None
    assert abs(token.expires_at - (time.time() + 3599)) < 60  # google-auth's expiry, as UNIX seconds
    assert (await waited(runwatch_server, TokenAuth(provider))).status is State.SUCCEEDED
    assert [(s["grant_type"], s["refresh_token"]) for s in double.seen] == [("refresh_token", "r-1")] * 2


@pytest.mark.runwatch_server(token=ACCESS)
async def test_an_azure_identity_managed_identity_token(
    double: Double, runwatch_server: ReferenceServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IDENTITY_ENDPOINT", f"{double.url}/msi/token")
    monkeypatch.setenv("IDENTITY_HEADER", "id-header-1")
    scope = "2ff814a6-3304-4ab8-85cb-cd0e6f879c1d/.default"  # Azure Databricks
    auth = TokenAuth(AzureCredential(ManagedIdentityCredential(), scope))
    assert (await waited(runwatch_server, auth)).status is State.SUCCEEDED
    [asked] = double.seen
    assert asked["header"] == "id-header-1"
    assert asked["resource"] == "2ff814a6-3304-4ab8-85cb-cd0e6f879c1d"  # the scope, as App Service wants it
    assert auth.fetches == 1


@pytest.mark.runwatch_server(token=ACCESS)
async def test_auth_for_github_app_and_azure_as_a_connection_or_block_gives_them(
    double: Double, runwatch_server: ReferenceServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    github = runwatch.auth_for(
        "github_app", PEM, username="12345", token_url=f"{double.url}/app/installations/678/access_tokens"
    )
    assert isinstance(github, TokenAuth) and github.provider.key[:4] == (
        "github_app",
        double.url,
        "12345",
        "678",
    )
    assert (await waited(runwatch_server, github)).status is State.SUCCEEDED
    # azure: DefaultAzureCredential, which finds the App Service managed identity here
    monkeypatch.setenv("IDENTITY_ENDPOINT", f"{double.url}/msi/token")
    monkeypatch.setenv("IDENTITY_HEADER", "id-header-1")
    azure = runwatch.auth_for("azure", None, scope="api://jobs/.default")
    assert isinstance(azure, TokenAuth)
    assert (await waited(runwatch_server, azure)).status is State.SUCCEEDED
    assert [asked.get("resource") for asked in double.seen] == [None, "api://jobs"]


@pytest.mark.parametrize(
    ("style", "settings", "message"),
    [
        (
            "github_app",
            {"username": "1", "token_url": "https://api.github.com/app/x"},
            "installations/<install",
        ),
        ("github_app", {"token_url": "https://api.github.com/app/installations/2/access_tokens"}, "app id"),
        ("azure", {}, "auth style azure needs a scope"),
    ],
)
def test_a_cloud_style_missing_a_setting_is_a_value_error_naming_it(
    style: str, settings: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        runwatch.auth_for(style, PEM, **settings)
