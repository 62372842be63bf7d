"""GET /ngv/multimonitor-api: parameter rules, and what each monitor opens."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.factory import StudySpec, make_instance, uid
from tests.rest_support import ROLE, Api, running_app

NEW = StudySpec(study_uid=uid(8001), patient_id="PID-MM", accession="ACC-MM-1",
                study_date="20240101")
OLD = StudySpec(study_uid=uid(8002), patient_id="PID-MM", accession="ACC-MM-2",
                study_date="20220101")
OLDER = StudySpec(study_uid=uid(8003), patient_id="PID-MM", accession="ACC-MM-3",
                  study_date="20200101")
LATER = StudySpec(study_uid=uid(8004), patient_id="PID-MM", accession="ACC-MM-4",
                  study_date="20250101")
OTHER = StudySpec(study_uid=uid(8005), patient_id="PID-MM-OTHER", accession="ACC-MM-1",
                  study_date="20240102")
ONE = {"username": "janedoe", "role": ROLE, "patientID": "PID-MM", "numberOfMonitors": "1"}
TWO = {**ONE, "numberOfMonitors": "2", "idIssuer": "NONE"}
URL = re.compile(r"^/ngv\?q=[0-9a-f]{64}$")


@pytest.fixture(scope="module")
async def api(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    async with running_app(tmp_path_factory.mktemp("multimonitor")) as api:
        for spec in (NEW, OLD, OLDER, LATER, OTHER):
            await api.ingest(spec)
        yield api


async def urls(api: Api, params: Any) -> dict[str, str]:
    response = await api.get("/ngv/multimonitor-api", params)
    body: dict[str, str] = await response.json()
    assert response.status == 200, body
    return body


async def error(api: Api, params: Any) -> dict[str, str]:
    response = await api.get("/ngv/multimonitor-api", params)
    body: dict[str, str] = await response.json()
    assert response.status == 400, body
    return body


def opened(context: dict[str, Any]) -> list[str]:
    return [s["studyInstanceUID"] for s in context["studies"] if s["purpose"] == "open"]


def listed(context: dict[str, Any]) -> list[str]:
    return [s["studyInstanceUID"] for s in context["studies"]]


async def test_one_monitor_gets_exactly_the_primary_url(api: Api) -> None:
    body = await urls(api, ONE)
    assert list(body) == ["primaryMonitorRelativeUrl"]
    assert URL.match(body["primaryMonitorRelativeUrl"])


async def test_two_monitors_get_both_urls(api: Api) -> None:
    body = await urls(api, TWO)
    assert list(body) == ["primaryMonitorRelativeUrl", "secondaryMonitorRelativeUrl"]
    assert all(URL.match(url) for url in body.values())
    assert body["primaryMonitorRelativeUrl"] != body["secondaryMonitorRelativeUrl"]


@pytest.mark.parametrize("missing", ["username", "role", "patientID", "numberOfMonitors"])
async def test_required_parameters(api: Api, missing: str) -> None:
    params = dict(ONE)
    del params[missing]
    assert (await error(api, params))["field"] == missing


@pytest.mark.parametrize("value", ["0", "3", "two", "1.0", ""])
async def test_number_of_monitors_is_1_or_2(api: Api, value: str) -> None:
    assert (await error(api, {**ONE, "numberOfMonitors": value}))["field"] == "numberOfMonitors"


async def test_id_issuer_is_required_for_two_monitors(api: Api) -> None:
    params = dict(TWO)
    del params["idIssuer"]
    assert (await error(api, params))["field"] == "idIssuer"


async def test_study_uid_and_acc_num_together_are_400(api: Api) -> None:
    body = await error(api, {**ONE, "studyInstanceUID": NEW.study_uid, "accNum": "ACC-MM-1"})
    assert body["field"] == "accNum"


@pytest.mark.parametrize("spelling", ["studyInstanceUID", "studyIntanceUID", "studyInstanceUid"])
async def test_every_spelling_of_the_study_parameter_is_accepted(
    api: Api, spelling: str
) -> None:
    body = await urls(api, {**ONE, spelling: OLD.study_uid})
    context = await api.context(body["primaryMonitorRelativeUrl"])
    assert opened(context) == [OLD.study_uid]


async def test_study_parameter_takes_several_values(api: Api) -> None:
    body = await urls(api, [*ONE.items(), ("studyInstanceUID", OLD.study_uid),
                            ("studyIntanceUID", NEW.study_uid)])
    context = await api.context(body["primaryMonitorRelativeUrl"])
    assert opened(context) == [OLD.study_uid, NEW.study_uid]


@pytest.mark.parametrize("spelling", ["studyIntanceUID", "studyInstanceUID", "studyInstanceUid"])
async def test_invalid_study_uid_is_400_naming_the_spelling_sent(api: Api, spelling: str) -> None:
    assert (await error(api, {**ONE, spelling: "1..2"}))["field"] == spelling


@pytest.mark.parametrize("name", ["anonymize", "hideSearch"])
async def test_booleans_are_strict(api: Api, name: str) -> None:
    assert (await error(api, {**ONE, name: "maybe"}))["field"] == name


async def test_unknown_role_and_source_node_are_400(api: Api) -> None:
    assert (await error(api, {**ONE, "role": "nobody"}))["field"] == "role"
    assert (await error(api, {**ONE, "sourceNodes": "PACS"}))["field"] == "sourceNodes"


@pytest.mark.parametrize(("sticky", "sent"), [("ah6799c", "ah6799c"), ("a/b+c&d", "a%2Fb%2Bc%26d")])
async def test_both_urls_carry_the_sticky_value(api: Api, sticky: str, sent: str) -> None:
    """The redemption is the first hop: a proxy routing on sticky needs it there too."""
    body = await urls(api, {**TWO, "sticky": sticky})
    for url in body.values():
        assert url.endswith(f"&sticky={sent}") and URL.match(url.split("&")[0])
        response, _ = await api.redeem(url)
        assert response.status == 302 and response.headers["X-Sticky"] == sticky


async def test_urls_carry_no_sticky_when_the_request_had_none(api: Api) -> None:
    assert all(URL.match(url) for url in (await urls(api, TWO)).values())


async def test_defaults_and_options_are_recorded(api: Api) -> None:
    body = await urls(api, {**TWO, "sticky": "s1", "anonymize": "TRUE",
                            "fullPreloadStudy": OLD.study_uid})
    primary = await api.context(body["primaryMonitorRelativeUrl"])
    secondary = await api.context(body["secondaryMonitorRelativeUrl"])
    assert primary["monitor"] == "primary" and secondary["monitor"] == "secondary"
    assert primary["options"]["anonymize"] is True
    assert primary["options"]["hideSearch"] is True
    assert primary["sticky"] == secondary["sticky"] == "s1"
    assert [s["preload"] for s in primary["studies"]
            if s["studyInstanceUID"] == OLD.study_uid] == [True]


async def test_primary_opens_requested_study_secondary_its_priors(api: Api) -> None:
    body = await urls(api, {**TWO, "studyInstanceUID": OLD.study_uid})
    primary = await api.context(body["primaryMonitorRelativeUrl"])
    secondary = await api.context(body["secondaryMonitorRelativeUrl"])
    assert primary["display"] == "studies" and opened(primary) == [OLD.study_uid]
    # Prior: not what the first monitor opens, and not later than it.
    assert listed(secondary) == [OLDER.study_uid]
    assert {s["purpose"] for s in secondary["studies"]} == {"prior"}


async def test_primary_shows_history_when_no_requested_study_exists(api: Api) -> None:
    body = await urls(api, {**TWO, "studyInstanceUID": uid(8999)})
    primary = await api.context(body["primaryMonitorRelativeUrl"])
    assert primary["display"] == "history"
    assert listed(primary) == [LATER.study_uid, NEW.study_uid, OLD.study_uid, OLDER.study_uid]
    secondary = await api.context(body["secondaryMonitorRelativeUrl"])
    assert listed(secondary) == listed(primary)


async def test_accession_opens_studies_of_any_patient(api: Api) -> None:
    body = await urls(api, {**ONE, "accNum": "ACC-MM-1"})
    primary = await api.context(body["primaryMonitorRelativeUrl"])
    assert sorted(opened(primary)) == sorted([NEW.study_uid, OTHER.study_uid])


async def test_patient_alone_shows_the_history(api: Api) -> None:
    primary = await api.context((await urls(api, ONE))["primaryMonitorRelativeUrl"])
    assert primary["display"] == "history" and opened(primary) == []


async def test_a_patient_is_its_id_with_its_issuer(api: Api) -> None:
    """PID-MM-ISS without issuer and PID-MM-ISS of HOSPITAL-B are two patients: each request
    opens one of them (idIssuer=NONE: the one without issuer), never both."""
    unknown_issuer = StudySpec(study_uid=uid(8006), patient_id="PID-MM-ISS")
    issuer_b = StudySpec(study_uid=uid(8007), patient_id="PID-MM-ISS")
    await api.ingest(unknown_issuer)
    ds = make_instance(issuer_b, 0, 0)
    ds.IssuerOfPatientID = "HOSPITAL-B"
    path = api.folder / "issuer-b.dcm"
    ds.save_as(path, enforce_file_format=True)
    await api.services.ingestor.ingest_copy(path, "import")
    seen = {}
    for issuer in ("HOSPITAL-A", "HOSPITAL-B", "NONE"):
        body = await urls(api, {**TWO, "patientID": "PID-MM-ISS", "idIssuer": issuer})
        seen[issuer] = listed(await api.context(body["primaryMonitorRelativeUrl"]))
    assert seen["HOSPITAL-A"] == []
    assert seen["HOSPITAL-B"] == [issuer_b.study_uid]
    assert seen["NONE"] == [unknown_issuer.study_uid]
    # Without an issuer the Patient ID names two patients: refused, naming the parameter.
    response = await api.get("/ngv/obscurl", {"username": "u", "role": ROLE,
                                              "patientID": "PID-MM-ISS"})
    assert response.status == 409
    assert "idIssuer" in (await response.json())["error"]
