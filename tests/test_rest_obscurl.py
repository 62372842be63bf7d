"""GET /ngv/obscurl, parameter by parameter, as the integration API lists them (docs/API.md)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest

from tests.factory import StudySpec, uid
from tests.rest_support import ROLE, Api, running_app

STUDY = uid(3001)
OTHER = uid(3002)
BASE = {"username": "janedoe", "role": ROLE}


@pytest.fixture(scope="module")
async def api(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    folder = tmp_path_factory.mktemp("obscurl")
    async with running_app(folder, source_nodes=[
        {"ae_title": "KNOWN", "host": "127.0.0.1", "port": 9, "retrieve": "C-GET"}
    ], dicom={"query_timeout": 1.0}) as api:
        await api.ingest(StudySpec(study_uid=STUDY, patient_id="PID-OBS", accession="ACC-OBS"))
        await api.ingest(StudySpec(study_uid=OTHER, patient_id="PID-OBS", accession="ACC-2",
                                   study_date="20230101"))
        yield api


async def error(api: Api, params: object) -> dict[str, str]:
    response = await api.get("/ngv/obscurl", params)
    body = await response.json()
    assert response.status == 400, body
    assert "error" in body
    return body  # type: ignore[no-any-return]


async def test_token_is_64_lowercase_hex_as_text(api: Api) -> None:
    response = await api.get("/ngv/obscurl", {**BASE, "studyUID": STUDY})
    assert response.status == 200
    assert response.content_type == "text/plain"
    assert re.fullmatch(r"[0-9a-f]{64}", await response.text())


async def test_every_token_is_different(api: Api) -> None:
    tokens = {await api.token({**BASE, "studyUID": STUDY}) for _ in range(5)}
    assert len(tokens) == 5


@pytest.mark.parametrize("missing", ["username", "role"])
async def test_username_and_role_are_required(api: Api, missing: str) -> None:
    params = {**BASE, "studyUID": STUDY}
    del params[missing]
    assert (await error(api, params))["field"] == missing


async def test_empty_username_counts_as_missing(api: Api) -> None:
    assert (await error(api, {**BASE, "username": "", "studyUID": STUDY}))["field"] == "username"


async def test_one_of_study_uid_acc_num_patient_id_is_required(api: Api) -> None:
    body = await error(api, BASE)
    assert "studyUID" in body["error"] and "accNum" in body["error"]
    assert "patientID" in body["error"]


@pytest.mark.parametrize("key,value", [("accNum", "ACC-OBS"), ("patientID", "PID-OBS")])
async def test_acc_num_or_patient_id_alone_is_enough(api: Api, key: str, value: str) -> None:
    await api.token({**BASE, key: value})


async def test_unknown_role_is_400(api: Api) -> None:
    body = await error(api, {**BASE, "role": "janitor", "studyUID": STUDY})
    assert body["field"] == "role"


async def test_invalid_study_uid_is_400_naming_it(api: Api) -> None:
    body = await error(api, {**BASE, "studyUID": "1.2.x"})
    assert body["field"] == "studyUID"


@pytest.mark.parametrize("name", ["historyList", "fullPreloadStudy"])
async def test_invalid_uid_lists_are_400_naming_them(api: Api, name: str) -> None:
    body = await error(api, {**BASE, "studyUID": STUDY, name: "01.2"})
    assert body["field"] == name


async def test_study_uid_takes_several_values(api: Api) -> None:
    token = await api.token([*BASE.items(), ("studyUID", STUDY), ("studyUID", OTHER)])
    context = await api.context(token)
    opened = [s["studyInstanceUID"] for s in context["studies"] if s["purpose"] == "open"]
    assert opened == [STUDY, OTHER]


@pytest.mark.parametrize("name,value", [
    ("username", "x"), ("role", ROLE), ("accNum", "A"), ("patientID", "P"), ("sticky", "s"),
    ("anonymize", "true"), ("hideSearch", "true"), ("annotationVisibility", "ALL"),
])
async def test_single_valued_parameters_given_twice_are_400(
    api: Api, name: str, value: str
) -> None:
    params = [*BASE.items(), ("studyUID", STUDY), (name, value)]
    if name not in BASE:
        params.append((name, value))
    body = await error(api, params)
    assert body["field"] == name


async def test_defaults_are_recorded_in_the_context(api: Api) -> None:
    context = await api.context(await api.token({**BASE, "studyUID": STUDY}))
    assert context["options"] == {
        "anonymize": False, "hideSearch": True, "hideDocuments": True, "hideLayers": False,
        "annotationVisibility": "ALL", "containerIdentifier": None,
    }
    assert context["username"] == "janedoe" and context["role"] == ROLE
    assert context["sticky"] is None


async def test_options_given_are_recorded_in_the_context(api: Api) -> None:
    context = await api.context(await api.token({
        **BASE, "accNum": "ACC-OBS", "anonymize": "TRUE", "hideSearch": "False",
        "hideDocuments": "false", "hideLayers": "true", "annotationVisibility": "user",
        "containerIdentifier": "S0001", "sticky": "ah6799c",
    }))
    # An anonymized session is not shown the slide's barcode (the server still opens it).
    assert context["options"] == {
        "anonymize": True, "hideSearch": False, "hideDocuments": False, "hideLayers": True,
        "annotationVisibility": "USER", "containerIdentifier": None,
    }
    assert context["sticky"] == "ah6799c"
    named = await api.context(await api.token({**BASE, "accNum": "ACC-OBS",
                                               "containerIdentifier": "S0001"}))
    assert named["options"]["containerIdentifier"] == "S0001"
    # The role allows search, documents and layers; the request hid only the layers.
    assert context["features"]["search"] and context["features"]["documents"]
    assert not context["features"]["layers"]


@pytest.mark.parametrize("name", ["anonymize", "hideSearch", "hideDocuments", "hideLayers"])
@pytest.mark.parametrize("value", ["yes", "1", "", "truee"])
async def test_booleans_other_than_true_false_are_400(api: Api, name: str, value: str) -> None:
    body = await error(api, {**BASE, "studyUID": STUDY, name: value})
    assert body["field"] == name


async def test_annotation_visibility_other_than_all_user_is_400(api: Api) -> None:
    body = await error(api, {**BASE, "studyUID": STUDY, "annotationVisibility": "SOME"})
    assert body["field"] == "annotationVisibility"


async def test_container_identifier_without_acc_num_is_400(api: Api) -> None:
    body = await error(api, {**BASE, "studyUID": STUDY, "containerIdentifier": "S1"})
    assert body["field"] == "containerIdentifier"


async def test_unconfigured_source_node_is_400(api: Api) -> None:
    body = await error(api, {**BASE, "studyUID": STUDY, "sourceNodes": "KNOWN;NOPE"})
    assert body["field"] == "sourceNodes"
    assert "NOPE" in body["error"] and "KNOWN" not in body["error"].split(":")[-1]


async def test_configured_source_nodes_are_accepted_and_recorded(api: Api) -> None:
    context = await api.context(await api.token(
        {**BASE, "studyUID": STUDY, "sourceNodes": "KNOWN;"}))
    assert context["request"]["sourceNodes"] == ["KNOWN"]


@pytest.mark.parametrize("name", ["accNum", "patientID"])
async def test_wildcards_in_query_keys_are_400(api: Api, name: str) -> None:
    body = await error(api, {**BASE, name: "AB*"})
    assert body["field"] == name


async def test_accession_number_longer_than_16_is_400(api: Api) -> None:
    assert (await error(api, {**BASE, "accNum": "A" * 17}))["field"] == "accNum"


async def test_history_list_and_preload_are_recorded(api: Api) -> None:
    context = await api.context(await api.token({
        **BASE, "studyUID": STUDY, "historyList": OTHER, "fullPreloadStudy": STUDY}))
    by_uid = {s["studyInstanceUID"]: s for s in context["studies"]}
    assert by_uid[STUDY]["purpose"] == "open" and by_uid[STUDY]["preload"] is True
    assert by_uid[OTHER]["purpose"] == "history" and by_uid[OTHER]["preload"] is False
    assert context["request"]["historyList"] == [OTHER]


async def test_unknown_parameters_are_ignored(api: Api) -> None:
    await api.token({**BASE, "studyUID": STUDY, "colour": "blue"})


async def test_sticky_is_echoed_as_a_header(api: Api) -> None:
    response = await api.get("/ngv/obscurl", {**BASE, "studyUID": STUDY, "sticky": "ah6799c"})
    assert response.status == 200
    assert response.headers["X-Sticky"] == "ah6799c"
    assert response.headers["X-Node-Instance"]


async def test_token_response_is_not_cached(api: Api) -> None:
    response = await api.get("/ngv/obscurl", {**BASE, "studyUID": STUDY})
    assert response.headers["Cache-Control"] == "no-store"
