"""The slide viewer shows one patient: a case (accession number) that two patients' studies
share, a collision across hospitals or a number given twice, shows the slides of the patient
its banner names, never the other patient's slides under that name."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread

from tests import slide_factory as factory
from tests.factory import uid
from tests.rest_support import ROLE, Api, running_app

CASE = "IDCASE-1"
BANNER_SLIDE = "IDCASE-1-A-1-1"
OTHER_SLIDE = "IDCASE-1-B-1-1"
COLLIDING_CASE = "IDCASE-2"
SHARED_SLIDE = "IDCASE-2-A-1-1"


def patient_slide(folder: Path, study_uid: str, container: str, study_date: str,
                  accession: str = CASE, **patient: str) -> list[Path]:
    """A DICOM WSI of the case, of the patient given (keyword -> value)."""
    files = factory.write_dicom_wsi(
        folder, specimen=factory.SpecimenSpec(container_identifier=container),
        accession=accession, study_uid=study_uid)
    for path in files.paths:
        ds = dcmread(path)
        ds.StudyDate = study_date
        for keyword, value in patient.items():
            setattr(ds, keyword, value)
        ds.save_as(path, enforce_file_format=True)
    return files.paths


@pytest.fixture(scope="module")
async def api(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    folder = tmp_path_factory.mktemp("identity-slides")
    # The newer study is the one the case's context opens first: its patient is the banner's.
    paths = patient_slide(folder / "a", uid(12301), BANNER_SLIDE, "20240105",
                          PatientID="ID-PATH", PatientName="ALPHA^PATHCASE")
    # The same PatientID from another hospital: another patient.
    paths += patient_slide(folder / "b", uid(12302), OTHER_SLIDE, "20230105",
                           PatientID="ID-PATH", IssuerOfPatientID="OTHER-HOSP",
                           PatientName="OMEGA^OTHERHOSP")
    # Two patients' slides that carry one Container Identifier, in two cases; the other
    # patient's arrives last, so a slide looked up by its identifier alone is that one.
    paths += patient_slide(folder / "c", uid(12303), SHARED_SLIDE, "20240105",
                           accession=COLLIDING_CASE, PatientID="ID-PATH-C",
                           PatientName="GAMMA^FIRSTSCAN")
    paths += patient_slide(folder / "d", uid(12304), SHARED_SLIDE, "20240105",
                           accession="IDCASE-3", PatientID="ID-PATH-D",
                           PatientName="DELTA^SECONDSCAN")
    async with running_app(folder / "node") as api:
        for path in paths:
            await api.services.ingestor.ingest_copy(path, "import")
        yield api


async def tray(api: Api, headers: dict[str, str]) -> dict[str, Any]:
    response = await api.client.get("/ngv/slides", headers=headers)
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def test_a_case_of_two_patients_shows_the_banners_patients_slides_only(api: Api) -> None:
    headers = await api.session_headers({"username": "path", "role": ROLE, "accNum": CASE})
    body = await tray(api, headers)
    assert body["patient"]["name"] == "ALPHA, PATHCASE"
    assert [s["containerIdentifier"] for s in body["slides"]] == [BANNER_SLIDE]
    assert "OMEGA" not in str(body)
    for path in ("", "/dz.dzi", "/thumbnail.jpeg", "/label.png"):
        response = await api.client.get(f"/ngv/slides/{OTHER_SLIDE}{path}", headers=headers)
        assert response.status == 403, path
    page = await api.client.get("/ngv/viewer", headers=headers)
    assert "ALPHA" in await page.text() and "OMEGA" not in await page.text()


async def test_a_slide_of_the_case_named_by_the_token_opens_its_own_patient(api: Api) -> None:
    """containerIdentifier names the slide: its patient is the banner's, whichever study of
    the case is newer."""
    headers = await api.session_headers({"username": "path", "role": ROLE, "accNum": CASE,
                                         "containerIdentifier": OTHER_SLIDE})
    body = await tray(api, headers)
    assert [s["containerIdentifier"] for s in body["slides"]] == [OTHER_SLIDE]
    assert body["patient"]["name"] == "OMEGA, OTHERHOSP"


async def test_a_container_identifier_of_two_patients_slides_shows_neither(api: Api) -> None:
    """A slide is found by its Container Identifier, the latest scan first: GAMMA's case
    would show DELTA's slide, scanned later under the same identifier, under GAMMA's name.
    Whose slide it is cannot be told, so the case shows it to no one."""
    headers = await api.session_headers({"username": "path", "role": ROLE,
                                         "accNum": COLLIDING_CASE})
    body = await tray(api, headers)
    assert body["slides"] == [] and "DELTA" not in str(body)
    for path in ("/dz.dzi", "/label.png"):
        response = await api.client.get(f"/ngv/slides/{SHARED_SLIDE}{path}", headers=headers)
        assert response.status == 403, path


async def test_a_named_study_arriving_as_another_patients_opens_none_of_its_slides(
        api: Api) -> None:
    """A token names a patient and a study the node holds nowhere yet; the study arrives
    later as another patient's slides (a scanner sends it under another PatientID). The
    session's grant leaves that study out (node/viewing/named_patient.py): its slides, tiles
    and label are left out too."""
    late_slide = "IDCASE-LATE-A-1-1"
    token = await api.token({"username": "path", "role": ROLE, "patientID": "ID-PATH-NAMED",
                             "studyUID": uid(12310)})
    for path in patient_slide(api.folder / "late", uid(12310), late_slide, "20240105",
                              accession="IDCASE-LATE", PatientID="ID-PATH-ARRIVED",
                              PatientName="EPSILON^ARRIVED"):
        await api.services.ingestor.ingest_copy(path, "import")
    _, cookie = await api.redeem(token)
    headers = {"Cookie": f"ngv_session={cookie}"}
    response = await api.client.get("/ngv/slides", headers=headers)
    assert response.status == 200
    body = await response.json()
    assert body["slides"] == [] and "EPSILON" not in str(body)
    for path in ("", "/dz.dzi", "/thumbnail.jpeg", "/label.png", "/layers"):
        response = await api.client.get(f"/ngv/slides/{late_slide}{path}", headers=headers)
        assert response.status == 403, path


async def test_an_anonymized_case_reads_no_slide_barcode_through_dicomweb(api: Api) -> None:
    """The slide viewer names an anonymized session's slides by alias (the barcode is as good
    as the patient's name); DICOMweb, which the same cookie reads, must not answer it either."""
    headers = await api.session_headers({"username": "path", "role": ROLE, "accNum": CASE,
                                         "anonymize": "true"})
    study = uid(12301)
    found = await api.client.get(f"/dicom-web/studies/{study}/instances",
                                 params={"includefield": "ContainerIdentifier"},
                                 headers=headers)
    assert found.status == 200
    metadata = await api.client.get(f"/dicom-web/studies/{study}/metadata", headers=headers)
    assert metadata.status == 200
    for body in (await found.text(), await metadata.text()):
        assert BANNER_SLIDE not in body
        assert "C231606-1426-A" not in body


async def test_an_anonymized_context_shows_not_the_slide_its_token_named(api: Api) -> None:
    """The token's containerIdentifier is the barcode too: the context JSON of an anonymized
    session leaves it out of the options (the server still opens that slide)."""
    token = await api.token({"username": "path", "role": ROLE, "accNum": CASE,
                             "containerIdentifier": BANNER_SLIDE, "anonymize": "true"})
    context = await api.context(token)
    assert BANNER_SLIDE not in repr(context) and CASE not in repr(context)
