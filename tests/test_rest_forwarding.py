"""Behind a reverse proxy: the instance's configured name in X-Node-Instance, and the audited
client address taken from X-Forwarded-For only when a trusted proxy sent it."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from node.index.viewing_models import AuditEvent, ViewingContext
from node.viewing.token_secrets import token_key
from tests.factory import StudySpec, uid
from tests.rest_support import ROLE, Api, running_app

STUDY = uid(9801)
PARAMS = {"username": "proxied", "role": ROLE, "studyUID": STUDY}


@pytest.fixture(scope="module")
async def behind_proxy(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    """An instance that trusts the loopback proxy (the test client connects from 127.0.0.1)."""
    async with running_app(tmp_path_factory.mktemp("proxied"), http={
            "instance_name": "node-east", "trusted_proxies": ["127.0.0.0/8", "10.1.2.3"]}) as api:
        await api.ingest(StudySpec(study_uid=STUDY, patient_id="PID-PROXY"))
        yield api


@pytest.fixture(scope="module")
async def direct(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    """An instance with the defaults: no name configured, no proxy trusted."""
    async with running_app(tmp_path_factory.mktemp("direct")) as api:
        await api.ingest(StudySpec(study_uid=STUDY, patient_id="PID-PROXY"))
        yield api


async def audited_address(api: Api, forwarded_for: str | None) -> str:
    headers = {} if forwarded_for is None else {"X-Forwarded-For": forwarded_for}
    response = await api.get("/ngv/obscurl", PARAMS, headers=headers)
    token = await response.text()
    assert response.status == 200, token
    async with api.services.sessions() as session:
        address = await session.scalar(
            select(AuditEvent.client_address).join(
                ViewingContext, AuditEvent.context_pk == ViewingContext.id)
            .where(ViewingContext.token_hash == token_key(token)))
    assert address is not None
    return address


async def test_configured_instance_name_is_the_header(behind_proxy: Api) -> None:
    response = await behind_proxy.get("/api/openapi.json")
    assert response.headers["X-Node-Instance"] == "node-east"


async def test_without_a_name_the_header_is_host_and_port(direct: Api) -> None:
    response = await direct.get("/api/openapi.json")
    port = direct.services.config.http.port
    assert response.headers["X-Node-Instance"] == f"{socket.gethostname()}:{port}"


async def test_trusted_proxy_names_the_client(behind_proxy: Api) -> None:
    assert await audited_address(behind_proxy, "203.0.113.7") == "203.0.113.7"


async def test_client_is_the_rightmost_address_no_trusted_proxy_added(behind_proxy: Api) -> None:
    # The client wrote the first entry itself; 10.1.2.3 is a trusted proxy in the chain.
    chain = "198.51.100.1, 203.0.113.9, 10.1.2.3"
    assert await audited_address(behind_proxy, chain) == "203.0.113.9"


async def test_a_forwarded_value_that_is_no_address_is_not_believed(behind_proxy: Api) -> None:
    assert await audited_address(behind_proxy, "evil, 203.0.113.7") == "203.0.113.7"
    assert await audited_address(behind_proxy, "<script>") == "127.0.0.1"


async def test_without_the_header_the_proxy_itself_is_audited(behind_proxy: Api) -> None:
    assert await audited_address(behind_proxy, None) == "127.0.0.1"


async def test_forwarded_for_from_an_untrusted_peer_is_ignored(direct: Api) -> None:
    assert await audited_address(direct, "203.0.113.7") == "127.0.0.1"
