"""GET /webdv/getIso and `python -m node iso`: DICOM media that pass the validators, streamed.

A node process of its own serves two studies (a CT with a non-ASCII patient name and one
Implicit VR instance, plus a Basic Text SR; then a JPEG secondary capture and an encapsulated PDF,
both with an empty Study ID) and a stand-in viewer folder. The ISO it streams is extracted with
osirrox and checked with dciodvfy, dcmdump, dcmmkdir, isoinfo and pydicom.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.dom.minidom
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.fileset import FileSet
from pydicom.uid import (
    UID,
    BasicTextSRStorage,
    CTImageStorage,
    EncapsulatedPDFStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
)

from dicomdir.content import BytesContent, FileRange, MediumFile
from dicomdir.file_ids import is_conformant_component
from dicomdir.iso_image import FOUR_GIB, build_iso
from dicomdir.medium import MediumOptions, build_medium
from dicomdir.profiles import CD_BYTES, DVD_BYTES, choose_profile
from dicomdir.records import generated_study_id
from dicomdir.selection import select_studies
from node.config import load_config
from node.process.runtime import open_services
from tests.factory import StudySpec, make_instance, uid, write_jpeg_instance, write_study
from tests.media_files import pdf_bytes
from tests.peers import NodeProcess, OrthancProcess, dcmtk

STUDY_CT = uid(7001)
STUDY_DOCS = uid(7002)
STUDY_BIG = uid(7003)
UNKNOWN_STUDY = uid(7999)
CT_PATIENT = "Müller^Jörg"


# -- test data -------------------------------------------------------------------------------


def _meta(ds: Dataset, syntax: str = ExplicitVRLittleEndian) -> None:
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = UID(syntax)


def _patient_study(ds: Dataset, spec: StudySpec, series_uid: str, modality: str) -> None:
    if spec.charset:
        ds.SpecificCharacterSet = spec.charset
    ds.StudyInstanceUID = spec.study_uid
    ds.SeriesInstanceUID = series_uid
    ds.PatientID = spec.patient_id
    ds.PatientName = spec.patient_name
    ds.PatientBirthDate = spec.birth_date
    ds.PatientSex = spec.sex
    ds.StudyDate = spec.study_date
    ds.StudyTime = "101500"
    ds.AccessionNumber = spec.accession
    ds.StudyID = "1"
    ds.ReferringPhysicianName = ""
    ds.Modality = modality
    ds.Manufacturer = ""


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def write_basic_text_sr(path: Path, spec: StudySpec) -> Dataset:
    """A tiny Basic Text SR: one language modifier (HAS CONCEPT MOD) and one finding."""
    ds = Dataset()
    ds.SOPClassUID = BasicTextSRStorage
    ds.SOPInstanceUID = spec.study_uid + ".80.1"
    _patient_study(ds, spec, spec.study_uid + ".80", "SR")
    ds.SeriesNumber = 80
    ds.InstanceNumber = 1
    ds.ContentDate = spec.study_date
    ds.ContentTime = "110000"
    ds.ValueType = "CONTAINER"
    ds.ContinuityOfContent = "SEPARATE"
    ds.ConceptNameCodeSequence = [_code("18748-4", "LN", "Diagnostic imaging report")]
    ds.CompletionFlag = "COMPLETE"
    ds.VerificationFlag = "UNVERIFIED"
    language = Dataset()
    language.RelationshipType = "HAS CONCEPT MOD"
    language.ValueType = "CODE"
    language.ConceptNameCodeSequence = [
        _code("121049", "DCM", "Language of Content Item and Descendants")]
    language.ConceptCodeSequence = [_code("de", "RFC5646", "German")]
    finding = Dataset()
    finding.RelationshipType = "CONTAINS"
    finding.ValueType = "TEXT"
    finding.ConceptNameCodeSequence = [_code("121071", "DCM", "Finding")]
    finding.TextValue = "Kein Befund. Größe unauffällig."
    ds.ContentSequence = [language, finding]
    ds.ReferencedPerformedProcedureStepSequence = []
    ds.PerformedProcedureCodeSequence = []
    _meta(ds)
    ds.save_as(path, enforce_file_format=True)
    return ds


def write_encapsulated_pdf(path: Path, spec: StudySpec) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = EncapsulatedPDFStorage
    ds.SOPInstanceUID = spec.study_uid + ".81.1"
    _patient_study(ds, spec, spec.study_uid + ".81", "DOC")
    ds.StudyID = ""
    ds.SeriesNumber = 81
    ds.InstanceNumber = 1
    ds.ContentDate = spec.study_date
    ds.ContentTime = "120000"
    ds.AcquisitionDateTime = ""
    ds.BurnedInAnnotation = "YES"
    ds.DocumentTitle = "Discharge letter"
    ds.ConceptNameCodeSequence = []
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    body = pdf_bytes("discharge")
    ds.EncapsulatedDocumentLength = len(body)
    ds.EncapsulatedDocument = body if len(body) % 2 == 0 else body + b"\0"
    _meta(ds)
    ds.save_as(path, enforce_file_format=True)
    return ds


def write_media_studies(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    ct = StudySpec(patient_id="PID7001", patient_name=CT_PATIENT, study_uid=STUDY_CT,
                   charset="ISO_IR 100", instances_per_series=3, study_description="CT THORAX")
    paths = []
    for i in range(3):
        path = folder / f"ct{i}.dcm"
        make_instance(ct, 0, i).save_as(path, enforce_file_format=True)
        paths.append(path)
    implicit = make_instance(ct, 1, 0, transfer_syntax=ImplicitVRLittleEndian)
    paths.append(folder / "implicit.dcm")
    implicit.save_as(paths[-1], enforce_file_format=True, implicit_vr=True)
    paths.append(folder / "sr.dcm")
    write_basic_text_sr(paths[-1], ct)

    docs = StudySpec(patient_id="PID7002", patient_name="ROE^RICHARD", study_uid=STUDY_DOCS,
                     study_date="20240210", accession="ACC7002", study_description="DOCS")
    paths.append(folder / "jpeg.dcm")
    jpeg = write_jpeg_instance(paths[-1], docs)
    jpeg.StudyID = ""
    jpeg.save_as(paths[-1], enforce_file_format=True)
    paths.append(folder / "pdf.dcm")
    write_encapsulated_pdf(paths[-1], docs)
    return paths


BIG_ROWS = BIG_COLUMNS = 5000  # 50 MB per 16-bit frame
BIG_INSTANCES = 20


def write_big_study(folder: Path) -> list[Path]:
    """About 1 GB: 20 CT instances of 50 MB each; the pixel data is a sparse run of zeros, so
    writing them costs nothing but their headers."""
    folder.mkdir(parents=True, exist_ok=True)
    spec = StudySpec(patient_id="PID7003", patient_name="BIG^STUDY", study_uid=STUDY_BIG,
                     rows=2, columns=2)
    paths = []
    for i in range(BIG_INSTANCES):
        ds = make_instance(spec, 0, i)
        ds.Rows, ds.Columns = BIG_ROWS, BIG_COLUMNS
        pixel_bytes = BIG_ROWS * BIG_COLUMNS * 2
        del ds.PixelData
        path = folder / f"big{i}.dcm"
        ds.save_as(path, enforce_file_format=True)
        with path.open("ab") as out:
            # (7FE0,0010) OW, then the value as a hole.
            out.write(b"\xe0\x7f\x10\x00OW\x00\x00" + pixel_bytes.to_bytes(4, "little"))
            out.truncate(out.tell() + pixel_bytes)
        paths.append(path)
    return paths


def make_viewer(folder: Path) -> Path:
    """A stand-in for a portable viewer: executables per platform, long names, nested folders."""
    (folder / "viewer-mac.app" / "Contents" / "MacOS").mkdir(parents=True)
    (folder / "viewer-mac.app" / "Contents" / "MacOS" / "viewer").write_text("#!/bin/sh\n")
    (folder / "viewer-win32.exe").write_bytes(b"MZ stand-in")
    linux = folder / "viewer-linux.sh"
    linux.write_text("#!/bin/sh\necho \"$1\"\n")
    linux.chmod(0o755)
    (folder / "lib").mkdir()
    (folder / "lib" / "weasis-core-img-4.5.1-with-a-long-name.jar").write_bytes(b"PK\3\4")
    (folder / "conf").mkdir()
    (folder / "conf" / "config.properties").write_text("weasis.portable=true\n")
    return folder


async def _ingest(config_path: Path, files: list[Path]) -> None:
    config = load_config(config_path)
    async with open_services(config) as services:
        for path in files:
            await services.ingestor.ingest_copy(path, "import")


# -- peers and HTTP --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="module")
def iso_node(media_dir: Path) -> Iterator[NodeProcess]:
    """A node of its own (its own media settings), with the two media studies stored."""
    viewer = make_viewer(media_dir / "viewer")
    peer = NodeProcess(media_dir / "node", extra={
        "storage": {"fsync": False},
        "media": {"viewer_dir": str(viewer), "max_iso_bytes": 2_000_000_000},
    })
    peer.write_config()
    asyncio.run(_ingest(peer.config_path, write_media_studies(media_dir / "source")))
    peer.start()
    yield peer
    peer.stop()


@pytest.fixture(scope="module")
def tiny_node(media_dir: Path, iso_node: NodeProcess) -> Iterator[NodeProcess]:
    """A second node on the same index and storage whose ISO size limit is tiny."""
    peer = NodeProcess(media_dir / "tiny", extra={
        "node": {"data_dir": str(iso_node.data_dir)},
        "storage": {"fsync": False},
        "media": {"max_iso_bytes": 50_000},
    }).start()
    yield peer
    peer.stop()


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def get(node: NodeProcess, query: list[tuple[str, str]], key: str | None = "default"
        ) -> Answer:
    url = f"{node.http_url}/webdv/getIso?{urllib.parse.urlencode(query)}"
    request = urllib.request.Request(url)
    if key is not None:
        request.add_header("Authorization", node.api_key if key == "default" else key)
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return Answer(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as exc:
        return Answer(exc.code, dict(exc.headers), exc.read())


def extract(iso: Path, target: Path) -> Path:
    result = subprocess.run(["osirrox", "-indev", str(iso), "-extract", "/", str(target)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return target


@dataclass
class Medium:
    answer: Answer
    iso: Path
    root: Path


@pytest.fixture(scope="module")
def medium(iso_node: NodeProcess, media_dir: Path) -> Medium:
    answer = get(iso_node, [("studyUID", STUDY_CT), ("studyUID", STUDY_DOCS)])
    assert answer.status == 200, answer.body[:500]
    iso = media_dir / "two-studies.iso"
    iso.write_bytes(answer.body)
    return Medium(answer, iso, extract(iso, media_dir / "extracted"))


def dicom_files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in (root / "DICOM").rglob("*") if p.is_file()}


def referenced(root: Path) -> dict[str, Dataset]:
    """File ID -> directory record, for every record that references a file."""
    found = {}
    for record in dcmread(root / "DICOMDIR").DirectoryRecordSequence:
        if "ReferencedFileID" in record:
            found["/".join(record.ReferencedFileID)] = record
    return found


# -- the medium passes the validators --------------------------------------------------------


def test_response_is_an_attachment_with_exact_length(medium: Medium) -> None:
    headers = medium.answer.headers
    assert headers["Content-Type"] == "application/x-iso9660-image"
    assert re.fullmatch(r'attachment; filename="DICOM_[0-9A-F]{10}\.iso"',
                        headers["Content-Disposition"])
    assert int(headers["Content-Length"]) == len(medium.answer.body)
    assert len(medium.answer.body) % 2048 == 0
    assert headers["X-Media-Profile"] == "STD-GEN-DVD-JPEG"


def test_volume_identifier_is_the_file_set_id(medium: Medium) -> None:
    info = subprocess.run(["isoinfo", "-d", "-i", str(medium.iso)], capture_output=True,
                          text=True, check=True).stdout
    volume = re.search(r"^Volume id: (\S+)", info, re.MULTILINE)
    assert volume is not None
    assert volume.group(1) == dcmread(medium.root / "DICOMDIR").FileSetID
    assert "Joliet" in info and "Rock Ridge" in info


def test_dciodvfy_finds_no_error_in_dicomdir(medium: Medium) -> None:
    result = subprocess.run(["dciodvfy", str(medium.root / "DICOMDIR")], capture_output=True,
                            text=True, timeout=60)
    output = result.stdout + result.stderr
    assert "BasicDirectory" in output
    assert not [line for line in output.splitlines() if line.startswith("Error")], output


def test_dcmdump_reads_dicomdir(medium: Medium) -> None:
    # dcmdump prints values in their own character set (here Latin-1).
    result = subprocess.run(["dcmdump", str(medium.root / "DICOMDIR")], capture_output=True,
                            text=True, errors="replace", timeout=60)
    assert result.returncode == 0, result.stderr
    assert "MediaStorageDirectoryStorage" in result.stdout
    for record_type in ("PATIENT", "STUDY", "SERIES", "IMAGE", "SR DOCUMENT", "ENCAP DOC"):
        assert f"[{record_type}]" in result.stdout


def test_dcmmkdir_accepts_every_file_with_the_matching_profile(
    medium: Medium, tmp_path: Path
) -> None:
    files = sorted(referenced(medium.root))
    # +I: Study ID is empty in two of the files, which DCMTK (like us) then invents.
    result = dcmtk("dcmmkdir", "-Pdv", "+I", "+D", str(tmp_path / "DICOMDIR"),
                   "+id", str(medium.root), *files)
    assert result.returncode == 0, result.stderr
    assert "cannot be added" not in result.stderr and "E:" not in result.stderr, result.stderr
    # The JPEG file is why the medium is STD-GEN-DVD-JPEG: STD-GEN-CD refuses it.
    strict = dcmtk("dcmmkdir", "-Pgp", "+I", "+D", str(tmp_path / "DICOMDIR.cd"),
                   "+id", str(medium.root), *files)
    assert "JPEGBaseline found" in strict.stderr


def test_isoinfo_lists_only_conformant_names_in_the_dicom_tree(medium: Medium) -> None:
    listing = subprocess.run(["isoinfo", "-l", "-i", str(medium.iso)], capture_output=True,
                             text=True, check=True).stdout
    directory = ""
    names = []
    for line in listing.splitlines():
        if line.startswith("Directory listing of "):
            directory = line.removeprefix("Directory listing of ").strip()
        elif directory.startswith("/DICOM/") and line.strip():
            name = line.split()[-1]
            if name not in (".", ".."):
                names.append(name)
    assert len(names) >= 7 + 4 + 2  # files, series, studies, patients
    for name in names:
        plain = name.removesuffix(";1").removesuffix(".")
        assert is_conformant_component(plain), name
        assert name in (plain, f"{plain}.;1"), name


def test_pydicom_fileset_reads_every_record_and_uids_match(medium: Medium) -> None:
    fileset = FileSet(dcmread(medium.root / "DICOMDIR"))
    instances = list(fileset)
    assert len(instances) == 7
    for instance in instances:
        ds = instance.load()
        assert ds.SOPInstanceUID == instance.ReferencedSOPInstanceUIDInFile
        assert ds.SOPClassUID == instance.ReferencedSOPClassUIDInFile
        assert ds.file_meta.TransferSyntaxUID == instance.ReferencedTransferSyntaxUIDInFile
    assert {i.StudyInstanceUID for i in instances} == {STUDY_CT, STUDY_DOCS}


def test_every_dicom_file_is_referenced_exactly_once(medium: Medium) -> None:
    records = [r for r in dcmread(medium.root / "DICOMDIR").DirectoryRecordSequence
               if "ReferencedFileID" in r]
    file_ids = ["/".join(r.ReferencedFileID) for r in records]
    assert len(file_ids) == len(set(file_ids))
    assert set(file_ids) == dicom_files(medium.root)


def test_records_by_sop_class(medium: Medium) -> None:
    types = {dcmread(medium.root / fid).SOPClassUID: rec.DirectoryRecordType
             for fid, rec in referenced(medium.root).items()}
    assert types[CTImageStorage] == "IMAGE"
    assert types[BasicTextSRStorage] == "SR DOCUMENT"
    assert types[EncapsulatedPDFStorage] == "ENCAP DOC"


def test_non_ascii_names_carry_their_character_set(medium: Medium) -> None:
    dicomdir = dcmread(medium.root / "DICOMDIR")
    patients = {str(r.PatientID): r for r in dicomdir.DirectoryRecordSequence
                if r.DirectoryRecordType == "PATIENT"}
    assert set(patients) == {"PID7001", "PID7002"}
    assert patients["PID7001"].SpecificCharacterSet == "ISO_IR 100"
    assert str(patients["PID7001"].PatientName) == CT_PATIENT
    assert "SpecificCharacterSet" not in patients["PID7002"]
    raw = (medium.root / "DICOMDIR").read_bytes()
    assert CT_PATIENT.encode("latin-1") in raw


def test_empty_study_id_is_generated_from_the_study_uid(medium: Medium) -> None:
    studies = {str(r.StudyInstanceUID): r for r in dcmread(
        medium.root / "DICOMDIR").DirectoryRecordSequence if r.DirectoryRecordType == "STUDY"}
    assert studies[STUDY_CT].StudyID == "1"
    assert studies[STUDY_DOCS].StudyID == generated_study_id(STUDY_DOCS)


def test_sr_record_keeps_only_concept_modifiers(medium: Medium) -> None:
    (sr,) = [r for r in dcmread(medium.root / "DICOMDIR").DirectoryRecordSequence
             if r.DirectoryRecordType == "SR DOCUMENT"]
    assert [i.RelationshipType for i in sr.ContentSequence] == ["HAS CONCEPT MOD"]
    assert sr.CompletionFlag == "COMPLETE"
    assert sr.ConceptNameCodeSequence[0].CodeValue == "18748-4"


def test_implicit_vr_instance_is_rewritten_explicit_with_the_same_pixels(
    medium: Medium, media_dir: Path
) -> None:
    source = dcmread(media_dir / "source" / "implicit.dcm")
    (file_id,) = [fid for fid, rec in referenced(medium.root).items()
                  if rec.ReferencedSOPInstanceUIDInFile == source.SOPInstanceUID]
    copy = dcmread(medium.root / file_id)
    assert source.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
    assert copy.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert np.array_equal(copy.pixel_array, source.pixel_array)
    assert all(copy[e.tag].value == e.value for e in source)
    jpeg = [rec for rec in referenced(medium.root).values()
            if rec.ReferencedTransferSyntaxUIDInFile == JPEGBaseline8Bit]
    assert len(jpeg) == 1  # kept as stored: the profile allows it


def test_pdi_pages_and_previews(medium: Medium) -> None:
    index = medium.root / "INDEX.HTM"
    xml.dom.minidom.parse(str(index))
    text = index.read_text(encoding="utf-8")
    assert "Müller, Jörg" in text
    pages = re.findall(r'href="(IHE_PDI/[A-Z0-9_]+\.HTM)"', text)
    assert len(pages) == 2
    previews = []
    for page in pages:
        xml.dom.minidom.parse(str(medium.root / page))
        previews += re.findall(r'src="([A-Z0-9_]+\.JPG)"',
                               (medium.root / page).read_text(encoding="utf-8"))
    assert len(previews) == 3  # two CT series and the JPEG series; none for SR and PDF
    for name in previews:
        with Image.open(medium.root / "IHE_PDI" / name) as image:
            assert image.format == "JPEG"
            assert max(image.size) <= 256
    readme = (medium.root / "README.TXT").read_bytes()
    assert readme.isascii()
    assert b"STD-GEN-DVD-JPEG" in readme and b"VIEWER" in readme


def test_viewer_folder_keeps_long_names_and_launchers_open_dicomdir(medium: Medium) -> None:
    viewer = medium.root / "VIEWER"
    assert (viewer / "lib" / "weasis-core-img-4.5.1-with-a-long-name.jar").is_file()
    assert (viewer / "viewer-mac.app" / "Contents" / "MacOS" / "viewer").is_file()
    assert os.access(viewer / "viewer-linux.sh", os.X_OK)
    assert not os.access(viewer / "conf" / "config.properties", os.X_OK)
    autorun = (medium.root / "AUTORUN.INF").read_text()
    assert "shellexecute=START.BAT" in autorun
    assert "VIEWER\\viewer-win32.exe" in (medium.root / "START.BAT").read_text()
    assert "viewer-mac.app" in (medium.root / "START.COMMAND").read_text()
    linux = medium.root / "START.SH"
    assert os.access(linux, os.X_OK)
    run = subprocess.run([str(linux)], capture_output=True, text=True, timeout=10)
    # [media] viewer_arguments' default: Weasis's command for the medium's DICOM folder.
    assert run.stdout.strip() == f'$dicom:get -l "{medium.root / "DICOM"}"'


def test_uncompressed_study_gets_std_gen_cd(iso_node: NodeProcess, tmp_path: Path) -> None:
    answer = get(iso_node, [("studyUID", STUDY_CT)])
    assert answer.status == 200
    assert answer.headers["X-Media-Profile"] == "STD-GEN-CD"
    (tmp_path / "ct.iso").write_bytes(answer.body)
    root = extract(tmp_path / "ct.iso", tmp_path / "ct")
    files = sorted(referenced(root))
    assert {r.ReferencedTransferSyntaxUIDInFile for r in referenced(root).values()} == {
        ExplicitVRLittleEndian}
    result = dcmtk("dcmmkdir", "-Pgp", "+D", str(tmp_path / "DICOMDIR"), "+id", str(root),
                   *files)
    assert result.returncode == 0 and "E:" not in result.stderr, result.stderr


def test_requested_profile_decompresses_what_it_does_not_allow(
    iso_node: NodeProcess, tmp_path: Path
) -> None:
    answer = get(iso_node, [("studyUID", STUDY_DOCS), ("profile", "STD-GEN-CD")])
    assert answer.status == 200, answer.body[:300]
    assert answer.headers["X-Media-Profile"] == "STD-GEN-CD"
    (tmp_path / "cd.iso").write_bytes(answer.body)
    root = extract(tmp_path / "cd.iso", tmp_path / "cd")
    records = referenced(root)
    assert {r.ReferencedTransferSyntaxUIDInFile for r in records.values()} == {
        ExplicitVRLittleEndian}
    (image,) = [fid for fid, r in records.items() if r.DirectoryRecordType == "IMAGE"]
    decompressed = dcmread(root / image)
    assert decompressed.LossyImageCompression == "01"
    assert decompressed.pixel_array.shape == (64, 64)


def test_cli_writes_the_same_medium(iso_node: NodeProcess, medium: Medium,
                                    tmp_path: Path) -> None:
    out = tmp_path / "cli.iso"
    result = iso_node.cli("iso", "--study", STUDY_CT, STUDY_DOCS, "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert out.stat().st_size == len(medium.answer.body)
    assert "100%" in result.stderr  # the progress bar reached the end
    root = extract(out, tmp_path / "cli")
    assert dicom_files(root) == dicom_files(medium.root)


# -- errors ----------------------------------------------------------------------------------


def test_missing_study_uid_is_400_naming_it(iso_node: NodeProcess) -> None:
    answer = get(iso_node, [])
    assert answer.status == 400
    assert answer.json()["field"] == "studyUID"


def test_malformed_study_uid_is_400(iso_node: NodeProcess) -> None:
    answer = get(iso_node, [("studyUID", "1.2.abc")])
    assert answer.status == 400
    assert answer.json()["field"] == "studyUID"


def test_unknown_profile_is_400(iso_node: NodeProcess) -> None:
    answer = get(iso_node, [("studyUID", STUDY_CT), ("profile", "STD-GEN-FLOPPY")])
    assert answer.status == 400
    assert answer.json()["field"] == "profile"


def test_unknown_study_is_404_naming_it(iso_node: NodeProcess) -> None:
    answer = get(iso_node, [("studyUID", STUDY_CT), ("studyUID", UNKNOWN_STUDY)])
    assert answer.status == 404
    error = answer.json()["error"]
    assert UNKNOWN_STUDY in error and STUDY_CT not in error


def test_no_api_key_is_401(iso_node: NodeProcess) -> None:
    assert get(iso_node, [("studyUID", STUDY_CT)], key=None).status == 401
    assert get(iso_node, [("studyUID", STUDY_CT)], key="wrong").status == 401


def test_over_the_size_limit_is_413_with_the_size(tiny_node: NodeProcess) -> None:
    answer = get(tiny_node, [("studyUID", STUDY_CT)])
    assert answer.status == 413
    body = answer.json()
    assert body["limit"] == 50_000 and body["size"] > 50_000
    assert str(body["size"]) in body["error"]


# -- streaming -------------------------------------------------------------------------------


def _rss_kib(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


@pytest.fixture(scope="module")
def big_study(iso_node: NodeProcess, media_dir: Path) -> str:
    files = write_big_study(media_dir / "big")
    asyncio.run(_ingest(iso_node.config_path, files))
    for path in files:
        path.unlink()
    return STUDY_BIG


def test_a_1gb_study_streams_with_flat_memory(iso_node: NodeProcess, big_study: str) -> None:
    assert iso_node.proc is not None
    pid = iso_node.proc.pid
    before = _rss_kib(pid)
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # restart the peak (VmHWM) from here
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_kib(pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    request = urllib.request.Request(
        f"{iso_node.http_url}/webdv/getIso?studyUID={big_study}",
        headers={"Authorization": iso_node.api_key})
    received = 0
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            length = int(response.headers["Content-Length"])
            while chunk := response.read(1 << 20):
                received += len(chunk)
    finally:
        done.set()
        sampler.join()
    peak_kib = max(peak[0], _rss_kib(pid, "VmHWM"))
    assert length > BIG_INSTANCES * BIG_ROWS * BIG_COLUMNS * 2
    assert received == length
    print(f"RSS before {before // 1024} MB, peak {peak_kib // 1024} MB, {length} bytes")
    assert (peak_kib - before) < 100 * 1024, f"RSS grew by {(peak_kib - before) // 1024} MB"


# -- in-process layout -----------------------------------------------------------------------


def test_empty_numbers_are_generated_the_same_way_each_time(tmp_path: Path) -> None:
    spec = StudySpec(patient_id="", patient_name="NOBODY", study_uid=uid(7010),
                     instances_per_series=3)
    paths = []
    for i in range(3):
        ds = make_instance(spec, 0, i)
        ds.SeriesNumber = None
        ds.InstanceNumber = None if i != 1 else 7
        ds.StudyID = None
        paths.append(tmp_path / f"{i}.dcm")
        ds.save_as(paths[-1], enforce_file_format=True)
    config_path = tmp_path / "node.toml"
    config_path.write_text(f'[node]\ndata_dir = "{tmp_path / "data"}"\n[storage]\nfsync = false\n')
    asyncio.run(_ingest(config_path, paths))

    async def layout() -> bytes:
        config = load_config(config_path)
        async with open_services(config) as services:
            selection = await select_studies(services.sessions, services.storage, [spec.study_uid])
        with build_medium(selection, MediumOptions(previews=False)) as built:
            dicomdir = built.files[0]
            assert dicomdir.path == ("DICOMDIR",)
            return b"".join(dicomdir.content.chunks())

    first, second = asyncio.run(layout()), asyncio.run(layout())
    assert first == second
    (tmp_path / "DICOMDIR").write_bytes(first)
    records = dcmread(tmp_path / "DICOMDIR").DirectoryRecordSequence
    by_type: dict[str, list[Dataset]] = {}
    for record in records:
        by_type.setdefault(record.DirectoryRecordType, []).append(record)
    assert by_type["PATIENT"][0].PatientID.startswith("NOID")
    assert by_type["STUDY"][0].StudyID == generated_study_id(spec.study_uid)
    assert by_type["SERIES"][0].SeriesNumber == 1
    assert [int(r.InstanceNumber) for r in by_type["IMAGE"]] == [7, 8, 9]


def test_studies_without_patient_id_are_patients_of_their_own(tmp_path: Path) -> None:
    """Two studies without Patient ID, of the same name and birth date, are not joined into one
    patient on the medium: each gets a PATIENT record and a generated ID of its own."""
    specs = [StudySpec(patient_id="", patient_name="SAME^NAME", study_uid=uid(7020 + i),
                       instances_per_series=1) for i in range(2)]
    paths = []
    for spec in specs:
        paths.append(tmp_path / f"{spec.study_uid}.dcm")
        make_instance(spec, 0, 0).save_as(paths[-1], enforce_file_format=True)
    config_path = tmp_path / "node.toml"
    config_path.write_text(f'[node]\ndata_dir = "{tmp_path / "data"}"\n[storage]\nfsync = false\n')
    asyncio.run(_ingest(config_path, paths))

    async def dicomdir() -> bytes:
        async with open_services(load_config(config_path)) as services:
            selection = await select_studies(services.sessions, services.storage,
                                             [spec.study_uid for spec in specs])
        with build_medium(selection, MediumOptions(previews=False)) as built:
            return b"".join(built.files[0].content.chunks())

    (tmp_path / "DICOMDIR").write_bytes(asyncio.run(dicomdir()))
    records = dcmread(tmp_path / "DICOMDIR").DirectoryRecordSequence
    patients = [r for r in records if r.DirectoryRecordType == "PATIENT"]
    assert len(patients) == 2
    assert len({p.PatientID for p in patients}) == 2


def test_media_tools_are_installed() -> None:
    for tool in ("osirrox", "isoinfo", "dciodvfy", "dcmmkdir", "dcmdump"):
        assert shutil.which(tool), f"{tool} is missing: run ./manage.sh test to install it"


def test_a_file_of_4_gib_or_more_is_stored_at_level_3(tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    with big.open("wb") as out:
        out.truncate(FOUR_GIB + 4096)  # a hole: nothing is written
    image = build_iso([MediumFile(("README.TXT",), BytesContent(b"hello\r\n")),
                       MediumFile(("DATA", "BIG.BIN"), FileRange.whole(big)),
                       MediumFile(("DATA", "TAIL.TXT"), BytesContent(b"tail"))], "LEVEL_3")
    assert image.interchange_level == 3
    iso = tmp_path / "level3.iso"
    with iso.open("wb") as out:
        # The big file is zeros: writing the other pieces at their offsets is the whole image.
        for piece in image.pieces:
            if not isinstance(piece.content, FileRange):
                out.seek(piece.offset)
                out.write(b"".join(piece.content.chunks()))
        out.truncate(image.size)
    listing = subprocess.run(["osirrox", "-indev", str(iso), "-find", "/", "-exec", "lsdl"],
                             capture_output=True, text=True, timeout=60).stdout
    sizes = {line.split()[-1].strip("'"): int(line.split()[4]) for line in listing.splitlines()
             if line.startswith("-")}
    assert sizes == {"/DATA/BIG.BIN": FOUR_GIB + 4096, "/DATA/TAIL.TXT": 4, "/README.TXT": 7}
    # The big file in extents of less than 4 GiB each, one after the other from where the
    # image puts its bytes, all inside the image (what extracting its 4 GiB of zeros, 12 s,
    # would find out).
    report = subprocess.run(["osirrox", "-indev", str(iso), "-find", "/DATA/BIG.BIN", "-exec",
                             "report_lba"], capture_output=True, text=True, timeout=60).stdout
    extents = [(int(m[1]), int(m[2])) for m in re.finditer(
        r"File data lba:\s*\d+ ,\s*(\d+) ,\s*(\d+) ,", report)]
    [placed] = [p.offset for p in image.pieces if isinstance(p.content, FileRange)]
    assert len(extents) == 2 and extents[0][0] * 2048 == placed, report
    assert extents[0][0] + extents[0][1] == extents[1][0], report
    assert (extents[1][0] + extents[1][1]) * 2048 <= image.size, report
    out = tmp_path / "TAIL.TXT"
    result = subprocess.run(["osirrox", "-indev", str(iso), "-extract", "/DATA/TAIL.TXT",
                             str(out)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == b"tail"


# -- retrieval from a source node ------------------------------------------------------------


def test_a_study_only_on_a_source_node_is_retrieved_first(
    node: NodeProcess, orthanc: OrthancProcess, tmp_path: Path
) -> None:
    remote = StudySpec(study_uid=uid(7020), patient_id="PID7020", instances_per_series=2)
    for path in write_study(tmp_path / "remote", remote):
        orthanc.upload(path)
    answer = get(node, [("studyUID", remote.study_uid)])
    assert answer.status == 200, answer.body[:300]
    (tmp_path / "remote.iso").write_bytes(answer.body)
    root = extract(tmp_path / "remote.iso", tmp_path / "remote-medium")
    uids = {str(r.ReferencedSOPInstanceUIDInFile) for r in referenced(root).values()}
    assert uids == {f"{remote.study_uid}.1.1", f"{remote.study_uid}.1.2"}
    assert get(node, [("studyUID", UNKNOWN_STUDY)]).status == 404


# -- profile choice --------------------------------------------------------------------------


def test_profile_is_chosen_by_content_and_size() -> None:
    explicit, implicit = ExplicitVRLittleEndian, ImplicitVRLittleEndian
    assert choose_profile([explicit, implicit]).name == "STD-GEN-CD"
    assert choose_profile([explicit], size=CD_BYTES + 1).name == "STD-GEN-DVD-JPEG"
    assert choose_profile([explicit, JPEGBaseline8Bit]).name == "STD-GEN-DVD-JPEG"
    assert choose_profile([JPEG2000Lossless, explicit]).name == "STD-GEN-DVD-J2K"
    assert choose_profile([JPEGBaseline8Bit], size=DVD_BYTES + 1).name == "STD-GEN-BD-JPEG"
    # No profile allows both: the one allowing most wins, the rest is decompressed.
    assert choose_profile([JPEG2000Lossless] * 2 + [JPEGBaseline8Bit]).name == "STD-GEN-DVD-J2K"
