"""Non-DICOM files made DICOM, so that they are indexed, queried, moved and burned like the rest.

- JPEG: Secondary Capture with the JPEG bytes encapsulated as they are (JPEG Baseline); a JPEG
  that is not baseline 8-bit greyscale/colour is re-encoded with Pillow first.
- PNG, BMP: Secondary Capture with the decoded pixels stored uncompressed. They are lossless
  formats; re-encoding them as JPEG would silently lose detail in a medical record.
- MP4: Video Photographic Image with the stream encapsulated untouched in an MPEG-4 (H.264) or
  HEVC transfer syntax; frame size, count and rate come from the MP4 boxes.
- PDF: Encapsulated PDF.

The request's patient/study/series data are the instance's attributes; the caller supplies the
UIDs (the request's, or made-up stable ones) and may supply SeriesNumber/InstanceNumber.
"""

from __future__ import annotations

import io
from datetime import datetime
from typing import BinaryIO

import numpy as np
from PIL import Image, JpegImagePlugin, UnidentifiedImageError
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate, encapsulate_buffer
from pydicom.uid import (
    HEVCM10P51,
    HEVCMP51,
    MPEG4HP41,
    MPEG4HP422D,
    UID,
    EncapsulatedPDFStorage,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    SecondaryCaptureImageStorage,
    VideoPhotographicImageStorage,
)

from node.errors import InvalidInput
from node.sources.mp4 import VideoInfo, video_info

IMAGE_KINDS = ("jpeg", "png", "bmp")
WRAPPED_KINDS = (*IMAGE_KINDS, "mp4", "pdf")
DEFAULT_MODALITY = {"jpeg": "OT", "png": "OT", "bmp": "OT", "mp4": "XC", "pdf": "DOC"}
_PILLOW_FORMAT = {"jpeg": "JPEG", "png": "PNG", "bmp": "BMP"}
# Encapsulated fragments hold at most 2^32 - 2 bytes.
MAX_VIDEO = 0xFFFFFFFE
# Pillow refuses bigger images as a decompression bomb; a screenshot is far smaller.
MAX_PIXELS = 20000 * 20000
FRAME_TIME = 0x00181063


def wrap(kind: str, source: BinaryIO, out: BinaryIO, values: dict[str, str]) -> None:
    """Write the DICOM instance made from `source` to `out`."""
    for key in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        if not values.get(key):
            raise ValueError(f"values: {key} is required")
    if kind in IMAGE_KINDS:
        ds = _image(kind, source, values)
    elif kind == "mp4":
        ds = _video(source, values)
    elif kind == "pdf":
        ds = _pdf(source, values)
    else:
        raise ValueError(f"kind: cannot wrap {kind!r}")
    ds.save_as(out, enforce_file_format=True)


def _common(sop_class: str, transfer_syntax: str, kind: str, values: dict[str, str]) -> Dataset:
    now = datetime.now()
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = UID(sop_class)
    ds.file_meta.MediaStorageSOPInstanceUID = UID(values["SOPInstanceUID"])
    ds.file_meta.TransferSyntaxUID = UID(transfer_syntax)
    if any(not v.isascii() for v in values.values()):
        ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = values["SOPInstanceUID"]
    ds.InstanceCreationDate = now.strftime("%Y%m%d")
    ds.InstanceCreationTime = now.strftime("%H%M%S")
    # Type 2 attributes of the patient, study, series and equipment modules: present, maybe
    # empty.
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex",
                    "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID",
                    "AccessionNumber", "SeriesNumber", "Manufacturer", "InstanceNumber"):
        setattr(ds, keyword, None)
    ds.InstanceNumber = 1
    ds.SeriesNumber = 1
    ds.Laterality = None
    ds.Modality = DEFAULT_MODALITY[kind]
    ds.ContentDate = now.strftime("%Y%m%d")
    ds.ContentTime = now.strftime("%H%M%S")
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds


def _open_image(kind: str, data: bytes) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError, ValueError) as exc:
        raise InvalidInput(f"not a readable {kind.upper()} file: {exc}") from exc
    if image.format != _PILLOW_FORMAT[kind]:
        raise InvalidInput(f"the file is {image.format or 'unknown'}, not {kind.upper()}")
    if image.width * image.height > MAX_PIXELS:
        raise InvalidInput(f"{kind.upper()} image too large ({image.width}x{image.height})")
    return image


def _image(kind: str, source: BinaryIO, values: dict[str, str]) -> Dataset:
    data = source.read()
    image = _open_image(kind, data)
    if kind == "jpeg":
        return _jpeg(data, image, values)
    ds = _common(SecondaryCaptureImageStorage, ExplicitVRLittleEndian, kind, values)
    _sc_equipment(ds)
    pixels = _native_pixels(image)
    ds.Rows, ds.Columns = pixels.shape[0], pixels.shape[1]
    if pixels.ndim == 3:
        ds.SamplesPerPixel = 3
        ds.PhotometricInterpretation = "RGB"
        ds.PlanarConfiguration = 0
    else:
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
    bits = pixels.dtype.itemsize * 8
    ds.BitsAllocated = bits
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    ds.LossyImageCompression = "00"
    ds.PixelData = pixels.tobytes()
    ds["PixelData"].VR = "OW" if bits == 16 else "OB"
    return ds


def _native_pixels(image: Image.Image) -> np.ndarray:
    """Grey (8 or 16 bits) or RGB pixels; palette and alpha images become RGB."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        pixels = np.asarray(image)
        if pixels.min() >= 0 and pixels.max() <= 0xFFFF:
            return pixels.astype("<u2")
        return np.asarray(image.convert("L"))
    if image.mode in ("1", "L"):
        return np.asarray(image.convert("L"))
    return np.asarray(image.convert("RGB"))


def _sc_equipment(ds: Dataset) -> None:
    ds.ConversionType = "WSD"
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.PatientOrientation = None


def _jpeg(data: bytes, image: Image.Image, values: dict[str, str]) -> Dataset:
    ds = _common(SecondaryCaptureImageStorage, JPEGBaseline8Bit, "jpeg", values)
    _sc_equipment(ds)
    if not (_is_baseline(data) and image.mode in ("L", "RGB")):
        # Progressive, 12-bit, CMYK...: not JPEG Baseline; re-encode once, at high quality.
        converted = image.convert("L" if image.mode in ("1", "L", "I;16", "I") else "RGB")
        buffer = io.BytesIO()
        converted.save(buffer, format="JPEG", quality=95)
        data = buffer.getvalue()
        image = Image.open(io.BytesIO(data))
    ds.Rows, ds.Columns = image.height, image.width
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    if image.mode == "L":
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
    else:
        ds.SamplesPerPixel = 3
        ds.PlanarConfiguration = 0
        ds.PhotometricInterpretation = _jpeg_photometric(image)
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionMethod = "ISO_10918_1"
    ds.PixelData = encapsulate([data])
    ds["PixelData"].VR = "OB"
    return ds


def _jpeg_photometric(image: Image.Image) -> str:
    if image.info.get("adobe_transform") == 0:
        return "RGB"  # stored as RGB, without the YCbCr colour transform
    sampling = JpegImagePlugin.get_sampling(image)
    return "YBR_FULL" if sampling == 0 else "YBR_FULL_422"


def _is_baseline(data: bytes) -> bool:
    """Whether the first frame header is SOF0 (baseline DCT, 8-bit)."""
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return False
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return marker == 0xC0 and data[pos + 4] == 8
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        pos += 2 + length
    return False


def _video(source: BinaryIO, values: dict[str, str]) -> Dataset:
    info = video_info(source)
    size = source.seek(0, io.SEEK_END)
    if size > MAX_VIDEO:
        raise InvalidInput("MP4 file larger than 4 GiB cannot be encapsulated")
    transfer_syntax, method = _video_syntax(info)
    ds = _common(VideoPhotographicImageStorage, transfer_syntax, "mp4", values)
    # DERIVED: converted from a file, with no anatomic region known (ORIGINAL would need one).
    ds.ImageType = ["DERIVED", "PRIMARY"]
    ds.Rows, ds.Columns = info.height, info.width
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "YBR_PARTIAL_420"
    ds.PlanarConfiguration = 0
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.NumberOfFrames = max(info.frames, 1)
    fps = info.frames_per_second or 25.0
    ds.FrameTime = f"{1000.0 / fps:.6g}"
    ds.CineRate = round(fps)
    ds.FrameIncrementPointer = FRAME_TIME
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionMethod = method
    ds.AcquisitionContextSequence = []
    # No Anatomic Region Sequence: it is required when the region is known, and for a file
    # converted from MP4 it is not (an empty sequence is not allowed either).
    ds.PatientOrientation = None
    source.seek(0)
    # Streamed from the file when written, never held in memory whole.
    ds.PixelData = encapsulate_buffer([source], has_bot=False)  # type: ignore[list-item]
    ds["PixelData"].VR = "OB"
    return ds


def _video_syntax(info: VideoInfo) -> tuple[str, str]:
    if info.codec in ("avc1", "avc3"):
        # Level 4.1 allows 1920x1080 at 30 frames/s; faster or larger needs level 4.2.
        fast = info.frames_per_second > 30.5 or info.width * info.height > 1920 * 1088
        return (MPEG4HP422D if fast else MPEG4HP41), "ISO_14496_10"
    if info.codec in ("hvc1", "hev1"):
        return (HEVCM10P51 if info.hevc_profile == 2 else HEVCMP51), "ISO_23008_2"
    raise InvalidInput(f"MP4 video codec {info.codec!r} has no DICOM transfer syntax "
                       "(H.264 or HEVC are supported)")


def _pdf(source: BinaryIO, values: dict[str, str]) -> Dataset:
    data = source.read()
    if not data.startswith(b"%PDF-"):
        raise InvalidInput("not a PDF file (no %PDF- header)")
    ds = _common(EncapsulatedPDFStorage, ExplicitVRLittleEndian, "pdf", values)
    ds.ConversionType = "WSD"
    ds.BurnedInAnnotation = "YES"
    ds.DocumentTitle = values.get("SeriesDescription", "")[:64] or None
    ds.ConceptNameCodeSequence = []
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocumentLength = len(data)
    ds.EncapsulatedDocument = data + (b"\x00" if len(data) % 2 else b"")
    ds.AcquisitionDateTime = None
    return ds
