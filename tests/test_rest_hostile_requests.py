"""Requests a hostile page or client can send to the node, and what it answers: JSON nested
100,000 levels deep, state changes from a foreign origin or with a non-JSON body, and the
session cookie's Secure flag behind a TLS proxy (believed only from a trusted one).

The state change a session makes here is saving an annotation layer on a slide of its case
(PUT /ngv/slides/{slide}/layers/{name}), as the slide viewer does."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse

from pathology.catalogue import register_slide_file
from tests import slide_factory
from tests.factory import StudySpec, uid
from tests.rest_support import API_KEY, ROLE, Api, running_app

OPENED = uid(9901)
CASE = "C-HOSTILE-1"
SLIDE = "C-HOSTILE-1-A-1-1"
PROXY_HOST = "viewer.hospital.example"
DEEP = ["[" * 100_000, '{"a":' * 100_000, '{"studyInstanceUID": ' + "[" * 100_000,
        "[" * 40 + "]" * 40]


@pytest.fixture(scope="module")
async def direct(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    """No proxy trusted: forwarded headers are anyone's."""
    folder = tmp_path_factory.mktemp("hostile-direct")
    async with running_app(folder) as api:
        await api.ingest(StudySpec(study_uid=OPENED, patient_id="PID-H-1"))
        await with_slide(api, folder)
        yield api


@pytest.fixture(scope="module")
async def proxied(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    """Behind a trusted proxy on loopback (the test client connects from 127.0.0.1)."""
    folder = tmp_path_factory.mktemp("hostile-proxied")
    async with running_app(folder, http={"trusted_proxies": ["127.0.0.1"]}) as api:
        await api.ingest(StudySpec(study_uid=OPENED, patient_id="PID-H-1"))
        await with_slide(api, folder)
        yield api


async def with_slide(api: Api, folder: Path) -> None:
    """One slide of CASE, whose sessions may annotate it."""
    path = slide_factory.write_svs(folder / "case.svs")
    await register_slide_file(api.services.sessions, api.services.storage, SLIDE, path,
                              accession_number=CASE)


def own_origin(api: Api) -> str:
    return str(api.client.make_url("")).rstrip("/")


async def slide_session(api: Api) -> dict[str, str]:
    return await api.session_headers({"username": "u", "role": ROLE, "accNum": CASE})


async def save_layer(api: Api, headers: dict[str, str], body: str | None = None,
                     content_type: str = "application/json", name: str = "Margins"
                     ) -> ClientResponse:
    text = body if body is not None else '{"shapes": []}'
    return await api.client.put(f"/ngv/slides/{SLIDE}/layers/{name}", data=text.encode(),
                                headers={**headers, "Content-Type": content_type})


async def error_of(response: ClientResponse) -> str:
    assert response.content_type == "application/json", await response.text()
    body: dict[str, Any] = await response.json()
    return str(body["error"])


# --- deeply nested JSON ---------------------------------------------------------------------


@pytest.mark.parametrize("body", DEEP, ids=["arrays", "objects", "in-a-field", "well-formed-40"])
async def test_deeply_nested_json_to_post_obscurl_is_400_and_the_worker_keeps_serving(
        direct: Api, body: str) -> None:
    started = time.perf_counter()
    response = await direct.client.post("/ngv/v1/obscurl", data=body.encode(), headers={
        "Authorization": API_KEY, "Content-Type": "application/json"})
    elapsed = time.perf_counter() - started
    assert response.status == 400
    assert "nested" in await error_of(response)
    assert elapsed < 2.0, elapsed
    assert (await direct.get("/api/openapi.json")).status == 200


async def test_deeply_nested_json_inside_a_service_account_token_is_400(direct: Api) -> None:
    token = base64.b64encode(b"[" * 40_000).decode()
    body = {"username": "u", "role": ROLE, "studies": [{
        "studyInstanceUID": OPENED,
        "storage": {"type": "google-bucket", "name": "bucket-h", "token": token}}]}
    response = await direct.client.post("/ngv/v1/obscurl", json=body,
                                        headers={"Authorization": API_KEY})
    assert response.status == 400, await response.text()
    assert "token" in await error_of(response)


@pytest.mark.parametrize("body", DEEP, ids=["arrays", "objects", "in-a-field", "well-formed-40"])
async def test_deeply_nested_json_to_a_layer_is_400(direct: Api, body: str) -> None:
    response = await save_layer(direct, await slide_session(direct), body)
    assert response.status == 400
    assert "nested" in await error_of(response)
    assert (await direct.get("/api/openapi.json")).status == 200


# --- origin and content type of state-changing session routes -------------------------------


async def test_a_text_plain_body_from_a_foreign_origin_is_refused(direct: Api) -> None:
    headers = {**await slide_session(direct), "Origin": "https://attacker.example"}
    response = await save_layer(direct, headers, content_type="text/plain", name="Foreign")
    assert response.status == 403
    assert "Origin" in await error_of(response)
    layers = await direct.client.get(f"/ngv/slides/{SLIDE}/layers", headers={
        "Cookie": headers["Cookie"]})
    assert layers.status == 200
    assert "Foreign" not in [layer["name"] for layer in (await layers.json())["layers"]]


async def test_a_foreign_origin_is_refused_even_with_json(direct: Api) -> None:
    session = await slide_session(direct)
    for origin in ("https://attacker.example", "null", own_origin(direct).replace(
            "http://", "https://"), own_origin(direct) + "0"):
        response = await save_layer(direct, {**session, "Origin": origin})
        assert response.status == 403, origin
        assert "Origin" in await error_of(response)


async def test_a_cross_site_fetch_without_origin_is_refused(direct: Api) -> None:
    session = await slide_session(direct)
    for site in ("cross-site", "same-site"):
        response = await save_layer(direct, {**session, "Sec-Fetch-Site": site})
        assert response.status == 403, site
        assert "Sec-Fetch-Site" in await error_of(response)


async def test_same_origin_json_is_accepted(direct: Api) -> None:
    response = await save_layer(direct, {**await slide_session(direct),
                                         "Origin": own_origin(direct)})
    assert response.status == 200, await response.text()
    for site in ("same-origin", "none"):
        response = await save_layer(direct, {**await slide_session(direct),
                                             "Sec-Fetch-Site": site})
        assert response.status == 200, (site, await response.text())


async def test_a_client_without_origin_or_fetch_metadata_is_not_a_browser_and_passes(
        direct: Api) -> None:
    response = await save_layer(direct, await slide_session(direct))
    assert response.status == 200, await response.text()


async def test_a_body_that_is_not_json_is_415_naming_the_content_type(direct: Api) -> None:
    session = {**await slide_session(direct), "Origin": own_origin(direct)}
    for content_type in ("text/plain", "application/x-www-form-urlencoded",
                         "multipart/form-data; boundary=x"):
        response = await save_layer(direct, session, content_type=content_type)
        assert response.status == 415, content_type
        assert "Content-Type" in await error_of(response)
    charset = await save_layer(direct, session, content_type="application/json; charset=utf-8")
    assert charset.status == 200


async def test_layer_changes_check_the_origin_before_anything_else(direct: Api) -> None:
    for method in ("PUT", "DELETE"):
        response = await direct.client.request(
            method, "/ngv/slides/S-1/layers/Margins", json={"shapes": []},
            headers={"Origin": "https://attacker.example"})
        assert response.status == 403, method
        assert "Origin" in await error_of(response)


async def test_api_key_routes_are_not_browser_routes(direct: Api) -> None:
    response = await direct.client.post("/ngv/v1/obscurl", data=b"not json", headers={
        "Authorization": API_KEY, "Origin": "https://attacker.example",
        "Content-Type": "text/plain"})
    assert response.status == 400
    assert (await response.json())["field"] == "body"


async def test_behind_a_trusted_proxy_the_forwarded_origin_is_compared(proxied: Api) -> None:
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": PROXY_HOST}
    session = {**await slide_session(proxied), **forwarded}
    response = await save_layer(proxied, {**session, "Origin": f"https://{PROXY_HOST}"})
    assert response.status == 200, await response.text()
    response = await save_layer(proxied, {**session, "Origin": f"https://{PROXY_HOST}:443"})
    assert response.status == 200, await response.text()
    for origin in (own_origin(proxied), f"http://{PROXY_HOST}"):
        response = await save_layer(proxied, {**session, "Origin": origin})
        assert response.status == 403, origin


async def test_an_untrusted_peers_forwarded_host_is_ignored(direct: Api) -> None:
    session = {**await slide_session(direct), "X-Forwarded-Proto": "https",
               "X-Forwarded-Host": PROXY_HOST}
    response = await save_layer(direct, {**session, "Origin": f"https://{PROXY_HOST}"})
    assert response.status == 403
    response = await save_layer(direct, {**session, "Origin": own_origin(direct)})
    assert response.status == 200, await response.text()


# --- the session cookie's Secure flag -------------------------------------------------------


async def session_cookie_header(api: Api, headers: dict[str, str] | None = None) -> str:
    token = await api.token({"username": "u", "role": ROLE, "studyUID": OPENED})
    response = await api.client.get(f"/ngv?q={token}", allow_redirects=False,
                                    headers=headers or {})
    api.client.session.cookie_jar.clear()
    assert response.status == 302
    [cookie] = [value for value in response.headers.getall("Set-Cookie")
                if value.startswith("ngv_session=")]
    return cookie.lower()


def attributes(cookie: str) -> set[str]:
    return {part.strip().split("=")[0] for part in cookie.split(";")[1:]}


async def test_the_cookie_is_not_secure_over_plain_http(direct: Api) -> None:
    assert "secure" not in attributes(await session_cookie_header(direct))


async def test_the_cookie_is_secure_behind_a_trusted_tls_proxy(proxied: Api) -> None:
    cookie = await session_cookie_header(proxied, {"X-Forwarded-Proto": "https"})
    assert {"secure", "httponly", "samesite"} <= attributes(cookie)
    assert "secure" not in attributes(await session_cookie_header(
        proxied, {"X-Forwarded-Proto": "http"}))


async def test_an_untrusted_peers_forwarded_proto_is_ignored(direct: Api) -> None:
    cookie = await session_cookie_header(direct, {"X-Forwarded-Proto": "https"})
    assert "secure" not in attributes(cookie)


async def test_secure_cookies_makes_the_cookie_secure_whatever_the_request(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    async with running_app(tmp_path_factory.mktemp("hostile-secure"),
                           http={"secure_cookies": True}) as api:
        await api.ingest(StudySpec(study_uid=OPENED, patient_id="PID-H-1"))
        assert "secure" in attributes(await session_cookie_header(api))
