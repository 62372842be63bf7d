"""A viewer session saves a DICOM SEG without IssuerOfPatientID (as OHIF's export writes it) into
a study of a patient with an issuer: the node fills in the study's patient's issuer, in the file
and the index alike (rest/dicomweb/stow_issuer.py). Every other mismatch stays refused, and so
does the same SEG through the API key."""

from __future__ import annotations

import json
from dataclasses import replace
from io import BytesIO
from typing import Any

import highdicom as hd
import numpy as np
import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from tests.factory import StudySpec, make_instance, uid
from tests.index_db import rows
from tests.peers import NodeProcess
from tests.test_dicomweb_stow import (
    BOUNDARY,
    DATASET_MISMATCH,
    SAVE_ROLE,
    as_read,
    body,
    encoded,
    items,
    post,
    session,
    stored_bytes,
    stored_row,
    value,
)

ISSUER = "HOSPITAL-A"
COERCED = 0xB000
SEG_SERIES = 50


@pytest.fixture(scope="module")
def roles(node: NodeProcess) -> NodeProcess:
    added = node.cli("role", "add", SAVE_ROLE, "--allow", "search,save")
    assert added.returncode == 0 or "exists" in added.stderr, added.stderr
    return node


def study_spec(number: int, issuer: str = ISSUER) -> StudySpec:
    return StudySpec(patient_id=f"SEG-ISSUER-{number}", patient_name="SEG^ISSUER",
                     issuer=issuer, study_uid=uid(7310, number), rows=8, columns=8,
                     instances_per_series=2)


def images(spec: StudySpec) -> list[Dataset]:
    """The study's CT slices, with the geometry a segmentation needs."""
    slices = []
    for index in range(spec.instances_per_series):
        ds = make_instance(spec, 0, index)
        ds.FrameOfReferenceUID = f"{spec.study_uid}.9"
        ds.ImagePositionPatient = [0.0, 0.0, float(index)]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing = [1.0, 1.0]
        ds.SliceThickness = 1.0
        slices.append(as_read(ds))
    return slices


def segmentation(spec: StudySpec, sources: list[Dataset], fractional: bool = False,
                 **patient: str) -> Dataset:
    """A DICOM SEG of `sources` as OHIF's export writes it: PatientID copied, no
    IssuerOfPatientID (`patient`: attributes to set instead). `fractional`: a byte per
    pixel, for a large one."""
    mask = np.zeros((len(sources), spec.rows, spec.columns), dtype=bool)
    mask[:, 2:5, 2:5] = True
    kind = (hd.seg.SegmentationTypeValues.FRACTIONAL if fractional
            else hd.seg.SegmentationTypeValues.BINARY)
    segment = hd.seg.SegmentDescription(
        segment_number=1, segment_label="lesion",
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Neoplasm,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL)
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=mask,
        segmentation_type=kind,
        segment_descriptions=[segment], series_instance_uid=f"{spec.study_uid}.{SEG_SERIES}",
        series_number=SEG_SERIES, sop_instance_uid=f"{spec.study_uid}.{SEG_SERIES}.1",
        instance_number=1, manufacturer="OHIF-like", manufacturer_model_name="test",
        software_versions="1", device_serial_number="1")
    seg.pop("IssuerOfPatientID", None)
    for keyword, text in patient.items():
        setattr(seg, keyword, text)
    return as_read(seg)


def saved_by_session(node: NodeProcess, username: str, spec: StudySpec, seg: Dataset
                     ) -> requests.Response:
    """POST `seg` with a session cookie of `username` (role with save) opened on the study."""
    _, browser = session(node, username, SAVE_ROLE, studyUID=spec.study_uid)
    return browser.post(f"{node.http_url}/dicom-web/studies/{spec.study_uid}", timeout=60,
                        data=body([("application/dicom", encoded(seg))]),
                        headers={"Content-Type": f"multipart/related; "
                                 f"type=application/dicom; boundary={BOUNDARY}",
                                 "Accept": "application/dicom+json"})


def patient_rows(node: NodeProcess, sop_uid: str) -> list[tuple[Any, ...]]:
    return rows(node.data_dir,
                "SELECT p.patient_id, p.issuer FROM instances i "
                "JOIN series s ON s.id = i.series_pk JOIN studies t ON t.id = s.study_pk "
                "JOIN patients p ON p.id = t.patient_pk WHERE i.sop_uid = :u", u=sop_uid)


def failure(response: requests.Response) -> Any:
    return value(items(response.json(), "00081198")[0], "00081197")


@pytest.fixture(scope="module")
def client(node: NodeProcess) -> DICOMwebClient:
    return DICOMwebClient(f"{node.http_url}/dicom-web", headers={"Authorization": node.api_key})


def test_a_session_saves_a_seg_without_issuer_with_its_patients_issuer_filled_in(
        roles: NodeProcess, client: DICOMwebClient) -> None:
    spec = study_spec(1)
    sources = images(spec)
    client.store_instances(sources)
    seg = segmentation(spec, sources)
    sent = encoded(seg)
    response = saved_by_session(roles, "seg-reader-1", spec, seg)
    assert response.status_code == 202, response.text
    stored = items(response.json(), "00081199")
    assert value(stored[0], "00081155") == seg.SOPInstanceUID
    assert value(stored[0], "00081196") == COERCED
    assert "IssuerOfPatientID" in response.headers["Warning"]
    # The file holds the issuer; every other byte is the one sent, pixel data included.
    kept = stored_bytes(roles, seg.SOPInstanceUID)
    held = pydicom.dcmread(BytesIO(kept))
    assert held.IssuerOfPatientID == ISSUER
    assert held.PixelData == seg.PixelData
    element = b"\x10\x00\x21\x00LO" + len(ISSUER).to_bytes(2, "little") + ISSUER.encode()
    assert kept.replace(element, b"", 1) == sent
    # The index files it under the study's one patient, as the file says.
    assert patient_rows(roles, seg.SOPInstanceUID) == [(spec.patient_id, ISSUER)]
    assert len(rows(roles.data_dir, "SELECT id FROM patients WHERE patient_id = :p",
                    p=spec.patient_id)) == 1
    audited = rows(roles.data_dir, "SELECT detail FROM audit_events "
                                   "WHERE action = 'stow' AND username = :u", u="seg-reader-1")
    detail = audited[0][0] if isinstance(audited[0][0], dict) else json.loads(audited[0][0])
    assert detail["issuerFilledSopInstanceUIDs"] == [seg.SOPInstanceUID]


@pytest.mark.parametrize("number, patient", [
    (2, {"PatientID": "SEG-ISSUER-OTHER"}),
    (3, {"IssuerOfPatientID": "HOSPITAL-B"}),
    (6, {"PatientID": "SEG-ISSUER-OTHER", "IssuerOfPatientID": ""}),
], ids=["another-patient-id", "another-issuer", "another-patient-id-and-empty-issuer"])
def test_a_seg_of_another_patient_stays_refused(roles: NodeProcess, client: DICOMwebClient,
                                                number: int, patient: dict[str, str]) -> None:
    spec = study_spec(number)
    sources = images(spec)
    client.store_instances(sources)
    seg = segmentation(spec, sources, **patient)
    response = saved_by_session(roles, f"seg-reader-{number}", spec, seg)
    assert response.status_code == 409, response.text
    assert failure(response) == DATASET_MISMATCH
    assert stored_row(roles, seg.SOPInstanceUID) is None


def test_the_api_key_door_fills_in_nothing(roles: NodeProcess, client: DICOMwebClient) -> None:
    spec = study_spec(4)
    sources = images(spec)
    client.store_instances(sources)
    seg = segmentation(spec, sources)
    response = post(roles, body([("application/dicom", encoded(seg))]))
    assert response.status_code == 409, response.text
    assert failure(response) == DATASET_MISMATCH
    assert stored_row(roles, seg.SOPInstanceUID) is None


def test_a_seg_of_a_patient_without_issuer_is_stored_as_sent(
        roles: NodeProcess, client: DICOMwebClient) -> None:
    spec = study_spec(5, issuer="")
    sources = images(spec)
    client.store_instances(sources)
    seg = segmentation(spec, sources)
    response = saved_by_session(roles, "seg-reader-5", spec, seg)
    assert response.status_code == 200, response.text
    assert stored_bytes(roles, seg.SOPInstanceUID) == encoded(seg)
    assert patient_rows(roles, seg.SOPInstanceUID) == [(spec.patient_id, "")]


def test_a_seg_streamed_in_chunks_is_filled_in_too(roles: NodeProcess,
                                                   client: DICOMwebClient) -> None:
    """A chunked body's part past 1 MiB is written to incoming/ as it arrives: the issuer is
    filled in by writing that file again, spliced."""
    spec = replace(study_spec(7), rows=768, columns=768)
    sources = images(spec)
    client.store_instances(sources)
    seg = segmentation(spec, sources, fractional=True)
    sent = encoded(seg)
    assert len(sent) > 1 << 20
    _, browser = session(roles, "seg-reader-7", SAVE_ROLE, studyUID=spec.study_uid)
    payload = body([("application/dicom", sent)])
    chunks = (payload[i:i + 65536] for i in range(0, len(payload), 65536))
    response = browser.post(f"{roles.http_url}/dicom-web/studies", timeout=60, data=chunks,
                            headers={"Content-Type": f"multipart/related; "
                                     f"type=application/dicom; boundary={BOUNDARY}"})
    assert response.status_code == 202, response.text
    kept = stored_bytes(roles, seg.SOPInstanceUID)
    assert pydicom.dcmread(BytesIO(kept)).IssuerOfPatientID == ISSUER
    assert len(kept) == len(sent) + 8 + len(ISSUER)
    assert patient_rows(roles, seg.SOPInstanceUID) == [(spec.patient_id, ISSUER)]


def test_a_seg_of_a_long_series_is_filled_in_past_its_first_64_kib(
        roles: NodeProcess, client: DICOMwebClient) -> None:
    """OHIF's SEG lists every source image in group 0008 (SourceImageSequence), before the
    patient module: for a long series that is past the first 64 KiB of the file."""
    spec = study_spec(8)
    sources = images(spec)
    client.store_instances(sources)
    seg = segmentation(spec, sources)
    seg.SourceImageSequence = [Dataset() for _ in range(1000)]
    for index, item in enumerate(seg.SourceImageSequence):
        item.ReferencedSOPClassUID = sources[0].SOPClassUID
        item.ReferencedSOPInstanceUID = f"{spec.study_uid}.1.{index + 1}"
    sent = encoded(seg)
    assert sent.index(spec.patient_id.encode()) > 1 << 16
    response = saved_by_session(roles, "seg-reader-8", spec, seg)
    assert response.status_code == 202, response.text
    assert pydicom.dcmread(BytesIO(stored_bytes(roles, seg.SOPInstanceUID))
                           ).IssuerOfPatientID == ISSUER
    assert patient_rows(roles, seg.SOPInstanceUID) == [(spec.patient_id, ISSUER)]
