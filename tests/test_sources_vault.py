"""The sealed credentials of a POST request: its cloud keys and WADO headers kept encrypted for
its background import, with a key file of the node's own, and deleted once no longer needed."""

from __future__ import annotations

import stat
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from node.errors import ConfigError
from node.index.job_models import Job, SealedCredentials
from node.process.runtime import open_services
from node.services import NodeServices
from node.sources import ImportProgress, parse_request, plan_import
from node.sources.post_context import JOB_KIND, issue_context
from node.sources.request import with_secrets
from node.sources.sealed_secrets import CredentialVault
from node.sources.storage_mapping import MappingTable
from node.viewing.roles import add_role
from tests.cloud_peers import service_account_token
from tests.index_db import dump
from tests.post_examples import example
from tests.source_fixtures import node_config

SECRET = "vault/Secret+Key0123456789abcdefGHIJKL"


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[NodeServices]:
    async with open_services(node_config(tmp_path / "node")) as opened:
        await add_role(opened.sessions, "diagnostic", [])
        yield opened


async def _issue(services: NodeServices, body: dict[str, Any]) -> int:
    plan = plan_import(parse_request(body), MappingTable([]), services.config)
    _, context_pk = await issue_context(services, plan, ImportProgress())
    return context_pk


def _bodies() -> dict[str, dict[str, Any]]:
    token, _ = service_account_token()
    return {
        "aws-bucket": example("aws-bucket", accessKey="AKIAVAULT", secretAccessKey=SECRET),
        "wasabi-bucket": example("wasabi-bucket", accessKey="AKIAVAULT",
                                 secretAccessKey=SECRET),
        "google-bucket": example("google-bucket", token=token),
        "wado-rs": example("wado-rs", url="http://127.0.0.1:1/dicom-web",
                           httpHeaders={"Authorization": SECRET}),
        "wado-uri": example("wado-uri", url="http://127.0.0.1:1/wado",
                            httpHeaders={"Authorization": SECRET}),
    }


@pytest.mark.parametrize("name", list(_bodies()))
def test_a_request_is_rebuilt_whole_from_its_context_and_its_secrets(name: str) -> None:
    request = parse_request(_bodies()[name])
    rebuilt = parse_request(with_secrets(request.as_json(), request.secret_fields()))
    assert rebuilt == request
    assert rebuilt.secrets() == request.secrets() != []


async def test_the_secrets_are_sealed_with_the_context_and_its_job(
    services: NodeServices
) -> None:
    body = _bodies()["aws-bucket"]
    context_pk = await _issue(services, body)
    vault = CredentialVault(services.config.credentials_key_path)
    assert await vault.load(services.sessions, context_pk) == {
        "0": {"accessKey": "AKIAVAULT", "secretAccessKey": SECRET}}
    async with services.sessions() as session:
        job = (await session.scalars(select(Job).where(Job.kind == JOB_KIND))).one()
    assert (job.key, job.state) == (str(context_pk), "queued")
    stored = dump(services.config.data_dir)
    assert SECRET.encode() not in stored and b"AKIAVAULT" not in stored


async def test_a_request_without_secrets_seals_nothing(services: NodeServices) -> None:
    await _issue(services, _bodies()["wado-rs"] | {"studies": [
        {**_bodies()["wado-rs"]["studies"][0],
         "storage": {"type": "wado-rs", "name": "pacs", "url": "http://127.0.0.1:1/dicom-web"}}]})
    async with services.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(SealedCredentials)) == 0
    assert not services.config.credentials_key_path.exists()


async def test_the_key_file_is_made_once_private_and_shared(services: NodeServices) -> None:
    context_pk = await _issue(services, _bodies()["wado-uri"])
    key_file = services.config.credentials_key_path
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_bytes()
    # Another instance with the same key file opens what this one sealed.
    other = CredentialVault(key_file)
    assert await other.load(services.sessions, context_pk) == {
        "0": {"httpHeaders": {"Authorization": SECRET}}}
    assert key_file.read_bytes() == key


async def test_a_sealed_row_opens_only_for_its_own_context_and_key(
    services: NodeServices, tmp_path: Path
) -> None:
    vault = CredentialVault(services.config.credentials_key_path)
    sealed = vault.seal(7, {"0": {"accessKey": SECRET}})
    assert SECRET.encode() not in sealed
    assert vault.unseal(7, sealed) == {"0": {"accessKey": SECRET}}
    assert vault.unseal(8, sealed) is None
    assert CredentialVault(tmp_path / "another.key").unseal(7, sealed) is None


def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    key_file = tmp_path / "credentials.key"
    CredentialVault(key_file).seal(1, {})
    key_file.chmod(0o644)
    with pytest.raises(ConfigError, match=r"credentials_key_file: .* readable by others"):
        CredentialVault(key_file).seal(1, {})


async def test_expired_secrets_are_not_opened_and_are_swept(services: NodeServices) -> None:
    expired = await _issue(services, _bodies()["aws-bucket"])
    live = await _issue(services, _bodies()["google-bucket"])
    async with services.sessions() as session:
        await session.execute(update(SealedCredentials)
                              .where(SealedCredentials.context_pk == expired)
                              .values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
        await session.commit()
    vault = CredentialVault(services.config.credentials_key_path)
    assert await vault.load(services.sessions, expired) is None
    assert await vault.sweep(services.sessions) == 1
    async with services.sessions() as session:
        kept = (await session.scalars(select(SealedCredentials.context_pk))).all()
    assert kept == [live]
    assert await vault.load(services.sessions, live) is not None
