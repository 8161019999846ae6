"""The blocks: Prefect's block conventions, save/load/register, secrets kept secret."""

from __future__ import annotations

import subprocess
import sys

import pytest
from prefect.blocks.core import Block
from prefect.client.orchestration import get_client
from prefect.testing.standard_test_suites import BlockStandardTestSuite
from prefect_harness import CANARY, FAST, subprocess_env
from pydantic import ValidationError

import runwatch
from prefect_runwatch import RemoteRunJob, RunStatusApi
from runwatch.server import ReferenceServer

LOGO_SKIP = "no logo to check: the runwatch blocks ship none (Prefect's UI shows its default)"


class TestRunStatusApiConventions(BlockStandardTestSuite):
    def test_has_a_valid_image(self, block: type[Block]) -> None:
        if block._logo_url is None:
            pytest.skip(LOGO_SKIP)
        BlockStandardTestSuite.test_has_a_valid_image(
            self, block
        )  # a logo added later: checked as Prefect does

    @pytest.fixture
    def block(self) -> type[Block]:
        return RunStatusApi


class TestRemoteRunJobConventions(BlockStandardTestSuite):
    test_has_a_valid_image = TestRunStatusApiConventions.test_has_a_valid_image

    @pytest.fixture
    def block(self) -> type[Block]:
        return RemoteRunJob


def test_block_types_have_their_own_slugs() -> None:
    assert RunStatusApi.get_block_type_slug() == "runwatch-run-status-api"
    assert RemoteRunJob.get_block_type_slug() == "runwatch-remote-run-job"
    assert RunStatusApi._to_block_schema().fields["secret_fields"] == ["token", "budget_url"]


async def test_save_and_load_round_trip(api: RunStatusApi, server: ReferenceServer) -> None:
    api.profile = "standard"
    api.headers = {"X-Team": "data"}
    await api.asave("round-trip", overwrite=True)
    loaded = await RunStatusApi.aload("round-trip")
    assert loaded.base_url == server.url
    assert loaded.headers == {"X-Team": "data"}
    assert loaded.token is not None and loaded.token.get_secret_value() == CANARY
    run = server.create_run(script=[{"status": "SUCCEEDED"}])
    status = await loaded.get_api().get_status(run["id"])
    assert status.status is runwatch.State.SUCCEEDED


async def test_token_is_obfuscated_everywhere_but_in_the_secret(api: RunStatusApi) -> None:
    await api.asave("secretive", overwrite=True)
    async with get_client() as client:
        document = await client.read_block_document_by_name("secretive", "runwatch-run-status-api", False)
    assert CANARY not in str(document.data)
    assert document.data["token"].startswith("****")
    assert CANARY not in repr(api) and CANARY not in str(api.model_dump())
    assert CANARY not in repr(api.get_api())


async def test_nested_job_block_saves_loads_and_runs(api: RunStatusApi, server: ReferenceServer) -> None:
    body = {
        "script": [{"status": "RUNNING", "for": 0.3}, {"status": "SUCCEEDED", "output_ref": "s3://out/1"}]
    }
    await RemoteRunJob(api=api, body=body, **FAST).asave("nested-job", overwrite=True)
    job = await RemoteRunJob.aload("nested-job")
    assert job.api.token is not None and job.api.token.get_secret_value() == CANARY
    run = await job.trigger()
    await run.wait_for_completion()
    assert (await run.fetch_result())["output_ref"] == "s3://out/1"


def test_prefect_block_register_finds_both_blocks() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "prefect", "block", "register", "-m", "prefect_runwatch"],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "runwatch Run Status API" in result.stdout
    assert "runwatch Remote Run Job" in result.stdout


def test_collection_entry_point_loads() -> None:
    from prefect.plugins import load_prefect_collections

    assert "prefect_runwatch" in load_prefect_collections()


def test_bad_profile_is_refused_with_the_reason() -> None:
    with pytest.raises(ValidationError, match="no-such-profile"):
        RunStatusApi(base_url="http://127.0.0.1:1", profile="no-such-profile")


@pytest.mark.parametrize(
    ("fields", "header", "value"),
    [
        ({}, "Authorization", "Bearer t0k"),
        ({"auth_style": "basic", "username": "me"}, "Authorization", "Basic bWU6dDBr"),
        # An empty user name is a basic user (an API key alone): the core's rule, as in the Airflow hook.
        ({"auth_style": "basic", "username": ""}, "Authorization", "Basic OnQwaw=="),
        ({"auth_style": "basic"}, "Authorization", "Basic OnQwaw=="),
        ({"auth_style": "header", "auth_header": "X-Key"}, "X-Key", "t0k"),
    ],
)
def test_auth_styles(fields: dict[str, str], header: str, value: str) -> None:
    api = RunStatusApi(base_url="http://127.0.0.1:1", token="t0k", **fields).get_api()
    assert api.request_headers()[header] == value


async def test_wrong_token_is_access_denied(server: ReferenceServer) -> None:
    run = server.create_run(script=[{"status": "SUCCEEDED"}])
    api = RunStatusApi(base_url=server.url, token="wrong").get_api()
    with pytest.raises(runwatch.AccessDenied):
        await api.get_status(run["id"])


def test_policy_takes_the_request_timeout_then_overrides() -> None:
    block = RunStatusApi(request_timeout=7.0)
    assert block.policy().request_timeout == 7.0
    chosen = block.policy({"interval": 1.0, "request_timeout": 3.0}, timeout=9.0, partial_success=None)
    assert (chosen.interval, chosen.request_timeout, chosen.timeout, chosen.partial_success) == (
        1.0,
        3.0,
        9.0,
        "partial",
    )


async def test_a_password_in_the_base_url_becomes_secret_basic_auth(server: ReferenceServer) -> None:
    block = RunStatusApi(base_url=server.url.replace("http://", "http://me:pw-5a7c@"))
    assert (block.base_url, block.auth_style, block.username) == (server.url, "basic", "me")
    assert block.token is not None and block.token.get_secret_value() == "pw-5a7c"
    await block.asave("userinfo-api", overwrite=True)
    async with get_client() as client:
        stored = await client.read_block_document_by_name(
            "userinfo-api", "runwatch-run-status-api", include_secrets=False
        )
    assert "pw-5a7c" not in str(stored.data)  # only the secret field holds it, obfuscated
    with pytest.raises(ValidationError, match="give them as username and token") as info:
        RunStatusApi(base_url="http://me:pw-9e1b@127.0.0.1:9", token="other")
    assert "pw-9e1b" not in str(info.value)  # an error never quotes its input
