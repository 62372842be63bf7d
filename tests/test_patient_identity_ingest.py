"""A study is one patient's, whichever door an instance comes through: STOW-RS and the POST
API's imports refuse an instance naming a study the node holds for another patient, as C-STORE
does (tests/test_store_edge_cases.py), and an import that names the patient never files an
instance under a (PatientID, issuer) pair nobody named."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from io import BytesIO
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset
from sqlalchemy import select

from node.errors import NotFound
from node.index.dicom_models import Instance, Patient, Series, Study
from node.sources.storage_mapping import add_mapping, remove_mapping
from rest.obscurl_post import IMPORTS
from tests.factory import StudySpec, make_instance, uid
from tests.rest_support import API_KEY, Api, running_app
from tests.source_fixtures import run_body, storage_table

OWNER = StudySpec(study_uid=uid(12101), patient_id="ING-OWNER", patient_name="OWNER^FIRST",
                  rows=16, columns=16, instances_per_series=1)
# The owner's PatientID at another hospital: another patient.
NAMESAKE = StudySpec(study_uid=uid(12102), patient_id="ING-OWNER", issuer="ING-HOSP-X",
                     patient_name="NAMESAKE^OTHER", rows=16, columns=16, instances_per_series=1)
BOUNDARY = "identity-boundary"
FAILED_SOP_SEQUENCE, FAILURE_REASON, SOP_UID = "00081198", "00081197", "00081155"
DATASET_MISMATCH = 0xA900


@pytest.fixture(scope="module")
async def api(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    async with running_app(tmp_path_factory.mktemp("identity-ingest")) as api:
        for spec in (OWNER, NAMESAKE):
            await api.ingest(spec)
        yield api


def intruders() -> list[Dataset]:
    """Instances of OWNER's study with another patient: another PatientID, or the same one
    of another issuer."""
    other_id = make_instance(StudySpec(study_uid=OWNER.study_uid, patient_id="ING-INTRUDER",
                                       patient_name="INTRUDER^OTHER", rows=16, columns=16), 1, 0)
    other_issuer = make_instance(StudySpec(study_uid=OWNER.study_uid, patient_id="ING-OWNER",
                                           issuer="ING-HOSP-X", patient_name="NAMESAKE^OTHER",
                                           rows=16, columns=16), 2, 0)
    return [other_id, other_issuer]


async def patient_of_instance(api: Api, sop_uid: str) -> tuple[str, str, str] | None:
    """(PatientID, issuer, name) of the patient an indexed instance is filed under."""
    async with api.services.sessions() as session:
        row = (await session.execute(
            select(Patient.patient_id, Patient.issuer, Patient.name)
            .join(Study, Study.patient_pk == Patient.id)
            .join(Series, Series.study_pk == Study.id)
            .join(Instance, Instance.series_pk == Series.id)
            .where(Instance.sop_uid == sop_uid))).first()
    return None if row is None else (row[0], row[1], row[2])


def stow_body(datasets: list[Dataset]) -> bytes:
    out = BytesIO()
    for ds in datasets:
        buffer = BytesIO()
        pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
        out.write(f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode())
        out.write(buffer.getvalue() + b"\r\n")
    out.write(f"--{BOUNDARY}--\r\n".encode())
    return out.getvalue()


async def test_stow_refuses_an_instance_of_another_patients_study(api: Api) -> None:
    sent = intruders()
    response = await api.client.post(
        "/dicom-web/studies", data=stow_body(sent),
        headers={"Authorization": API_KEY,
                 "Content-Type": f'multipart/related; type="application/dicom"; '
                                 f"boundary={BOUNDARY}",
                 "Accept": "application/dicom+json"})
    assert response.status == 409, await response.text()
    answer: dict[str, Any] = await response.json()
    failed = answer[FAILED_SOP_SEQUENCE]["Value"]
    assert sorted(item[SOP_UID]["Value"][0] for item in failed) == sorted(
        str(ds.SOPInstanceUID) for ds in sent)
    assert {item[FAILURE_REASON]["Value"][0] for item in failed} == {DATASET_MISMATCH}
    for ds in sent:
        assert await patient_of_instance(api, str(ds.SOPInstanceUID)) is None
    assert "INTRUDER" not in await response.text()


def post_body(study_uid: str, file: str, **patient: str) -> dict[str, Any]:
    """A POST API body importing one DICOM file of a mapped folder."""
    return {"username": "u", "role": "physician", "studies": [{
        **patient, "studyInstanceUID": study_uid, "series": [{
            "seriesInstanceUID": f"{study_uid}.7",
            "instances": [{"sopInstanceUID": f"{study_uid}.7.1", "file": f"/storage/{file}",
                           "mimeType": "application/dicom"}]}]}]}


async def test_an_import_refuses_an_instance_of_another_patients_study(
        api: Api, tmp_path: Path) -> None:
    for n, ds in enumerate(intruders()):
        ds.save_as(tmp_path / f"intruder-{n}.dcm", enforce_file_format=True)
    body = {"username": "u", "role": "physician", "folder": {"path": "/storage"}}
    progress = await run_body(api.services, body, storage_table(tmp_path))
    assert (progress.done, progress.failed) == (0, 2), progress.failures
    assert all("another patient" in f["message"] for f in progress.failures)
    for ds in intruders():
        assert await patient_of_instance(api, str(ds.SOPInstanceUID)) is None


async def test_an_import_naming_the_patient_drops_the_files_issuer(
        api: Api, tmp_path: Path) -> None:
    """The request's patientID replaces the file's PatientID; the file's IssuerOfPatientID
    qualified the file's own ID, not this one. Kept, it would file the instance under a
    patient nobody named: here NAMESAKE of ING-HOSP-X, another hospital's patient of the
    same ID, under whose name the study would then be shown."""
    study_uid = uid(12103)
    ds = make_instance(StudySpec(study_uid=study_uid, patient_id="ING-FILE-ID",
                                 issuer="ING-HOSP-X", patient_name="FILE^NAME", rows=16,
                                 columns=16), 6, 0)
    ds.save_as(tmp_path / "named.dcm", enforce_file_format=True)
    body = post_body(study_uid, "named.dcm", patientID="ING-OWNER", patientName="OWNER^FIRST")
    progress = await run_body(api.services, body, storage_table(tmp_path))
    assert (progress.done, progress.failed) == (1, 0), progress.failures
    assert await patient_of_instance(api, f"{study_uid}.7.1") == (
        "ING-OWNER", "", "OWNER^FIRST")
    async with api.services.sessions() as session:
        path = await session.scalar(select(Instance.path)
                                    .where(Instance.sop_uid == f"{study_uid}.7.1"))
    assert path is not None
    stored = pydicom.dcmread(api.services.storage.local_path(path))
    assert "IssuerOfPatientID" not in stored and stored.PatientID == "ING-OWNER"


async def test_an_import_confirming_the_files_patient_id_keeps_its_issuer(
        api: Api, tmp_path: Path) -> None:
    study_uid = uid(12104)
    ds = make_instance(StudySpec(study_uid=study_uid, patient_id="ING-OWNER",
                                 issuer="ING-HOSP-X", patient_name="NAMESAKE^OTHER", rows=16,
                                 columns=16), 6, 0)
    ds.save_as(tmp_path / "confirmed.dcm", enforce_file_format=True)
    body = post_body(study_uid, "confirmed.dcm", patientID="ING-OWNER",
                     accessionNumber="ACC-CONFIRMED")
    progress = await run_body(api.services, body, storage_table(tmp_path))
    assert (progress.done, progress.failed) == (1, 0), progress.failures
    assert await patient_of_instance(api, f"{study_uid}.7.1") == (
        "ING-OWNER", "ING-HOSP-X", "NAMESAKE^OTHER")


async def post_token(api: Api, volume: Path, body: dict[str, Any]) -> Any:
    """POST /ngv/v1/obscurl with /storage mapped to `volume`."""
    with contextlib.suppress(NotFound):
        await remove_mapping(api.services.sessions, "/storage")
    await add_mapping(api.services.sessions, "/storage", str(volume))
    return await api.client.post("/ngv/v1/obscurl", json=body,
                                 headers={"Authorization": API_KEY})


async def test_a_post_naming_another_patients_study_is_refused(api: Api, tmp_path: Path) -> None:
    """The POST API's patientID with a study the node holds for another patient is the
    caller's wrong-patient error, as with GET /ngv/obscurl: 409, nothing opens (the session
    would read the other patient's study and history)."""
    ds = make_instance(StudySpec(study_uid=OWNER.study_uid, patient_id="ING-CLAIMED",
                                 patient_name="CLAIMED^PERSON", rows=16, columns=16), 6, 0)
    ds.save_as(tmp_path / "claimed.dcm", enforce_file_format=True)
    body = post_body(OWNER.study_uid, "claimed.dcm", patientID="ING-CLAIMED",
                     patientName="CLAIMED^PERSON")
    response = await post_token(api, tmp_path, body)
    assert response.status == 409, await response.text()
    error = (await response.json())["error"]
    assert error.startswith("studies[0].patientID") and OWNER.study_uid in error
    assert "ING-OWNER" not in error and "FIRST" not in error


async def test_a_post_whose_files_are_refused_opens_nothing_of_the_other_patient(
        api: Api, tmp_path: Path) -> None:
    """Files (a folder, or studies named without patientID) of a study the node holds for
    another patient are refused at import: the session must not open the node's copy of
    that study, nor the rest of that patient's studies, in their place."""
    owner_prior = StudySpec(study_uid=uid(12105), patient_id="ING-OWNER",
                            patient_name="OWNER^FIRST", study_date="20200101", rows=16,
                            columns=16, instances_per_series=1)
    await api.ingest(owner_prior)
    for n, ds in enumerate(intruders()):
        ds.save_as(tmp_path / f"intruder-{n}.dcm", enforce_file_format=True)
    bodies = [{"username": "u", "role": "physician", "folder": {"path": "/storage"}},
              post_body(OWNER.study_uid, "intruder-0.dcm")]
    for body in bodies:
        response = await post_token(api, tmp_path, body)
        assert response.status == 200, await response.text()
        token = await response.text()
        await api.client.app[IMPORTS].wait_idle()
        headers = await redeemed(api, token)
        for study_uid in (OWNER.study_uid, owner_prior.study_uid):
            readable = await api.client.get(f"/dicom-web/studies/{study_uid}/series",
                                            headers=headers)
            assert readable.status == 403, (body, study_uid)
        listed = await api.client.get("/dicom-web/studies", headers=headers)
        assert "OWNER" not in await listed.text()


async def redeemed(api: Api, token: str) -> dict[str, str]:
    _, cookie = await api.redeem(token)
    assert cookie is not None
    return {"Cookie": f"ngv_session={cookie}"}
