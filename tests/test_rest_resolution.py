"""What a token opens: the index first, then C-FIND on the source nodes, then background
retrieval; against a real Orthanc, a dead node and a silent one."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.factory import StudySpec, uid, write_study
from tests.peers import OrthancProcess, free_port, silent_listener
from tests.rest_support import ROLE, Api, running_app

BASE = {"username": "janedoe", "role": ROLE}

# Local index: patient A has two studies, patient B one; B's shares A's accession number.
A1 = StudySpec(study_uid=uid(7001), patient_id="PID-RES-A", accession="ACC-RES-1",
               study_date="20240301")
A2 = StudySpec(study_uid=uid(7002), patient_id="PID-RES-A", accession="ACC-RES-2",
               study_date="20230301")
B1 = StudySpec(study_uid=uid(7003), patient_id="PID-RES-B", accession="ACC-RES-1",
               study_date="20240302")
# Only on Orthanc.
REMOTE = StudySpec(study_uid=uid(7101), patient_id="PID-RES-R", accession="ACC-RES-R",
                   study_date="20220101")
REMOTE_SHARED = StudySpec(study_uid=uid(7102), patient_id="PID-RES-C", accession="ACC-RES-S",
                          study_date="20220202")
LOCAL_SHARED = StudySpec(study_uid=uid(7004), patient_id="PID-RES-D", accession="ACC-RES-S",
                         study_date="20220203")
REMOTE_PRIOR = StudySpec(study_uid=uid(7103), patient_id="PID-RES-A", accession="ACC-RES-3",
                         study_date="20200101")


@pytest.fixture(scope="module")
def silent_port() -> Iterator[int]:
    with silent_listener() as port:
        yield port


@pytest.fixture(scope="module")
def uploaded(orthanc: OrthancProcess, tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = tmp_path_factory.mktemp("orthanc-upload")
    for spec in (REMOTE, REMOTE_SHARED, REMOTE_PRIOR):
        for path in write_study(folder / spec.study_uid, spec):
            orthanc.upload(path)


def source(orthanc: OrthancProcess) -> dict[str, Any]:
    return {"ae_title": orthanc.ae_title, "host": "127.0.0.1", "port": orthanc.dicom_port,
            "retrieve": "C-GET"}


@pytest.fixture(scope="module")
async def local(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    """No source node configured: resolution is the index alone."""
    async with running_app(tmp_path_factory.mktemp("resolve-local")) as api:
        for spec in (A1, A2, B1):
            await api.ingest(spec)
        yield api


@pytest.fixture
async def remote(orthanc: OrthancProcess, uploaded: None, tmp_path: Path,
                 silent_port: int) -> AsyncIterator[Api]:
    """Orthanc as a source node (C-GET), plus a dead and a silent node; a fresh index."""
    nodes = [source(orthanc),
             {"ae_title": "DEAD", "host": "127.0.0.1", "port": free_port()},
             {"ae_title": "SILENT", "host": "127.0.0.1", "port": silent_port}]
    async with running_app(tmp_path, source_nodes=nodes, dicom={"query_timeout": 1.0}) as api:
        for spec in (A1, A2, LOCAL_SHARED):
            await api.ingest(spec)
        yield api
        await api.retrievals_done()


def opened(context: dict[str, Any]) -> list[str]:
    return [s["studyInstanceUID"] for s in context["studies"] if s["purpose"] == "open"]


def states(context: dict[str, Any]) -> dict[str, str]:
    return {s["studyInstanceUID"]: s["state"] for s in context["studies"]}


# -- the index alone ------------------------------------------------------------------------


async def test_study_uids_open_in_the_order_given(local: Api) -> None:
    context = await local.context(await local.token(
        [*BASE.items(), ("studyUID", A2.study_uid), ("studyUID", A1.study_uid)]))
    assert context["display"] == "studies"
    assert opened(context) == [A2.study_uid, A1.study_uid]
    assert set(states(context).values()) == {"available"}


async def test_study_found_nowhere_is_recorded_as_not_found(local: Api) -> None:
    missing = uid(7999)
    context = await local.context(await local.token({**BASE, "studyUID": missing}))
    assert states(context) == {missing: "not-found"}
    assert context["notFound"] is True
    assert context["sources"] == {"asked": [], "answered": [], "failed": []}


async def test_accession_shared_by_two_patients_opens_both(local: Api) -> None:
    context = await local.context(await local.token({**BASE, "accNum": "ACC-RES-1"}))
    assert sorted(opened(context)) == sorted([A1.study_uid, B1.study_uid])
    assert {s["patientID"] for s in context["studies"]} == {"PID-RES-A", "PID-RES-B"}


async def test_patient_id_opens_the_history_for_the_user_to_choose(local: Api) -> None:
    context = await local.context(await local.token({**BASE, "patientID": "PID-RES-A"}))
    assert context["display"] == "history"
    assert opened(context) == []
    # Newest first.
    assert [s["studyInstanceUID"] for s in context["studies"]] == [A1.study_uid, A2.study_uid]


async def test_patient_and_accession_open_that_patients_matching_studies(local: Api) -> None:
    context = await local.context(await local.token(
        {**BASE, "patientID": "PID-RES-A", "accNum": "ACC-RES-1"}))
    assert context["display"] == "studies"
    # Patient B's study with the same accession number is not theirs.
    assert opened(context) == [A1.study_uid]
    assert [s["studyInstanceUID"] for s in context["studies"] if s["purpose"] == "history"] \
        == [A2.study_uid]


async def test_patient_and_accession_without_match_open_the_history(local: Api) -> None:
    context = await local.context(await local.token(
        {**BASE, "patientID": "PID-RES-B", "accNum": "ACC-RES-2"}))
    assert context["display"] == "history"
    assert opened(context) == []
    assert [s["studyInstanceUID"] for s in context["studies"]] == [B1.study_uid]


async def test_anonymize_keeps_patient_ids_out_of_the_context(local: Api) -> None:
    context = await local.context(await local.token(
        {**BASE, "patientID": "PID-RES-A", "anonymize": "true"}))
    assert context["request"]["patientID"] is None
    assert all(s["patientID"] is None and s["accessionNumber"] is None
               for s in context["studies"])
    assert [s["studyInstanceUID"] for s in context["studies"]] == [A1.study_uid, A2.study_uid]


# -- source nodes ---------------------------------------------------------------------------


async def test_remote_study_is_found_by_c_find_and_retrieved_in_background(remote: Api) -> None:
    token = await remote.token({**BASE, "studyUID": REMOTE.study_uid, "sourceNodes": "ORTHANC"})
    _, cookie = await remote.redeem(token)
    headers = {"Cookie": f"ngv_session={cookie}"}
    first = await (await remote.client.get("/ngv/api/context", headers=headers)).json()
    study = first["studies"][0]
    assert study["source"] == "ORTHANC" and study["patientID"] == "PID-RES-R"
    assert study["state"] in ("pending", "retrieving", "available")
    await remote.retrievals_done()
    later = await (await remote.client.get("/ngv/api/context", headers=headers)).json()
    assert states(later) == {REMOTE.study_uid: "available"}
    assert later["sources"]["answered"] == ["ORTHANC"]
    indexed = await remote.token({**BASE, "studyUID": REMOTE.study_uid, "sourceNodes": "ORTHANC"})
    # Now it is local: the next token finds it in the index.
    assert (await remote.context(indexed))["studies"][0]["source"] is None


async def test_a_study_asked_twice_is_retrieved_once(
    remote: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="node.dimse.scu")
    params = {**BASE, "studyUID": REMOTE.study_uid, "sourceNodes": "ORTHANC"}
    tokens = [await remote.token(params), await remote.token(params)]
    await remote.retrievals_done()
    assert caplog.text.count(f"C-GET of study {REMOTE.study_uid}") == 1
    for token in tokens:
        assert states(await remote.context(token)) == {REMOTE.study_uid: "available"}


async def test_accession_shared_by_local_and_remote_patients_opens_both(remote: Api) -> None:
    context = await remote.context(await remote.token(
        {**BASE, "accNum": "ACC-RES-S", "sourceNodes": "ORTHANC"}))
    assert sorted(opened(context)) == sorted([LOCAL_SHARED.study_uid, REMOTE_SHARED.study_uid])
    sources = {s["studyInstanceUID"]: s["source"] for s in context["studies"]}
    assert sources == {LOCAL_SHARED.study_uid: None, REMOTE_SHARED.study_uid: "ORTHANC"}


async def test_explicit_source_nodes_complete_a_local_history(remote: Api) -> None:
    context = await remote.context(await remote.token(
        {**BASE, "patientID": "PID-RES-A", "sourceNodes": "ORTHANC"}))
    history = [s["studyInstanceUID"] for s in context["studies"]]
    assert history == [A1.study_uid, A2.study_uid, REMOTE_PRIOR.study_uid]


async def test_patient_and_accession_found_only_remotely(remote: Api) -> None:
    context = await remote.context(await remote.token(
        {**BASE, "patientID": "PID-RES-A", "accNum": "ACC-RES-3", "sourceNodes": "ORTHANC"}))
    assert context["display"] == "studies"
    assert opened(context) == [REMOTE_PRIOR.study_uid]


async def test_dead_and_silent_nodes_cost_at_most_the_timeout_and_are_reported(
    remote: Api
) -> None:
    started = time.monotonic()
    token = await remote.token({**BASE, "studyUID": REMOTE.study_uid})
    elapsed = time.monotonic() - started
    # query_timeout is 1 s: the silent node is given up on, not waited for.
    assert elapsed < 2.5
    context = await remote.context(token)
    failed = {f["aeTitle"]: f["message"] for f in context["sources"]["failed"]}
    assert set(failed) == {"DEAD", "SILENT"}
    assert "refused" in failed["DEAD"] and "timed out" in failed["SILENT"]
    assert context["sources"]["answered"] == ["ORTHANC"]
    # Orthanc still answered, so the study was found there.
    assert context["studies"][0]["source"] == "ORTHANC"


async def test_study_missing_everywhere_is_not_found_after_asking(remote: Api) -> None:
    missing = uid(7998)
    context = await remote.context(await remote.token(
        {**BASE, "studyUID": missing, "sourceNodes": "ORTHANC"}))
    assert states(context) == {missing: "not-found"}
    assert context["sources"]["asked"] == ["ORTHANC"]


async def test_local_studies_need_no_remote_query(remote: Api) -> None:
    context = await remote.context(await remote.token({**BASE, "studyUID": A1.study_uid}))
    assert context["sources"]["asked"] == []
    assert states(context) == {A1.study_uid: "available"}
