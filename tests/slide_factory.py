"""Synthetic whole-slide images for tests and benchmarks: small, deterministic, in every format
the pathology readers accept, each written so that the real reader library opens it.

SVS, generic tiled TIFF and NDPI are written with tifffile (NDPI's 64-bit offset layout by hand);
DICOM WSI is written directly with pydicom, one instance per pyramid level plus label and
overview, with the specimen description chain the metadata extraction reads. Nothing here comes
from a real patient.
"""

from __future__ import annotations

import functools
import io
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import tifffile
from PIL import Image, ImageCms
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import UID, JPEGBaseline8Bit, generate_uid

ROOT = "1.2.826.0.1.3680043.10.1011."
WSI_SOP_CLASS = UID("1.2.840.10008.5.1.4.1.1.77.1.6")
DESCRIPTION_HEAD = "Aperio Image Library v12.0.15"


@dataclass(frozen=True)
class SlideSpec:
    """What a synthetic slide looks like: base size, native tiles, and the pyramid's downsamples."""

    width: int = 1000
    height: int = 750
    tile: int = 256
    downsamples: tuple[int, ...] = (1, 4)
    mpp: float = 0.25
    magnification: int = 40
    quality: int = 90
    # The embedded ICC profile: "srgb" (lcms's), "linear" (sRGB primaries, gamma 1.0: a
    # profile whose transform to sRGB visibly brightens), or None.
    icc: Literal["srgb", "linear"] | None = "srgb"
    label_colour: tuple[int, int, int] = (200, 30, 30)
    macro_colour: tuple[int, int, int] = (30, 200, 30)


def base_pixels(spec: SlideSpec) -> np.ndarray:
    """Smooth gradients under a checkerboard of 50-pixel squares: every tile differs from its
    neighbours and every channel carries its own signal, so a swapped or misplaced tile shows."""
    xx = np.arange(spec.width, dtype=np.int64)[np.newaxis, :]
    yy = np.arange(spec.height, dtype=np.int64)[:, np.newaxis]
    pixels = np.empty((spec.height, spec.width, 3), dtype=np.uint8)
    pixels[..., 0] = xx * 255 // max(spec.width - 1, 1)
    pixels[..., 1] = yy * 255 // max(spec.height - 1, 1)
    pixels[..., 2] = ((xx // 50 + yy // 50) % 2) * 180 + 40
    return pixels


def pyramid(spec: SlideSpec) -> list[np.ndarray]:
    pixels = base_pixels(spec)
    image = Image.fromarray(pixels)
    levels = []
    for downsample in spec.downsamples:
        if downsample == 1:
            levels.append(pixels)
            continue
        size = (-(-spec.width // downsample), -(-spec.height // downsample))
        levels.append(np.asarray(image.resize(size, Image.Resampling.BOX)))
    return levels


@functools.cache
def srgb_profile() -> bytes:
    """lcms stamps the creation time into the header: made once, so that every slide of a
    session carries the same bytes."""
    return bytes(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())


def icc_profile(spec: SlideSpec) -> bytes | None:
    if spec.icc == "srgb":
        return srgb_profile()
    if spec.icc == "linear":
        return linear_rgb_profile()
    return None


def linear_rgb_profile() -> bytes:
    """An ICC v2 matrix/TRC display profile with sRGB's primaries and a straight (gamma 1.0)
    curve, written out field by field: lcms can only make sRGB, Lab and XYZ profiles itself."""

    def s15(value: float) -> bytes:
        return struct.pack(">i", round(value * 65536))

    def xyz(x: float, y: float, z: float) -> bytes:
        return b"XYZ \0\0\0\0" + s15(x) + s15(y) + s15(z)

    description = b"linear sRGB (test)\0"
    tags = [
        (b"desc", b"desc\0\0\0\0" + struct.pack(">I", len(description)) + description
         + b"\0" * 8 + b"\0" * 3 + b"\0" * 67),
        (b"cprt", b"text\0\0\0\0no copyright, test data\0"),
        (b"wtpt", xyz(0.9642, 1.0, 0.8249)),
        (b"rXYZ", xyz(0.4361, 0.2225, 0.0139)),
        (b"gXYZ", xyz(0.3851, 0.7169, 0.0971)),
        (b"bXYZ", xyz(0.1431, 0.0606, 0.7141)),
        (b"rTRC", b"curv\0\0\0\0" + struct.pack(">IH", 1, 256) + b"\0\0"),
        (b"gTRC", b"curv\0\0\0\0" + struct.pack(">IH", 1, 256) + b"\0\0"),
        (b"bTRC", b"curv\0\0\0\0" + struct.pack(">IH", 1, 256) + b"\0\0"),
    ]
    offset = 128 + 4 + 12 * len(tags)
    table = struct.pack(">I", len(tags))
    data = b""
    for signature, body in tags:
        body += b"\0" * (-len(body) % 4)
        table += signature + struct.pack(">II", offset + len(data), len(body))
        data += body
    size = offset + len(data)
    header = (struct.pack(">I", size) + b"\0" * 4 + struct.pack(">I", 0x02100000) + b"mntr"
              + b"RGB XYZ " + struct.pack(">6H", 2024, 1, 5, 12, 0, 0) + b"acsp"
              + b"\0" * 24 + struct.pack(">I", 0) + s15(0.9642) + s15(1.0) + s15(0.8249))
    header += b"\0" * (128 - len(header))
    return header + table + data


def solid(width: int, height: int, colour: tuple[int, int, int]) -> np.ndarray:
    return np.full((height, width, 3), colour, dtype=np.uint8)


def thumbnail_pixels(spec: SlideSpec, longest: int = 200) -> np.ndarray:
    scale = longest / max(spec.width, spec.height)
    size = (max(1, round(spec.width * scale)), max(1, round(spec.height * scale)))
    return np.asarray(Image.fromarray(base_pixels(spec)).resize(size, Image.Resampling.BOX))


# --- Aperio SVS -------------------------------------------------------------------------------


def write_svs(path: Path, spec: SlideSpec = SlideSpec()) -> Path:
    """An Aperio SVS: tiled JPEG levels, the stripped thumbnail as the second IFD, then the
    label and macro, every page without tifffile's JSON description (openslide would fall back
    to generic-tiff)."""
    levels = pyramid(spec)
    w, h = spec.width, spec.height
    tiles = f"({spec.tile}x{spec.tile}) JPEG/RGB Q={spec.quality}"
    props = f"|AppMag = {spec.magnification}|MPP = {spec.mpp}"
    thumb = thumbnail_pixels(spec)
    with tifffile.TiffWriter(path) as tif:
        _write_tiled(tif, levels[0], spec, f"{w}x{h} [0,0 {w}x{h}] {tiles}{props}",
                     icc=icc_profile(spec))
        _write_stripped(tif, thumb, "jpeg", 0,
                        f"{w}x{h} -> {thumb.shape[1]}x{thumb.shape[0]} - {props}")
        for level in levels[1:]:
            _write_tiled(tif, level, spec, f"{w}x{h} -> {level.shape[1]}x{level.shape[0]} "
                         f"{tiles}{props}")
        _write_stripped(tif, solid(120, 100, spec.label_colour), "lzw", 1, "label 120x100")
        _write_stripped(tif, solid(300, 100, spec.macro_colour), "jpeg", 9, "macro 300x100")
    return path


def _write_tiled(tif: tifffile.TiffWriter, pixels: np.ndarray, spec: SlideSpec, description: str,
                 icc: bytes | None = None) -> None:
    tif.write(pixels, tile=(spec.tile, spec.tile), compression="jpeg",
              compressionargs={"level": spec.quality}, photometric="rgb", metadata=None,
              description=f"{DESCRIPTION_HEAD}\r\n{description}",
              extratags=_icc_tag(icc) if icc else None)


def _write_stripped(tif: tifffile.TiffWriter, pixels: np.ndarray, compression: str,
                    subfiletype: int, description: str) -> None:
    tif.write(pixels, compression=compression, photometric="rgb", metadata=None,
              subfiletype=subfiletype, description=f"{DESCRIPTION_HEAD}\r\n{description}")


def _icc_tag(icc: bytes) -> list[tuple[int, str, int, bytes, bool]]:
    return [(34675, "B", len(icc), icc, True)]


# --- generic tiled TIFF -----------------------------------------------------------------------


def write_tiled_tiff(path: Path, spec: SlideSpec = SlideSpec()) -> Path:
    """A plain pyramidal TIFF (one tiled IFD per level, resolution in centimetres), which
    openslide reads as generic-tiff: no vendor, no associated images."""
    pixels_per_cm = 10_000 / spec.mpp
    icc = icc_profile(spec)
    with tifffile.TiffWriter(path) as tif:
        for index, level in enumerate(pyramid(spec)):
            per_cm = pixels_per_cm / spec.downsamples[index]
            tif.write(level, tile=(spec.tile, spec.tile), compression="jpeg",
                      compressionargs={"level": spec.quality}, photometric="rgb",
                      metadata=None, resolution=(per_cm, per_cm), resolutionunit="CENTIMETER",
                      subfiletype=0 if index == 0 else 1,
                      extratags=_icc_tag(icc) if index == 0 and icc else None)
    return path


# --- Hamamatsu NDPI ---------------------------------------------------------------------------


def write_ndpi(path: Path, spec: SlideSpec = SlideSpec()) -> Path:
    """A Hamamatsu NDPI: each level one baseline JPEG (restart markers splitting it into tiles,
    their offsets in McuStarts), in NDPI's own 64-bit offset layout, plus a macro image.

    NDPI is classic TIFF whose offsets overflow 32 bits: the first-IFD and next-IFD offsets are
    8 bytes, and each IFD is followed by the high 32 bits of every tag's offset. Everything here
    is small, so the high words are zero, but they must be there for the readers to agree."""
    levels = [pad_to_mcus(level) for level in pyramid(spec)]
    pages: list[tuple[bytes, int, int, float]] = []
    for index, level in enumerate(levels):
        pages.append((_jpeg(level, spec.quality, _restart_blocks(level.shape[1])),
                      level.shape[1], level.shape[0],
                      float(spec.magnification / spec.downsamples[index])))
    macro = solid(300, 100, spec.macro_colour)
    pages.append((_jpeg(macro, spec.quality), 300, 100, -1.0))
    _write_ndpi_file(path, pages, spec)
    return path


def pad_to_tiles(pixels: np.ndarray, tile: int = 256) -> np.ndarray:
    """White up to whole tiles, as MIRAX levels are."""
    height, width = pixels.shape[:2]
    padded = np.full((-(-height // tile) * tile, -(-width // tile) * tile, 3), 255,
                     dtype=np.uint8)
    padded[:height, :width] = pixels
    return padded


def pad_to_mcus(pixels: np.ndarray) -> np.ndarray:
    """Pad with white to whole 16x8 MCUs: openslide counts NDPI tiles per row by integer
    division, so a partial MCU column would shift every following row."""
    height, width = pixels.shape[:2]
    padded = np.full((-(-height // 8) * 8, -(-width // 16) * 16, 3), 255, dtype=np.uint8)
    padded[:height, :width] = pixels
    return padded


def _jpeg(pixels: np.ndarray, quality: int, restart_blocks: int = 0) -> bytes:
    out = io.BytesIO()
    options: dict[str, object] = {"quality": quality, "subsampling": 1}
    if restart_blocks:
        options["restart_marker_blocks"] = restart_blocks
    Image.fromarray(pixels).save(out, format="JPEG", **options)
    return out.getvalue()


def _restart_blocks(width: int) -> int:
    """MCUs per restart interval: openslide makes each interval a tile, and wants a whole number
    of them per MCU row, so the largest divisor of the row's MCU count up to 16 (256 pixels)."""
    mcus_per_row = -(-width // 16)
    return max(d for d in range(1, 17) if mcus_per_row % d == 0)


def _mcu_starts(jpeg: bytes) -> list[int]:
    """Offsets (from the start of the JPEG) of the first entropy-coded byte of each restart
    interval: the SOS payload start, then the byte after each RSTn marker."""
    sos = jpeg.index(b"\xff\xda")
    length = struct.unpack(">H", jpeg[sos + 2 : sos + 4])[0]
    starts = [sos + 2 + length]
    position = starts[0]
    while True:
        position = jpeg.find(b"\xff", position)
        if position < 0 or position + 1 >= len(jpeg):
            break
        marker = jpeg[position + 1]
        if 0xD0 <= marker <= 0xD7:
            starts.append(position + 2)
        elif marker == 0xD9:
            break
        position += 2
    return starts


def _write_ndpi_file(
    path: Path, pages: list[tuple[bytes, int, int, float]], spec: SlideSpec
) -> None:
    pixels_per_cm = 10_000 / spec.mpp
    out = bytearray(b"II*\x00" + b"\x00" * 8)
    # Pixel data first, then the IFDs, so that each IFD knows where its strip is.
    offsets = []
    for data, *_ in pages:
        offsets.append(len(out))
        out += data
    previous_next_field = 4
    for index, (data, width, height, magnification) in enumerate(pages):
        resolution = pixels_per_cm / spec.downsamples[index] if magnification > 0 else 100.0
        tags: list[tuple[int, int, list[int] | bytes | list[float]]] = [
            (256, 4, [width]),
            (257, 4, [height]),
            (258, 3, [8, 8, 8]),
            (259, 3, [7]),
            (262, 3, [6]),
            (273, 4, [offsets[index]]),
            (277, 3, [3]),
            (278, 4, [height]),
            (279, 4, [len(data)]),
            (282, 5, [resolution]),
            (283, 5, [resolution]),
            (296, 3, [3]),
            (65420, 4, [1]),
            (65421, 11, [magnification]),
            (65422, 9, [0]),
            (65423, 9, [0]),
            (65424, 9, [0]),
            (65427, 2, b"viewnode-test\x00"),
        ]
        if magnification > 0:
            starts = _mcu_starts(data)
            tags.append((65426, 4, starts))
        ifd_offset = len(out)
        struct.pack_into("<Q", out, previous_next_field, ifd_offset)
        out += _ndpi_ifd(tags, ifd_offset)
        previous_next_field = ifd_offset + 2 + 12 * len(tags)
    path.write_bytes(bytes(out))


_TYPE_FORMATS = {3: "H", 4: "I", 9: "i", 11: "f"}


def _ndpi_ifd(tags: list[tuple[int, int, list[int] | bytes | list[float]]], start: int) -> bytes:
    """One NDPI IFD: count, 12-byte entries, 8-byte next offset, then one 4-byte high word per
    tag, then the values that did not fit in an entry."""
    tags = sorted(tags, key=lambda t: t[0])
    head_size = 2 + 12 * len(tags) + 8 + 4 * len(tags)
    extra = bytearray()
    entries = bytearray(struct.pack("<H", len(tags)))
    for tag, kind, values in tags:
        count = len(values)
        if isinstance(values, bytes):
            payload = values
        elif kind == 5:
            payload = b"".join(struct.pack("<II", *_rational(float(v))) for v in values)
        else:
            payload = struct.pack("<" + _TYPE_FORMATS[kind] * len(values), *values)
        if len(payload) <= 4:
            field_bytes = payload.ljust(4, b"\x00")
        else:
            field_bytes = struct.pack("<I", start + head_size + len(extra))
            extra += payload
            if len(extra) % 2:
                extra += b"\x00"
        entries += struct.pack("<HHI", tag, kind, count) + field_bytes
    entries += struct.pack("<Q", 0)
    entries += b"\x00" * (4 * len(tags))
    return bytes(entries + extra)


def _rational(value: float) -> tuple[int, int]:
    denominator = 1000
    return round(value * denominator), denominator


# --- 3DHISTECH MIRAX ---------------------------------------------------------------------------


MRXS_TILE = 256


def write_mrxs(path: Path, spec: SlideSpec = SlideSpec()) -> Path:
    """A MIRAX slide: `x.mrxs` beside a folder `x/` holding Slidedat.ini, Index.dat and
    Data0000.dat, laid out as openslide's mirax reader reads it: one camera image per 256-pixel
    tile (no overlap, no position buffer), a second zoom level concatenating 4x4 images, and
    macro, label and preview images as non-hierarchical records.

    MIRAX levels are whole images, so the slide is padded with white to whole tiles."""
    folder = path.with_suffix("")
    folder.mkdir(parents=True, exist_ok=True)
    slide_id = "viewnode-test-mrxs"
    across = -(-spec.width // MRXS_TILE)
    down = -(-spec.height // MRXS_TILE)
    base = pad_to_tiles(base_pixels(spec), MRXS_TILE)
    data = bytearray()
    # Per zoom level: (image index, offset, length) of every image.
    levels: list[list[tuple[int, int, int]]] = [[], []]
    for y in range(down):
        for x in range(across):
            tile = base[y * MRXS_TILE : (y + 1) * MRXS_TILE, x * MRXS_TILE : (x + 1) * MRXS_TILE]
            encoded = _jpeg(tile, spec.quality)
            levels[0].append((y * across + x, len(data), len(encoded)))
            data += encoded
    concat = 4
    for y in range(0, down, concat):
        for x in range(0, across, concat):
            block = np.full((concat * MRXS_TILE, concat * MRXS_TILE, 3), 255, dtype=np.uint8)
            part = base[y * MRXS_TILE : (y + concat) * MRXS_TILE,
                        x * MRXS_TILE : (x + concat) * MRXS_TILE]
            block[: part.shape[0], : part.shape[1]] = part
            small = np.asarray(Image.fromarray(block).resize((MRXS_TILE, MRXS_TILE),
                                                            Image.Resampling.BOX))
            encoded = _jpeg(small, spec.quality)
            levels[1].append((y * across + x, len(data), len(encoded)))
            data += encoded
    associated = []
    for pixels in (solid(300, 100, spec.macro_colour), solid(120, 100, spec.label_colour),
                   thumbnail_pixels(spec)):
        encoded = _jpeg(pixels, spec.quality)
        associated.append((len(data), len(encoded)))
        data += encoded
    (folder / "Data0000.dat").write_bytes(bytes(data))
    (folder / "Index.dat").write_bytes(_mrxs_index(slide_id, levels, associated))
    (folder / "Slidedat.ini").write_text(_slidedat(slide_id, across, down, spec), "utf-8")
    path.write_text(f"{slide_id}\n", "utf-8")
    return path


def _mrxs_index(slide_id: str, levels: list[list[tuple[int, int, int]]],
                associated: list[tuple[int, int]]) -> bytes:
    """Index.dat: version and slide id, then the roots of the hierarchical (zoom level) and
    non-hierarchical (associated image) records; every pointer an absolute little-endian int32."""
    out = bytearray(b"01.02" + slide_id.encode())
    hier_root = len(out)
    out += b"\0" * 8

    def put(value: int, at: int) -> None:
        struct.pack_into("<i", out, at, value)

    level_table = len(out)
    out += b"\0" * (4 * len(levels))
    put(level_table, hier_root)
    for number, images in enumerate(levels):
        head = len(out)
        put(head, level_table + 4 * number)
        out += struct.pack("<ii", 0, head + 8)
        out += struct.pack("<ii", len(images), 0)
        for index, offset, length in images:
            out += struct.pack("<iiii", index, offset, length, 0)
    record_table = len(out)
    out += b"\0" * (4 * len(associated))
    put(record_table, hier_root + 4)
    for number, (offset, length) in enumerate(associated):
        head = len(out)
        put(head, record_table + 4 * number)
        out += struct.pack("<ii", 0, head + 8)
        out += struct.pack("<iiii", 1, 0, 0, 0)
        out += struct.pack("<iii", offset, length, 0)
    return bytes(out)


def _slidedat(slide_id: str, across: int, down: int, spec: SlideSpec) -> str:
    lines = [
        "[GENERAL]", "SLIDE_VERSION=01.02", f"SLIDE_ID={slide_id}",
        f"IMAGENUMBER_X={across}", f"IMAGENUMBER_Y={down}",
        f"OBJECTIVE_MAGNIFICATION={spec.magnification}", "CameraImageDivisionsPerSide=1",
        "[HIERARCHICAL]", "HIER_COUNT=1", "HIER_0_NAME=Slide zoom level", "HIER_0_COUNT=2",
        "HIER_0_VAL_0=ZoomLevel_0", "HIER_0_VAL_0_SECTION=LAYER_0_LEVEL_0_SECTION",
        "HIER_0_VAL_1=ZoomLevel_1", "HIER_0_VAL_1_SECTION=LAYER_0_LEVEL_1_SECTION",
        "NONHIER_COUNT=1", "NONHIER_0_NAME=Scan data layer", "NONHIER_0_COUNT=3",
        "NONHIER_0_VAL_0=ScanDataLayer_SlideThumbnail",
        "NONHIER_0_VAL_0_SECTION=NONHIERLAYER_0_LEVEL_0_SECTION",
        "NONHIER_0_VAL_1=ScanDataLayer_SlideBarcode",
        "NONHIER_0_VAL_1_SECTION=NONHIERLAYER_0_LEVEL_1_SECTION",
        "NONHIER_0_VAL_2=ScanDataLayer_SlidePreview",
        "NONHIER_0_VAL_2_SECTION=NONHIERLAYER_0_LEVEL_2_SECTION",
        "INDEXFILE=Index.dat",
        "[DATAFILE]", "FILE_COUNT=1", "FILE_0=Data0000.dat",
    ]
    for level, (concat, mpp) in enumerate(((0, spec.mpp), (2, spec.mpp * 4))):
        lines += [
            f"[LAYER_0_LEVEL_{level}_SECTION]", "OVERLAP_X=0", "OVERLAP_Y=0",
            f"MICROMETER_PER_PIXEL_X={mpp}", f"MICROMETER_PER_PIXEL_Y={mpp}",
            "IMAGE_FORMAT=JPEG", "IMAGE_FILL_COLOR_BGR=16777215",
            f"DIGITIZER_WIDTH={MRXS_TILE}", f"DIGITIZER_HEIGHT={MRXS_TILE}",
            f"IMAGE_CONCAT_FACTOR={concat}",
        ]
    lines += ["[NONHIERLAYER_0_LEVEL_0_SECTION]", "THUMBNAIL_IMAGE_TYPE=JPEG",
              "[NONHIERLAYER_0_LEVEL_1_SECTION]", "BARCODE_IMAGE_TYPE=JPEG",
              "[NONHIERLAYER_0_LEVEL_2_SECTION]", "PREVIEW_IMAGE_TYPE=JPEG"]
    return "\n".join(lines) + "\n"


# --- DICOM WSI --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpecimenSpec:
    """The preparation chain written into SpecimenDescriptionSequence (TID 8001): a specimen
    collected by a procedure from a body site, a block sampled from it, the slide cut from the
    block and stained."""

    container_identifier: str = "C231606-1426-A-1-1"
    specimen_identifier: str = "C231606-1426-A"
    specimen_procedure: tuple[str, str, str] = ("65801008", "SCT", "Excision")
    body_site: tuple[str, str, str] = ("80248007", "SCT", "Left breast")
    block_identifier: str = "C231606-1426-A-1"
    block_procedure: tuple[str, str, str] = ("122459003", "SCT", "Dissection")
    slide_identifier: str = "C231606-1426-A-1-A"
    slide_alias: str = "A-1-A"
    stains: tuple[tuple[str, str, str], ...] = (
        ("12710003", "SCT", "hematoxylin stain"),
        ("36879007", "SCT", "water soluble eosin stain"),
    )


@dataclass
class DicomSlideFiles:
    study_uid: str
    series_uid: str
    paths: list[Path] = field(default_factory=list)


def write_dicom_wsi(
    folder: Path,
    spec: SlideSpec = SlideSpec(),
    specimen: SpecimenSpec = SpecimenSpec(),
    accession: str = "C231606-1426",
    study_uid: str = "",
) -> DicomSlideFiles:
    """A DICOM WSI series: one TILED_FULL JPEG baseline instance per level, a label and an
    overview, all sharing the frame of reference and the specimen description."""
    folder.mkdir(parents=True, exist_ok=True)
    files = DicomSlideFiles(study_uid or generate_uid(prefix=ROOT), generate_uid(prefix=ROOT))
    frame_of_reference = generate_uid(prefix=ROOT)
    icc = icc_profile(spec)
    number = 1
    for index, level in enumerate(pyramid(spec)):
        downsample = spec.downsamples[index]
        image_type = ["ORIGINAL" if index == 0 else "DERIVED", "PRIMARY", "VOLUME", "NONE"]
        ds = _wsi_dataset(files, frame_of_reference, specimen, accession, icc, image_type,
                          level, spec.tile, spec.mpp * downsample / 1000, spec, number)
        path = folder / f"level{index}.dcm"
        ds.save_as(path, enforce_file_format=True)
        files.paths.append(path)
        number += 1
    for kind, pixels in (("LABEL", solid(120, 100, spec.label_colour)),
                         ("OVERVIEW", solid(300, 100, spec.macro_colour))):
        image_type = ["ORIGINAL", "PRIMARY", kind, "NONE"]
        tile = max(pixels.shape[:2])
        ds = _wsi_dataset(files, frame_of_reference, specimen, accession, icc, image_type,
                          pixels, tile, 0.025, spec, number)
        path = folder / f"{kind.lower()}.dcm"
        ds.save_as(path, enforce_file_format=True)
        files.paths.append(path)
        number += 1
    return files


def _code(value: tuple[str, str, str]) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value
    return item


def _content_item(name: tuple[str, str, str], *, text: str = "",
                  code: tuple[str, str, str] | None = None) -> Dataset:
    item = Dataset()
    item.ConceptNameCodeSequence = Sequence([_code(name)])
    if code is not None:
        item.ValueType = "CODE"
        item.ConceptCodeSequence = Sequence([_code(code)])
    else:
        item.ValueType = "TEXT"
        item.TextValue = text
    return item


SPECIMEN_IDENTIFIER = ("121041", "DCM", "Specimen Identifier")
PROCESSING_TYPE = ("111701", "DCM", "Processing type")
COLLECTION = ("17636008", "SCT", "Specimen collection")
SAMPLING = ("433465004", "SCT", "Sampling of tissue specimen")
STAINING = ("127790008", "SCT", "Staining")
SAMPLING_METHOD = ("111704", "DCM", "Sampling Method")
PARENT_IDENTIFIER = ("111705", "DCM", "Parent Specimen Identifier")
PARENT_TYPE = ("111707", "DCM", "Parent specimen type")
USING_SUBSTANCE = ("424361007", "SCT", "Using substance")


def _step(items: list[Dataset]) -> Dataset:
    step = Dataset()
    step.SpecimenPreparationStepContentItemSequence = Sequence(items)
    return step


def specimen_description(specimen: SpecimenSpec) -> Dataset:
    s = specimen
    steps = [
        _step([
            _content_item(SPECIMEN_IDENTIFIER, text=s.specimen_identifier),
            _content_item(PROCESSING_TYPE, code=COLLECTION),
            _content_item(COLLECTION, code=s.specimen_procedure),
        ]),
        _step([
            _content_item(SPECIMEN_IDENTIFIER, text=s.block_identifier),
            _content_item(PROCESSING_TYPE, code=SAMPLING),
            _content_item(SAMPLING_METHOD, code=s.block_procedure),
            _content_item(PARENT_IDENTIFIER, text=s.specimen_identifier),
            _content_item(PARENT_TYPE, code=("430861001", "SCT", "Gross specimen")),
        ]),
        _step([
            _content_item(SPECIMEN_IDENTIFIER, text=s.slide_identifier),
            _content_item(PROCESSING_TYPE, code=SAMPLING),
            _content_item(SAMPLING_METHOD, code=("434472006", "SCT", "Block sectioning")),
            _content_item(PARENT_IDENTIFIER, text=s.block_identifier),
            _content_item(PARENT_TYPE, code=("430856003", "SCT", "Tissue section")),
        ]),
        _step([
            _content_item(SPECIMEN_IDENTIFIER, text=s.slide_identifier),
            _content_item(PROCESSING_TYPE, code=STAINING),
            *[_content_item(USING_SUBSTANCE, code=stain) for stain in s.stains],
        ]),
    ]
    item = Dataset()
    item.SpecimenIdentifier = s.slide_identifier
    item.SpecimenUID = generate_uid(prefix=ROOT)
    item.IssuerOfTheSpecimenIdentifierSequence = Sequence([])
    item.SpecimenShortDescription = s.slide_alias
    item.SpecimenPreparationSequence = Sequence(steps)
    item.PrimaryAnatomicStructureSequence = Sequence([_code(s.body_site)])
    return item


def _wsi_dataset(
    files: DicomSlideFiles,
    frame_of_reference: str,
    specimen: SpecimenSpec,
    accession: str,
    icc: bytes | None,
    image_type: list[str],
    pixels: np.ndarray,
    tile: int,
    spacing_mm: float,
    spec: SlideSpec,
    number: int,
) -> Dataset:
    height, width = pixels.shape[:2]
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.file_meta.MediaStorageSOPClassUID = WSI_SOP_CLASS
    sop_uid = UID(generate_uid(prefix=ROOT))
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.SOPClassUID = WSI_SOP_CLASS
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = files.study_uid
    ds.SeriesInstanceUID = files.series_uid
    ds.FrameOfReferenceUID = frame_of_reference
    ds.PatientName = "SLIDE^SYNTHETIC"
    ds.PatientID = "PATH001"
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.AccessionNumber = accession
    ds.StudyID = "1"
    ds.StudyDate = "20240105"
    ds.StudyTime = "120000"
    ds.ReferringPhysicianName = ""
    ds.Modality = "SM"
    ds.SeriesNumber = 1
    ds.InstanceNumber = number
    ds.Manufacturer = "viewnode tests"
    ds.ContentDate = "20240105"
    ds.ContentTime = "120000"
    ds.AcquisitionDateTime = "20240105120000"
    ds.ImageType = image_type
    ds.BurnedInAnnotation = "YES" if image_type[2] == "LABEL" else "NO"
    ds.SpecimenLabelInImage = "YES" if image_type[2] == "LABEL" else "NO"
    ds.VolumetricProperties = "VOLUME"
    ds.FocusMethod = "AUTO"
    ds.ExtendedDepthOfField = "NO"
    ds.ContainerIdentifier = specimen.container_identifier
    ds.IssuerOfTheContainerIdentifierSequence = Sequence([])
    ds.ContainerTypeCodeSequence = Sequence([_code(("433466003", "SCT", "Microscope slide"))])
    ds.SpecimenDescriptionSequence = Sequence([specimen_description(specimen)])
    ds.DimensionOrganizationType = "TILED_FULL"
    ds.DimensionOrganizationSequence = Sequence([Dataset()])
    ds.DimensionOrganizationSequence[0].DimensionOrganizationUID = generate_uid(prefix=ROOT)
    ds.TotalPixelMatrixColumns = width
    ds.TotalPixelMatrixRows = height
    ds.TotalPixelMatrixFocalPlanes = 1
    ds.NumberOfOpticalPaths = 1
    origin = Dataset()
    origin.XOffsetInSlideCoordinateSystem = 20.0
    origin.YOffsetInSlideCoordinateSystem = 40.0
    ds.TotalPixelMatrixOriginSequence = Sequence([origin])
    ds.ImageOrientationSlide = [0, -1, 0, -1, 0, 0]
    ds.ImagedVolumeWidth = width * spacing_mm
    ds.ImagedVolumeHeight = height * spacing_mm
    ds.ImagedVolumeDepth = 0.001
    measures = Dataset()
    measures.PixelSpacing = [round(spacing_mm, 9), round(spacing_mm, 9)]
    measures.SliceThickness = 0.001
    measures.SpacingBetweenSlices = 0.001
    shared = Dataset()
    shared.PixelMeasuresSequence = Sequence([measures])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    path_item = Dataset()
    path_item.OpticalPathIdentifier = "1"
    path_item.IlluminationColorCodeSequence = Sequence(
        [_code(("414298005", "SCT", "Full Spectrum"))])
    path_item.IlluminationTypeCodeSequence = Sequence(
        [_code(("111744", "DCM", "Brightfield illumination"))])
    if icc is not None:
        path_item.ICCProfile = icc
    ds.OpticalPathSequence = Sequence([path_item])
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "YBR_FULL_422"
    ds.PlanarConfiguration = 0
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionRatio = 10
    ds.LossyImageCompressionMethod = "ISO_10918_1"
    ds.Rows = tile
    ds.Columns = tile
    frames = _jpeg_frames(pixels, tile, spec.quality)
    ds.NumberOfFrames = len(frames)
    ds.PixelData = encapsulate(frames)
    ds["PixelData"].VR = "OB"
    return ds


def _jpeg_frames(pixels: np.ndarray, tile: int, quality: int) -> list[bytes]:
    """Row-major tiles, edge tiles padded to full size with white as TILED_FULL requires."""
    height, width = pixels.shape[:2]
    frames = []
    for top in range(0, height, tile):
        for left in range(0, width, tile):
            block = np.full((tile, tile, 3), 255, dtype=np.uint8)
            part = pixels[top : top + tile, left : left + tile]
            block[: part.shape[0], : part.shape[1]] = part
            out = io.BytesIO()
            Image.fromarray(block).save(out, format="JPEG", quality=quality, subsampling=1)
            frames.append(out.getvalue())
    return frames


# --- one of each ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SlideSet:
    svs: Path
    tiff: Path
    ndpi: Path
    mrxs: Path
    dicom: DicomSlideFiles


def write_slide_set(folder: Path, spec: SlideSpec = SlideSpec()) -> SlideSet:
    folder.mkdir(parents=True, exist_ok=True)
    return SlideSet(
        svs=write_svs(folder / "slide.svs", spec),
        tiff=write_tiled_tiff(folder / "slide.tiff", spec),
        ndpi=write_ndpi(folder / "slide.ndpi", spec),
        mrxs=write_mrxs(folder / "mirax" / "slide.mrxs", spec),
        dicom=write_dicom_wsi(folder / "dicom", spec),
    )


# --- colour lookup tables ---------------------------------------------------------------------


def cube_text(
    size: int,
    mapping: Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, ...]],
    title: str = "test",
    domain: tuple[tuple[float, float, float], tuple[float, float, float]] | None = None,
) -> str:
    """A .cube file: red changes fastest, as the format requires. `mapping` gets the grid's
    red, green and blue coordinates (0..1) as arrays and returns the output channels."""
    lines = [f'TITLE "{title}"', "# written by tests/slide_factory.py", f"LUT_3D_SIZE {size}"]
    if domain is not None:
        lines.append("DOMAIN_MIN " + " ".join(f"{v:g}" for v in domain[0]))
        lines.append("DOMAIN_MAX " + " ".join(f"{v:g}" for v in domain[1]))
    steps = np.linspace(0.0, 1.0, size)
    blue, green, red = np.meshgrid(steps, steps, steps, indexing="ij")
    rows = np.stack(mapping(red.ravel(), green.ravel(), blue.ravel()), axis=-1)
    out = io.StringIO()
    np.savetxt(out, rows, fmt="%.6f")
    return "\n".join(lines) + "\n" + out.getvalue()


def identity_cube(size: int = 17) -> str:
    return cube_text(size, lambda r, g, b: (r, g, b), title="identity")


def swap_red_blue_cube(size: int = 17) -> str:
    return cube_text(size, lambda r, g, b: (b, g, r), title="swap red and blue")
