"""What a pathologist knows a slide by: the container (slide barcode) and the specimen -> block ->
slide chain it was cut from, with the stain.

DICOM WSI carries this in ContainerIdentifier and SpecimenDescriptionSequence (TID 8001
preparation steps); the POST API's JSON carries the same fields by name. Both are read into one
`SlideMetadata`, and the JSON wins field by field where both say something.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass

from pydicom.dataset import Dataset

from node.sources.slide_metadata import JSON_FIELDS, MAX_FIELD_LENGTH, SlideMetadata

__all__ = ["JSON_FIELDS", "MAX_FIELD_LENGTH", "SlideMetadata", "from_dicom", "stain_code"]

SPECIMEN_IDENTIFIER = ("121041", "DCM")
PROCESSING_TYPE = ("111701", "DCM")
COLLECTION = ("17636008", "SCT")
SAMPLING = ("433465004", "SCT")
STAINING = ("127790008", "SCT")
SAMPLING_METHOD = ("111704", "DCM")
PARENT_IDENTIFIER = ("111705", "DCM")
USING_SUBSTANCE = ("424361007", "SCT")
HEMATOXYLIN = ("12710003", "SCT")
EOSIN = ("36879007", "SCT")


@dataclass
class _Step:
    """One preparation step, reduced to what the chain needs."""

    specimen: str = ""
    processing: tuple[str, str] | None = None
    procedure: str = ""
    parent: str = ""
    substances: list[tuple[tuple[str, str], str]] = dataclasses.field(default_factory=list)


def from_dicom(dataset: Dataset) -> SlideMetadata:
    """Read the chain from a WSI dataset: the described specimen is the slide; its sampling
    step names the block it was cut from, whose own sampling step names the specimen; the
    specimen's collection step gives the procedure. Missing links leave fields empty."""
    container = str(dataset.get("ContainerIdentifier", "") or "")
    descriptions = list(dataset.get("SpecimenDescriptionSequence", []))
    if not descriptions:
        return SlideMetadata(container_identifier=container)
    description = descriptions[0]
    slide_id = str(description.get("SpecimenIdentifier", "") or "")
    steps = [_read_step(item) for item in description.get("SpecimenPreparationSequence", [])]
    by_specimen: dict[str, list[_Step]] = {}
    for step in steps:
        by_specimen.setdefault(step.specimen, []).append(step)

    def sampling(specimen: str) -> _Step | None:
        return next((s for s in by_specimen.get(specimen, []) if s.processing == SAMPLING), None)

    slide_sampling = sampling(slide_id)
    block_id = slide_sampling.parent if slide_sampling else ""
    block_sampling = sampling(block_id) if block_id else None
    specimen_id = block_sampling.parent if block_sampling else ""
    collection = next(
        (s for s in by_specimen.get(specimen_id, []) if s.processing == COLLECTION), None
    )
    stains = [
        substance
        for step in by_specimen.get(slide_id, [])
        if step.processing == STAINING
        for substance in step.substances
    ]
    return SlideMetadata(
        container_identifier=container,
        specimen_identifier=specimen_id,
        specimen_procedure=collection.procedure if collection else "",
        specimen_body_site=_first_meaning(description.get("PrimaryAnatomicStructureSequence", [])),
        block_identifier=block_id,
        block_procedure=block_sampling.procedure if block_sampling else "",
        slide_identifier=slide_id,
        slide_alias=str(description.get("SpecimenShortDescription", "") or ""),
        slide_stain_code=stain_code(stains),
    )


def stain_code(substances: list[tuple[tuple[str, str], str]]) -> str:
    """"H&E" for hematoxylin with eosin, as labs write it; otherwise the substances' meanings."""
    codes = {code for code, _ in substances}
    if codes == {HEMATOXYLIN, EOSIN}:
        return "H&E"
    return "+".join(meaning for _, meaning in substances)


def _read_step(step: Dataset) -> _Step:
    result = _Step()
    for item in step.get("SpecimenPreparationStepContentItemSequence", []):
        name = _code_key(item.get("ConceptNameCodeSequence", []))
        value_code = _code_key(item.get("ConceptCodeSequence", []))
        meaning = _first_meaning(item.get("ConceptCodeSequence", []))
        text = str(item.get("TextValue", "") or "")
        if name == SPECIMEN_IDENTIFIER:
            result.specimen = text
        elif name == PROCESSING_TYPE:
            result.processing = value_code
        elif name in (COLLECTION, SAMPLING_METHOD):
            result.procedure = meaning
        elif name == PARENT_IDENTIFIER:
            result.parent = text
        elif name == USING_SUBSTANCE and value_code is not None:
            result.substances.append((value_code, meaning))
    return result


def _code_key(sequence: Iterable[Dataset]) -> tuple[str, str] | None:
    for code in sequence:
        return (str(code.get("CodeValue", "")), str(code.get("CodingSchemeDesignator", "")))
    return None


def _first_meaning(sequence: Iterable[Dataset]) -> str:
    for code in sequence:
        return str(code.get("CodeMeaning", "") or "")
    return ""
