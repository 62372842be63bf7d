"""The API key, errors as JSON, the routing headers, and the OpenAPI document's honesty."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator

import pytest

from rest.openapi import DOCUMENT
from tests.factory import uid
from tests.peers import REPO
from tests.rest_support import API_KEY, ROLE, Api, running_app

PARAMS = {"username": "janedoe", "role": ROLE, "studyUID": uid(4001)}


@pytest.fixture(scope="module")
async def api(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    async with running_app(tmp_path_factory.mktemp("auth")) as api:
        yield api


@pytest.mark.parametrize("path", ["/ngv/obscurl", "/ngv/multimonitor-api"])
async def test_missing_key_is_401_json(api: Api, path: str) -> None:
    response = await api.get(path, PARAMS, key=None)
    assert response.status == 401
    assert "error" in await response.json()


async def test_wrong_key_is_401(api: Api) -> None:
    response = await api.get("/ngv/obscurl", PARAMS, key=API_KEY + "x")
    assert response.status == 401


async def test_key_in_another_header_is_401(api: Api) -> None:
    response = await api.get("/ngv/obscurl", PARAMS, key=None, headers={"X-API-Key": API_KEY})
    assert response.status == 401


async def test_bearer_prefix_is_not_the_key(api: Api) -> None:
    response = await api.get("/ngv/obscurl", PARAMS, key=f"Bearer {API_KEY}")
    assert response.status == 401


async def test_right_key_is_accepted(api: Api) -> None:
    response = await api.get("/ngv/obscurl", PARAMS)
    assert response.status == 200


async def test_refusal_is_logged_without_the_key_or_query(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="rest.middleware")
    sent = "wrong-key-that-must-not-be-logged"
    await api.get("/ngv/obscurl", {**PARAMS, "patientID": "SECRET-PID"}, key=sent)
    assert "401" in caplog.text and "wrong API key" in caplog.text
    assert sent not in caplog.text and "SECRET-PID" not in caplog.text


async def test_bad_input_is_400_json_not_a_trace(api: Api) -> None:
    response = await api.get("/ngv/obscurl", {**PARAMS, "studyUID": "\x00"})
    body = await response.json()
    assert response.status == 400 and body["field"] == "studyUID"
    assert "Traceback" not in await response.text()


async def test_unknown_route_is_404_json(api: Api) -> None:
    response = await api.get("/ngv/nothing-here")
    assert response.status == 404
    assert "error" in await response.json()


async def test_wrong_method_is_405_json(api: Api) -> None:
    response = await api.client.post("/ngv/obscurl", headers={"Authorization": API_KEY})
    assert response.status == 405
    assert "error" in await response.json()


async def test_every_response_names_the_instance(api: Api) -> None:
    for response in (await api.get("/ngv/obscurl", PARAMS), await api.get("/nope", key=None),
                     await api.client.get("/api/openapi.json")):
        assert response.headers.get("X-Node-Instance")


async def test_openapi_document_is_public_json(api: Api) -> None:
    response = await api.client.get("/api/openapi.json")
    assert response.status == 200
    assert (await response.json())["openapi"].startswith("3.")


async def test_openapi_document_lists_exactly_the_routes(api: Api) -> None:
    served = {
        (route.resource.canonical, route.method.lower())
        for route in api.client.app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }
    documented = {(path, method) for path, item in DOCUMENT["paths"].items() for method in item}
    assert served - documented == set(), "routes missing from rest/openapi.py"
    assert documented - served == set(), "rest/openapi.py documents routes that do not exist"


async def test_openapi_parameters_match_what_obscurl_reads(api: Api) -> None:
    names = {p["name"] for p in DOCUMENT["paths"]["/ngv/obscurl"]["get"]["parameters"]}
    assert names == {
        "username", "role", "studyUID", "accNum", "patientID", "idIssuer", "historyList",
        "fullPreloadStudy", "sticky", "anonymize", "hideSearch", "hideDocuments",
        "hideLayers", "annotationVisibility", "containerIdentifier", "sourceNodes",
    }


async def test_openapi_parameters_match_what_multimonitor_reads(api: Api) -> None:
    names = {p["name"] for p in DOCUMENT["paths"]["/ngv/multimonitor-api"]["get"]["parameters"]}
    assert names == {
        "username", "role", "patientID", "numberOfMonitors", "idIssuer", "studyIntanceUID",
        "studyInstanceUID", "studyInstanceUid", "accNum", "fullPreloadStudy", "sticky",
        "anonymize", "hideSearch", "sourceNodes",
    }


async def test_openapi_shows_the_specs_spelling_of_the_study_parameter_first() -> None:
    """The spec's table and example say studyIntanceUID; the other spellings are aliases."""
    parameters = DOCUMENT["paths"]["/ngv/multimonitor-api"]["get"]["parameters"]
    spellings = [p for p in parameters if p["name"].lower().startswith("study")]
    assert [p["name"] for p in spellings] == [
        "studyIntanceUID", "studyInstanceUID", "studyInstanceUid"]
    assert "alias" not in spellings[0]["description"].lower()
    assert all(p["description"].startswith("Alias of studyIntanceUID") for p in spellings[1:])


async def test_malformed_multipart_body_is_a_400(api: Api) -> None:
    """A body aiohttp cannot parse is the client's error (found by Schemathesis: was a 500)."""
    response = await api.client.post(
        "/webdv/lut", params={"containerIdentifier": "slide-1"},
        headers={"Authorization": API_KEY,
                 "Content-Type": "multipart/form-data; boundary=b0undary"},
        data=b"--b0undary\r\n[]--b0undary--\r\n")
    assert response.status == 400
    assert "malformed request" in (await response.json())["error"]


def _access_bullets() -> dict[str, str]:
    """README's "Access" list under Security: each bullet's text by its bold title."""
    text = (REPO / "README.md").read_text()
    section = text.split("### Access: API key, token, session cookie", 1)[1].split("\n### ", 1)[0]
    bullets = [b for b in re.split(r"\n- ", "\n" + section) if b.startswith("**")]
    return {b.split("**")[1]: " ".join(b.split()) for b in bullets}


def _named(path: str, text: str) -> bool:
    """`path` up to its first parameter, neither continuing another path (`/viewer` in
    `/ngv/viewer`) nor continued by more path, appears in `text`."""
    prefix = path.split("{", 1)[0].rstrip("/")
    return re.search(r"(?<![\w/-])" + re.escape(prefix) + r"(?![\w/-])", text) is not None


async def test_readme_says_which_routes_need_the_key(api: Api) -> None:
    bullets = _access_bullets()
    with_key = bullets.pop("API key")
    without_key = " ".join(bullets.values())
    assert "/api/openapi.json" in bullets["Public"]
    for route in api.client.app.router.routes():
        if route.resource is None or route.method == "HEAD":
            continue
        path = route.resource.canonical
        if getattr(route.handler, "public", False):
            assert _named(path, without_key) and not _named(path, with_key), path
        else:
            assert _named(path, with_key) and not _named(path, without_key), path
