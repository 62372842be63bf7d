"""Open a slide by what its files contain, never by their names: a DICOM preamble means
wsidicom, anything openslide recognises means openslide, the rest is refused with the file named.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from node.errors import InvalidInput, NotFound
from pathology.dicom_reader import DicomSlide
from pathology.openslide_reader import OpenSlideSlide, detect_format
from pathology.slide import Slide

SUPPORTED = "DICOM WSI, NDPI, MRXS, SVS or tiled TIFF"


def is_dicom_file(path: Path) -> bool:
    """DICOM Part 10: a 128-byte preamble, then "DICM"."""
    try:
        with path.open("rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def open_slide(paths: Sequence[Path]) -> Slide:
    """Open the files of one slide: the instances of a DICOM WSI series, or one vendor file
    (an MRXS names its data folder itself)."""
    if not paths:
        raise InvalidInput("no slide files given")
    for path in paths:
        if not path.is_file():
            raise NotFound(f"{path.name}: slide file not found")
    dicom = [is_dicom_file(p) for p in paths]
    if all(dicom):
        return DicomSlide(paths)
    if any(dicom):
        odd = next(p for p, d in zip(paths, dicom, strict=True) if not d)
        raise InvalidInput(f"{odd.name}: not DICOM, but the other files of the slide are")
    if len(paths) > 1:
        raise InvalidInput(f"{paths[0].name}: a non-DICOM slide is a single file")
    path = paths[0]
    if detect_format(path) is None:
        if _is_tiff(path):
            raise InvalidInput(f"{path.name}: a TIFF file that no slide reader accepts "
                               "(truncated, corrupt, or not a slide)")
        raise InvalidInput(f"{path.name}: not a slide format this node reads ({SUPPORTED})")
    return OpenSlideSlide(path)


def _is_tiff(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            head = f.read(4)
    except OSError:
        return False
    return head in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
