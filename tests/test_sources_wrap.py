"""Non-DICOM files made DICOM, and the request's data written into DICOM files: what is kept
byte for byte, what is converted, and that dciodvfy finds the objects valid."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.uid import (
    HEVCM10P51,
    MPEG4HP41,
    MPEG4HP422D,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
)

from node.errors import InvalidInput
from node.sources.mp4 import video_info
from node.sources.non_dicom_wrapping import wrap
from node.sources.rewrite import rewrite
from tests.factory import StudySpec, make_instance, uid
from tests.media_files import image_bytes, mp4_bytes, pdf_bytes

VALUES = {
    "StudyInstanceUID": "1.2.826.123.1", "SeriesInstanceUID": "1.2.826.123.1.2",
    "SOPInstanceUID": "1.2.826.123.1.2.1", "PatientID": "PID-123", "PatientName": "DOE^JANE",
    "PatientBirthDate": "19821108", "PatientSex": "F", "AccessionNumber": "AN-123",
    "StudyDate": "20231205", "StudyTime": "123000.000", "SeriesDescription": "JPEG",
}


def wrapped(kind: str, data: bytes, **extra: str) -> tuple[bytes, Dataset]:
    out = io.BytesIO()
    wrap(kind, io.BufferedReader(io.BytesIO(data)), out, {**VALUES, **extra})
    return out.getvalue(), dcmread(io.BytesIO(out.getvalue()))


def dciodvfy_errors(tmp_path: Path, data: bytes) -> list[str]:
    path = tmp_path / "object.dcm"
    path.write_bytes(data)
    result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (result.stdout + result.stderr).splitlines()
            if line.startswith("Error")]


def test_a_baseline_jpeg_is_encapsulated_unchanged(tmp_path: Path) -> None:
    jpeg = image_bytes("JPEG")
    data, ds = wrapped("jpeg", jpeg)
    assert ds.file_meta.TransferSyntaxUID == JPEGBaseline8Bit
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7"
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    assert frame.rstrip(b"\x00") == jpeg.rstrip(b"\x00")
    assert (ds.Rows, ds.Columns, ds.SamplesPerPixel) == (32, 48, 3)
    assert ds.PhotometricInterpretation == "YBR_FULL_422"
    assert (ds.PatientName, ds.StudyInstanceUID, ds.Modality) == ("DOE^JANE", "1.2.826.123.1",
                                                                  "OT")
    assert ds.pixel_array.shape == (32, 48, 3)
    assert dciodvfy_errors(tmp_path, data) == []


def test_a_progressive_jpeg_is_re_encoded_as_baseline() -> None:
    _, ds = wrapped("jpeg", image_bytes("JPEG", progressive=True))
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    assert frame[:2] == b"\xff\xd8" and Image.open(io.BytesIO(frame)).info.get(
        "progressive") is None
    assert ds.pixel_array.shape == (32, 48, 3)


@pytest.mark.parametrize(("fmt", "mode", "photometric", "dtype"), [
    ("PNG", "RGB", "RGB", np.uint8), ("PNG", "L", "MONOCHROME2", np.uint8),
    ("PNG", "I;16", "MONOCHROME2", np.uint16), ("PNG", "RGBA", "RGB", np.uint8),
    ("PNG", "P", "RGB", np.uint8), ("BMP", "RGB", "RGB", np.uint8),
])
def test_png_and_bmp_keep_every_pixel(tmp_path: Path, fmt: str, mode: str, photometric: str,
                                      dtype: type) -> None:
    source = image_bytes(fmt, mode=mode)
    data, ds = wrapped(fmt.lower(), source)
    assert ds.PhotometricInterpretation == photometric
    expected = np.asarray(Image.open(io.BytesIO(source)).convert(
        "RGB" if photometric == "RGB" else Image.open(io.BytesIO(source)).mode))
    assert ds.pixel_array.dtype == dtype
    assert np.array_equal(ds.pixel_array, expected.astype(dtype))
    assert ds.LossyImageCompression == "00"
    assert dciodvfy_errors(tmp_path, data) == []


def test_a_file_of_another_format_is_refused() -> None:
    with pytest.raises(InvalidInput, match="not PNG"):
        wrapped("png", image_bytes("JPEG"))
    with pytest.raises(InvalidInput, match="not a readable JPEG"):
        wrapped("jpeg", b"hello")
    with pytest.raises(InvalidInput, match="not a PDF"):
        wrapped("pdf", b"hello")
    with pytest.raises(InvalidInput, match="ftyp"):
        wrapped("mp4", b"hello world, no boxes")


def test_a_pdf_becomes_an_encapsulated_pdf(tmp_path: Path) -> None:
    pdf = pdf_bytes()
    data, ds = wrapped("pdf", pdf, Modality="SR", SeriesDescription="PDF")
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.104.1"
    assert ds.EncapsulatedDocument[:ds.EncapsulatedDocumentLength] == pdf
    assert ds.MIMETypeOfEncapsulatedDocument == "application/pdf"
    assert ds.Modality == "SR" and ds.DocumentTitle == "PDF"
    assert dciodvfy_errors(tmp_path, data) == []


def test_an_mp4_becomes_a_video_instance_with_its_stream_untouched(tmp_path: Path) -> None:
    mp4 = mp4_bytes(width=640, height=360, frames=75, fps=25)
    data, ds = wrapped("mp4", mp4, Modality="XC")
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.77.1.4.1"
    assert ds.file_meta.TransferSyntaxUID == MPEG4HP41
    assert (ds.Rows, ds.Columns, ds.NumberOfFrames) == (360, 640, 75)
    assert float(ds.FrameTime) == pytest.approx(40.0)
    stream = b"".join(generate_frames(ds.PixelData, number_of_frames=1))
    assert stream[:len(mp4)] == mp4 and set(stream[len(mp4):]) <= {0}
    # dciodvfy cannot evaluate "required when the region is known": the region of a converted
    # MP4 is not known, so the sequence is rightly absent.
    unknown_region = ("Error - Missing attribute Type 1C Conditional "
                      "Element=<AnatomicRegionSequence> Module=<VLImage>")
    assert [e for e in dciodvfy_errors(tmp_path, data) if e != unknown_region] == []


def test_video_syntax_follows_codec_and_rate() -> None:
    assert wrapped("mp4", mp4_bytes(fps=60))[1].file_meta.TransferSyntaxUID == MPEG4HP422D
    hevc = wrapped("mp4", mp4_bytes(codec=b"hvc1", moov_last=True))[1]
    assert hevc.file_meta.TransferSyntaxUID == HEVCM10P51
    with pytest.raises(InvalidInput, match="codec 'mp4v'"):
        wrapped("mp4", mp4_bytes(codec=b"mp4v"))


def test_mp4_boxes_are_read_wherever_moov_is() -> None:
    info = video_info(io.BytesIO(mp4_bytes(width=1920, height=1080, frames=30, fps=30,
                                           moov_last=True)))
    assert (info.codec, info.width, info.height, info.frames) == ("avc1", 1920, 1080, 30)
    assert info.frames_per_second == pytest.approx(30.0)


def test_non_ascii_names_are_written_as_utf8() -> None:
    _, ds = wrapped("png", image_bytes("PNG"), PatientName="MÜLLER^ANNA")
    assert ds.SpecificCharacterSet == "ISO_IR 192" and ds.PatientName == "MÜLLER^ANNA"


def dicom_file(ts: str | None = None, charset: str = "") -> bytes:
    spec = StudySpec(study_uid=uid(77, 1), patient_name="OLD^NAME", charset=charset)
    ds = make_instance(spec, 0, 0, transfer_syntax=ts or "1.2.840.10008.1.2.1")
    if charset == "ISO_IR 100":
        ds.StudyDescription = "Épaule"
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def test_rewriting_changes_the_header_and_copies_the_pixel_data() -> None:
    source = dicom_file()
    out = io.BytesIO()
    assert rewrite(io.BytesIO(source), out, VALUES) is True
    ds = dcmread(io.BytesIO(out.getvalue()))
    original = dcmread(io.BytesIO(source))
    assert (ds.PatientName, ds.PatientID, ds.StudyInstanceUID, ds.SOPInstanceUID) == (
        "DOE^JANE", "PID-123", "1.2.826.123.1", "1.2.826.123.1.2.1")
    assert ds.file_meta.MediaStorageSOPInstanceUID == "1.2.826.123.1.2.1"
    assert ds.PixelData == original.PixelData
    assert ds.Rows == original.Rows and ds.StudyDescription == original.StudyDescription


def test_rewriting_what_the_file_already_says_writes_nothing() -> None:
    source = dicom_file()
    ds = dcmread(io.BytesIO(source))
    out = io.BytesIO()
    same = {"PatientID": ds.PatientID, "StudyInstanceUID": ds.StudyInstanceUID}
    assert rewrite(io.BytesIO(source), out, same) is False
    assert out.getvalue() == b""


def test_rewriting_keeps_the_transfer_syntax() -> None:
    source = dicom_file(ImplicitVRLittleEndian)
    out = io.BytesIO()
    rewrite(io.BytesIO(source), out, {"PatientName": "NEW^NAME"})
    ds = dcmread(io.BytesIO(out.getvalue()))
    assert ds.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
    assert ds.PatientName == "NEW^NAME"
    assert ds.PixelData == dcmread(io.BytesIO(source)).PixelData


def test_a_non_ascii_value_re_encodes_the_header_in_utf8() -> None:
    source = dicom_file(charset="ISO_IR 100")
    out = io.BytesIO()
    rewrite(io.BytesIO(source), out, {"PatientName": "ŁUKASZ^ŻÓŁW"})
    ds = dcmread(io.BytesIO(out.getvalue()))
    assert ds.SpecificCharacterSet == "ISO_IR 192"
    assert ds.PatientName == "ŁUKASZ^ŻÓŁW"
    assert ds.StudyDescription == "Épaule"


def test_rewriting_something_that_is_not_dicom_is_refused() -> None:
    with pytest.raises(InvalidInput):
        rewrite(io.BytesIO(b"not dicom at all" * 20), io.BytesIO(), {"PatientID": "x"})
