"""File IDs of the DICOM files on a medium (PS3.10 8.3, 8.5; PS3.12 ISO 9660 level 1).

Every component is 1 to 8 characters of A-Z, 0-9 and `_`, there are at most 8 components and no
extension, so the same names are valid as ISO 9660 level 1 identifiers and as DICOM CS values.
Names are numbered in the order of the file-set (patients, studies, series, instances sorted
deterministically), so the same content always gets the same names:

    DICOM/P0000001/S0000001/SE000001/I0000001
"""

from __future__ import annotations

import re
from collections.abc import Sequence

DICOM_FOLDER = "DICOM"
MAX_COMPONENTS = 8
_COMPONENT = re.compile(r"^[A-Z0-9_]{1,8}$")

FileId = tuple[str, ...]


def is_conformant_component(name: str) -> bool:
    return _COMPONENT.match(name) is not None


def is_conformant_file_id(components: Sequence[str]) -> bool:
    return 0 < len(components) <= MAX_COMPONENTS and all(
        is_conformant_component(c) for c in components
    )


def numbered(prefix: str, number: int) -> str:
    """`prefix` followed by `number`, zero-padded to 8 characters (`SE000012`)."""
    digits = 8 - len(prefix)
    if number < 1 or number >= 10**digits:
        raise ValueError(f"number {number} does not fit a {prefix!r} file ID component")
    return f"{prefix}{number:0{digits}d}"


def instance_file_id(patient: int, study: int, series: int, instance: int) -> FileId:
    """The File ID of the `instance`-th file of the `series`-th series of the `study`-th study
    of the `patient`-th patient (all 1-based)."""
    return (
        DICOM_FOLDER,
        numbered("P", patient),
        numbered("S", study),
        numbered("SE", series),
        numbered("I", instance),
    )
