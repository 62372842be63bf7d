"""Outbound requests a POST /ngv/v1/obscurl body controls: which servers its WADO URL may name
(checked when the request comes and again at connect time), redirects, where its headers and
the user name and password of its URL go, and which token endpoint a Google key may name. The
WADO servers here are real aiohttp servers on loopback that record what reaches them."""

from __future__ import annotations

import base64
import io
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse, encode_basic_auth, web

from node.config import config_from_dict
from node.errors import ConfigError, InvalidInput
from node.process.runtime import open_services
from node.sources import FetchPolicy, Importer, ImportProgress, parse_request, plan_import
from node.sources.outbound import OutboundPolicy
from node.sources.storage_mapping import MappingTable
from node.sources.wado_uri import WadoUri
from node.viewing.roles import add_role
from rest.obscurl_post import IMPORTS
from tests.cloud_peers import service_account_token
from tests.factory import StudySpec, make_instance, uid
from tests.index_db import dump, rows
from tests.peers import free_port
from tests.post_examples import example
from tests.rest_support import API_KEY, Api, running_app
from tests.source_fixtures import LOOPBACK_ALLOWED, node_config, run_body

ROLE = "diagnostic"
NO_MAPPINGS = MappingTable([])
SECRET_HEADER = "x-pacs-key-that-must-stay-home-0123"
USER, PASSWORD = "viewer", "S3cret-Passw0rd/with:colon"
QUOTED = PASSWORD.replace("/", "%2F").replace(":", "%3A")  # as a URL carries it
INSTANCE = make_instance(StudySpec(study_uid=uid(930, 1), patient_id="OUT-PID"), 0, 0)


def _dicom() -> bytes:
    out = io.BytesIO()
    INSTANCE.save_as(out, enforce_file_format=True)
    return out.getvalue()


def wado_uri_body(url: str, **storage: Any) -> dict[str, Any]:
    """A WADO-URI request for INSTANCE at `url`."""
    return {"username": "john", "role": ROLE, "studies": [{
        "storage": {"type": "wado-uri", "name": "pacs", "url": url, **storage},
        "studyInstanceUID": INSTANCE.StudyInstanceUID,
        "series": [{"seriesInstanceUID": INSTANCE.SeriesInstanceUID,
                    "instances": [{"sopInstanceUID": INSTANCE.SOPInstanceUID}]}]}]}


@dataclass
class Recorder:
    """What a test WADO server received: (path, headers) of each request."""

    seen: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def app(self, answer: Callable[[web.Request], Awaitable[web.StreamResponse]]
            ) -> web.Application:
        async def handle(request: web.Request) -> web.StreamResponse:
            self.seen.append((request.path, dict(request.headers)))
            return await answer(request)

        app = web.Application()
        app.router.add_get("/{tail:.*}", handle)
        return app


async def dicom_answer(request: web.Request) -> web.Response:
    return web.Response(body=_dicom(), content_type="application/dicom")


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[web.Application], Awaitable[str]]]:
    """Start apps on loopback: each call gives its base URL; all stopped at the end."""
    runners: list[web.AppRunner] = []

    async def start(app: web.Application) -> str:
        runner = web.AppRunner(app)
        await runner.setup()
        runners.append(runner)
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return f"http://127.0.0.1:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


async def posted(api: Api, body: Any) -> ClientResponse:
    return await api.client.post("/ngv/v1/obscurl", json=body,
                                 headers={"Authorization": API_KEY})


def own_address() -> str:
    """This machine's address on its default route (not loopback). Connecting a UDP socket
    sends nothing; it only picks the route to a (documentation) address."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("198.51.100.1", 9))
        except OSError:
            pytest.fail("no network interface but loopback: the test needs one")
        address = str(probe.getsockname()[0])
    if address.startswith("127."):
        pytest.fail("no network interface but loopback: the test needs one")
    return address


HTTP_PORT = free_port()
REFUSED_HOSTS = ["127.0.0.1:8042", "localhost:8042", "[::1]:8042", "169.254.169.254",
                 "[fe80::1]:8042", f"127.0.0.1:{HTTP_PORT}", "own-address"]


@pytest.mark.parametrize("host", REFUSED_HOSTS)
@pytest.mark.parametrize("kind", ["wado-rs", "wado-uri"])
async def test_a_default_node_refuses_loopback_link_local_and_its_own_port(
    tmp_path: Path, host: str, kind: str
) -> None:
    if host == "own-address":
        host = f"{own_address()}:{HTTP_PORT}"
    async with running_app(tmp_path / "app", http={"port": HTTP_PORT}) as api:
        await add_role(api.services.sessions, ROLE, [])
        response = await posted(api, example(kind, url=f"http://{host}/wado"))
        answer = await response.json()
        assert response.status == 400, answer
        assert answer["field"] == "studies[0].storage.url"
        assert "refused" in answer["error"] and "allowed_hosts" in answer["error"]
    assert rows(tmp_path / "app/data", "SELECT count(*) FROM viewing_contexts") == [(0,)]


@pytest.mark.parametrize("host", ["10.1.2.3", "172.16.0.5:8042", "192.168.10.20:8080",
                                  "[fd00::5]:8042", "pacs.hospital.invalid:8042"])
def test_private_ranges_and_other_hosts_stay_allowed(host: str) -> None:
    body = example("wado-rs", url=f"http://{host}/dicom-web")
    plan = plan_import(parse_request(body), NO_MAPPINGS, config_from_dict({}))
    assert len(plan.sources) == 1


def test_allowed_hosts_open_loopback_but_the_nodes_own_port_only_when_named() -> None:
    def check(url: str, allowed: list[str]) -> str:
        config = config_from_dict({"http": {"port": HTTP_PORT},
                                   "sources": {"allowed_hosts": allowed}})
        try:
            plan_import(parse_request(example("wado-rs", url=url)), NO_MAPPINGS, config)
        except InvalidInput as exc:
            return str(exc)
        return "allowed"

    assert check("http://127.0.0.1:8042/", ["127.0.0.1"]) == "allowed"
    assert check("http://localhost:8042/", ["localhost"]) == "allowed"
    assert check("http://localhost:8042/", ["localhost:8043"]) != "allowed"
    assert check("http://169.254.169.254/", ["169.254.0.0/16"]) == "allowed"
    assert "own address and port" in check(f"http://127.0.0.1:{HTTP_PORT}/", ["127.0.0.1"])
    assert check(f"http://127.0.0.1:{HTTP_PORT}/", [f"127.0.0.1:{HTTP_PORT}"]) == "allowed"
    assert "loopback" in check("http://[::1]:8042/", ["127.0.0.1"])


@pytest.mark.parametrize("entry", ["", "host name", "pacs:0", "pacs:http", "[::1", "a:b:c:d:e"])
def test_a_malformed_allowed_hosts_entry_stops_the_node(entry: str) -> None:
    with pytest.raises(ConfigError, match=r"sources\.allowed_hosts"):
        config_from_dict({"sources": {"allowed_hosts": [entry]}})


async def test_the_address_connected_to_is_checked_again(
    tmp_path: Path, serve: Callable[[web.Application], Awaitable[str]]
) -> None:
    """As after DNS rebinding: a name that passed the request's check leads to loopback by the
    time the node connects. The connection is refused, not tried again, and the server on
    loopback receives nothing."""
    recorder = Recorder()
    url = await serve(recorder.app(dicom_answer))
    port = url.rsplit(":", 1)[1]
    request = parse_request(wado_uri_body(f"http://localhost:{port}/wado",
                                          httpHeaders={"X-Pacs-Key": SECRET_HEADER}))
    study = request.studies[0]
    assert study.storage is not None
    config = node_config(tmp_path / "node", sources={"allowed_hosts": []})
    # Built without the request's check, as if `localhost` had resolved elsewhere then.
    source = WadoUri(study, study.storage, OutboundPolicy.from_config(config), 5.0, 1)
    progress = ImportProgress()
    async with open_services(config) as services:
        await Importer(services, FetchPolicy.from_config(config)).run([source], progress)
    assert (progress.done, progress.failed) == (0, 1)
    message = progress.failures[0]["message"]
    assert "refused: localhost:" in message and "a loopback address" in message
    assert "tries" not in message
    assert recorder.seen == []


async def test_a_redirect_to_another_server_is_not_followed_and_gets_no_header(
    tmp_path: Path, serve: Callable[[web.Application], Awaitable[str]]
) -> None:
    elsewhere = Recorder()
    other = await serve(elsewhere.app(dicom_answer))

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"{other}/wado?{request.query_string}")

    named = Recorder()
    url = await serve(named.app(redirect))
    host = url.removeprefix("http://")
    body = wado_uri_body(f"http://{USER}:{QUOTED}@{host}/wado",
                         httpHeaders={"X-Pacs-Key": SECRET_HEADER})
    async with open_services(node_config(tmp_path / "node")) as services:
        progress = await run_body(services, body, NO_MAPPINGS)
    assert (progress.done, progress.failed) == (0, 1)
    assert "redirects to another server" in progress.failures[0]["message"]
    assert [headers.get("X-Pacs-Key") for _, headers in named.seen] == [SECRET_HEADER]
    assert elsewhere.seen == []


async def test_a_redirect_on_the_same_server_is_followed_with_the_headers(
    tmp_path: Path, serve: Callable[[web.Application], Awaitable[str]]
) -> None:
    async def moved(request: web.Request) -> web.StreamResponse:
        if request.path == "/old/wado":
            raise web.HTTPMovedPermanently(f"/wado?{request.query_string}")
        return await dicom_answer(request)

    recorder = Recorder()
    url = await serve(recorder.app(moved))
    body = wado_uri_body(f"{url}/old/wado", httpHeaders={"X-Pacs-Key": SECRET_HEADER})
    async with open_services(node_config(tmp_path / "node")) as services:
        progress = await run_body(services, body, NO_MAPPINGS)
    assert (progress.done, progress.failed) == (1, 0), progress.failures
    assert [(path, headers.get("X-Pacs-Key")) for path, headers in recorder.seen] == [
        ("/old/wado", SECRET_HEADER), ("/wado", SECRET_HEADER)]


async def test_url_credentials_authenticate_and_are_kept_only_sealed(
    tmp_path: Path, serve: Callable[[web.Application], Awaitable[str]]
) -> None:
    expected = encode_basic_auth(USER, PASSWORD)

    async def basic_auth(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != expected:
            return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="pacs"'})
        return await dicom_answer(request)

    recorder = Recorder()
    url = await serve(recorder.app(basic_auth))
    host = url.removeprefix("http://")
    async with running_app(tmp_path / "app", sources=LOOPBACK_ALLOWED) as api:
        await add_role(api.services.sessions, ROLE, [])
        response = await posted(api, wado_uri_body(f"http://{USER}:{QUOTED}@{host}/wado"))
        token = await response.text()
        assert response.status == 200, token
        await api.client.app[IMPORTS].wait_idle()
        context = await api.context(token)
    assert context["sources"]["import"]["done"] == 1, context["sources"]["import"]
    assert [headers.get("Authorization") for _, headers in recorder.seen] == [expected]
    assert context["request"]["studies"][0]["storage"]["url"] == f"{url}/wado"
    shown = json.dumps(context)
    database = dump(tmp_path / "app/data")
    for secret in (PASSWORD, QUOTED, expected.removeprefix("Basic ")):
        assert secret not in shown
        assert secret.encode() not in database
    assert rows(tmp_path / "app/data", "SELECT count(*) FROM sealed_credentials") == [(0,)]


def _key_with(token_uri: str | None) -> str:
    token, _ = service_account_token()
    info = json.loads(base64.b64decode(token))
    if token_uri is None:
        del info["token_uri"]
    else:
        info["token_uri"] = token_uri
    return base64.b64encode(json.dumps(info).encode()).decode()


@pytest.mark.parametrize("token_uri", [
    "http://127.0.0.1:1/token", "https://oauth2.googleapis.com.attacker.example/token",
    "http://169.254.169.254/computeMetadata/v1/", None])
async def test_a_service_account_key_must_name_googles_token_endpoint(
    tmp_path: Path, token_uri: str | None
) -> None:
    async with running_app(tmp_path / "app") as api:
        await add_role(api.services.sessions, ROLE, [])
        response = await posted(api, example("google-bucket", token=_key_with(token_uri)))
        answer = await response.json()
    assert response.status == 400, answer
    assert answer["field"] == "studies[0].storage.token"
    assert "token_uri" in answer["error"]


@pytest.mark.parametrize(("token_uri", "endpoint"), [
    ("https://oauth2.googleapis.com/token", ""),
    ("https://accounts.google.com/o/oauth2/token", ""),
    ("https://oauth2.googleapis.com/token", "http://127.0.0.1:4443"),
    ("http://127.0.0.1:4443/token", "http://127.0.0.1:4443"),
])
def test_googles_token_endpoints_and_the_configured_emulator_are_accepted(
    token_uri: str, endpoint: str
) -> None:
    config = config_from_dict({"cloud": {"gcs_endpoint_url": endpoint}})
    body = example("google-bucket", token=_key_with(token_uri))
    assert len(plan_import(parse_request(body), NO_MAPPINGS, config).sources) == 1
