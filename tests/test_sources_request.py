"""The POST body's validation: every example of the spec is accepted, and every mistake is
refused with the field named by its path."""

from __future__ import annotations

import json
from typing import Any

import pytest

from node.errors import InvalidInput
from node.sources.request import parse_body, parse_request
from tests.cloud_peers import service_account_token
from tests.post_examples import EXAMPLES, GOOGLE_TOKEN_PLACEHOLDER, example


def refused(body: Any) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        parse_request(body)
    return caught.value


@pytest.mark.parametrize("name", [n for n in EXAMPLES if n != "google-bucket"])
def test_every_spec_example_is_accepted_as_written(name: str) -> None:
    request = parse_request(example(name))
    assert request.username == "john" and request.role == "diagnostic"


def test_the_google_example_is_accepted_with_a_real_key_in_place_of_the_placeholder() -> None:
    token, _ = service_account_token()
    request = parse_request(example("google-bucket", token=token))
    storage = request.studies[0].storage
    assert storage is not None and storage.service_account["type"] == "service_account"


def test_the_google_placeholder_itself_is_not_a_key() -> None:
    error = refused(example("google-bucket", token=GOOGLE_TOKEN_PLACEHOLDER))
    assert error.field == "studies[0].storage.token"


def test_files_example_keeps_every_field() -> None:
    request = parse_request(example("files"))
    study = request.studies[0]
    assert (study.patient_id, study.patient_name, study.birth_date, study.sex) == (
        "PID-123", "DOE^JANE", "19821108", "F")
    assert (study.accession, study.study_date, study.study_time) == (
        "AN-123", "20231205", "123000.000")
    kinds = [i.kind for s in study.series for i in s.instances]
    assert kinds == ["dicom", "jpeg", "png", "bmp", "mp4", "pdf"]
    assert study.series[4].modality == "XC" and study.series[5].modality == "SR"
    assert [s.number for s in study.series] == [1, 2, 3, 4, 5, 6]


def test_slide_fields_are_kept() -> None:
    instance = parse_request(example("dicom-wsi")).studies[0].series[0].instances[0]
    assert instance.slide.container_identifier == "C231606-1426-A-1-1"
    assert instance.slide.slide_stain_code == "H&E"
    assert instance.slide.block_procedure == "Margin"
    assert parse_request(example("non-dicom-wsi")).studies[0].series[0].instances[0].kind \
        == "slide"


def test_wado_rs_study_needs_no_series() -> None:
    study = parse_request(example("wado-rs")).studies[0]
    assert study.series == () and study.storage is not None
    assert study.storage.http_headers == {"Authorization": "x-pacs-api-key"}


def test_opening_parameters_collapse_previews() -> None:
    body = example("folder")
    body["openingParameters"] = {"collapsePreviews": True}
    assert parse_request(body).opening.collapse_previews is True
    assert parse_request(example("folder")).opening.collapse_previews is False


def test_opening_parameters_survive_the_kept_request() -> None:
    """A resumed import parses the context's copy of the request again."""
    body = example("files")
    body["OpeningParameters"] = {"anonymize": True, "hideDocuments": False,
                                 "annotationVisibility": "user",
                                 "fullPreloadStudy": "1.2.826.123.1"}
    opening = parse_request(body).opening
    assert (opening.anonymize, opening.hide_documents, opening.annotation_visibility,
            opening.full_preload_study) == (True, False, "USER", ("1.2.826.123.1",))
    assert parse_request(parse_request(body).as_json()).opening == opening
    assert parse_request(example("files")).opening.hide_documents is None


def test_unknown_fields_are_ignored_wherever_they_are() -> None:
    body = example("files")
    body["priority"] = 1
    body["studies"][0]["studyInstanceUid"] = "1.2.3"
    body["studies"][0]["series"][0]["instances"][0]["checksum"] = {"sha1": "x"}
    body["openingParameters"] = {"collapse": True}
    request = parse_request(body)
    assert request == parse_request(example("files"))
    folder = example("folder")
    folder["folder"]["recursive"] = True
    assert parse_request(folder).folder == "/storage/studies/study1"


@pytest.mark.parametrize(("change", "field"), [
    (lambda b: b["studies"][0]["series"][2]["instances"][0].pop("file"),
     "studies[0].series[2].instances[0].file"),
    (lambda b: b["studies"][0]["series"][1]["instances"][0].update(mimeType="image/gif"),
     "studies[0].series[1].instances[0].mimeType"),
    (lambda b: b["studies"][0]["series"][0]["instances"][0].update(sopInstanceUID="1.02.3"),
     "studies[0].series[0].instances[0].sopInstanceUID"),
    (lambda b: b["studies"][0]["series"][3].update(seriesInstanceUID="1.2.x"),
     "studies[0].series[3].seriesInstanceUID"),
    (lambda b: b["studies"][0].pop("studyInstanceUID"), "studies[0].studyInstanceUID"),
    (lambda b: b["studies"][0].update(patientBirthDate="19821332"),
     "studies[0].patientBirthDate"),
    (lambda b: b["studies"][0].update(studyTime="25"), "studies[0].studyTime"),
    (lambda b: b["studies"][0].update(patientSex="female"), "studies[0].patientSex"),
    (lambda b: b["studies"][0].update(accessionNumber="A" * 17), "studies[0].accessionNumber"),
    (lambda b: b["studies"][0].update(patientID=123), "studies[0].patientID"),
    (lambda b: b["studies"][0].update(patientName="DOE\\JANE"), "studies[0].patientName"),
    (lambda b: b["studies"][0]["series"][4].update(modality="xc"),
     "studies[0].series[4].modality"),
    (lambda b: b["studies"][0]["series"][0].update(instances=[]),
     "studies[0].series[0].instances"),
    (lambda b: b["studies"][0]["series"][0]["instances"][0].update(slideAlias=["A"]),
     "studies[0].series[0].instances[0].slideAlias"),
    (lambda b: b.update(studies=[]), "studies"),
    (lambda b: b.update(openingParameters={"collapsePreviews": "yes"}),
     "openingParameters.collapsePreviews"),
    (lambda b: b.update(openingParameters={"hideSearch": "false"}),
     "openingParameters.hideSearch"),
    (lambda b: b.update(openingParameters=[]), "openingParameters"),
    (lambda b: b.pop("username"), "username"),
    (lambda b: b.update(role=""), "role"),
    (lambda b: b.update(folder={"path": "/storage"}), "studies"),
])
def test_mistakes_name_their_field(change: Any, field: str) -> None:
    body = example("files")
    change(body)
    error = refused(body)
    assert error.field == field
    assert field in str(error)


@pytest.mark.parametrize(("name", "change", "field"), [
    ("aws-bucket", lambda s: s.update(type="azure-blob"), "studies[0].storage.type"),
    ("aws-bucket", lambda s: s.pop("secretAccessKey"), "studies[0].storage.secretAccessKey"),
    ("aws-bucket", lambda s: s.update(region="EU Central"), "studies[0].storage.region"),
    ("wasabi-bucket", lambda s: s.update(name="Not A Bucket"), "studies[0].storage.name"),
    ("wado-rs", lambda s: s.update(url="ftp://pacs/wado"), "studies[0].storage.url"),
    ("wado-rs", lambda s: s.update(httpHeaders={"Authorization": "a\r\nX: b"}),
     "studies[0].storage.httpHeaders.Authorization"),
    ("wado-uri", lambda s: s.pop("url"), "studies[0].storage.url"),
])
def test_storage_mistakes_name_their_field(name: str, change: Any, field: str) -> None:
    body = example(name)
    change(body["studies"][0]["storage"])
    assert refused(body).field == field


def test_wado_uri_instances_need_their_uid() -> None:
    body = example("wado-uri")
    del body["studies"][0]["series"][0]["instances"][0]["sopInstanceUID"]
    assert refused(body).field == "studies[0].series[0].instances[0].sopInstanceUID"


def test_folder_needs_a_path_and_excludes_studies() -> None:
    assert refused({"username": "u", "role": "r", "folder": {}}).field == "folder.path"
    assert refused({"username": "u", "role": "r"}).field == "studies"
    body = example("folder")
    body["studies"] = example("files")["studies"]
    assert refused(body).field == "studies"


def test_the_same_instance_twice_is_refused() -> None:
    body = example("files")
    series = body["studies"][0]["series"]
    series[1]["instances"][0]["sopInstanceUID"] = series[0]["instances"][0]["sopInstanceUID"]
    assert refused(body).field == "studies[0].series[1].instances[0].sopInstanceUID"


@pytest.mark.parametrize("text", [b"", b"{", b"[]", b'"x"', b"\xff\xfe", b"null"])
def test_a_body_that_is_not_a_json_object_is_refused(text: bytes) -> None:
    with pytest.raises(InvalidInput):
        parse_body(text)


def test_the_kept_request_carries_no_secret() -> None:
    token, private_key = service_account_token()
    bodies = [example("aws-bucket", accessKey="AKIAEXAMPLE", secretAccessKey="s3cr3t-value"),
              example("google-bucket", token=token), example("wado-rs")]
    for body in bodies:
        request = parse_request(body)
        kept = json.dumps(request.as_json())
        assert request.secrets()
        for secret in request.secrets():
            assert secret not in kept
        assert secret not in repr(request)
    assert "BEGIN PRIVATE KEY" not in json.dumps(parse_request(bodies[1]).as_json())
    assert private_key not in repr(parse_request(bodies[1]))


def test_a_non_dicom_slide_needs_its_container_identifier() -> None:
    body = example("non-dicom-wsi")
    del body["studies"][0]["series"][0]["instances"][0]["containerIdentifier"]
    assert refused(body).field == "studies[0].series[0].instances[0].containerIdentifier"
