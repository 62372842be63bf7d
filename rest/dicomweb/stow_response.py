"""What STOW-RS answers (PS3.18 10.5.3): one DICOM JSON dataset naming every part's fate, and
the HTTP status that sums them up.

Stored instances are items of ReferencedSOPSequence with their RetrieveURL (and a WarningReason
when the node kept or replaced an instance it already held); refused ones are items of
FailedSOPSequence with a FailureReason. Why, in words, goes to a `Warning: 299` header, since
the dataset has no standard attribute for it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rest.dicomweb.dicom_json import element

# FailureReason values (PS3.18 10.5.3, PS3.4 B.2.3 and PS3.7 C).
PROCESSING_FAILURE = 0x0110
NOT_AUTHORIZED = 0x0124
OUT_OF_RESOURCES = 0xA700
DATASET_MISMATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000
# The instance is not of the study the request's URL names.
WRONG_STUDY = 0xC122
# WarningReason: the SOP Instance UID was already stored (kept or replaced as configured); as
# with C-STORE, "coercion of data elements" is the nearest standard warning.
DUPLICATE = 0xB000
# WarningReason: a viewer session's instance had no IssuerOfPatientID and the node filled in its
# study's patient's (rest/dicomweb/stow_issuer.py): the stored instance differs from the sent one.
ISSUER_FILLED = 0xB000

DICOM_JSON = "application/dicom+json"
_MAX_WARNINGS = 20
_UNSAFE = re.compile(r'[^\x20-\x7e]|["\\]')


@dataclass(frozen=True)
class PartOutcome:
    """What became of one part of the body (numbered from 1)."""

    part: int
    sop_class_uid: str = ""
    sop_uid: str = ""
    study_uid: str = ""
    series_uid: str = ""
    failure: int | None = None
    warning: int | None = None
    # Why, in words (no patient data: UIDs and the reader's reason).
    note: str = ""
    # A viewer session's instance stored with its study's patient's IssuerOfPatientID filled in.
    issuer_filled: bool = False

    @property
    def stored(self) -> bool:
        return self.failure is None


@dataclass(frozen=True)
class StoreResponse:
    status: int
    body: dict[str, Any]
    warnings: list[str]

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": DICOM_JSON, "Cache-Control": "no-store"}
        if self.warnings:
            headers["Warning"] = ", ".join(self.warnings)
        return headers

    def payload(self) -> bytes:
        return json.dumps(self.body, separators=(",", ":")).encode()


def instance_url(base: str, outcome: PartOutcome) -> str:
    return (f"{base}/studies/{outcome.study_uid}/series/{outcome.series_uid}"
            f"/instances/{outcome.sop_uid}")


def _reference(outcome: PartOutcome) -> dict[str, Any]:
    return dict([element("ReferencedSOPClassUID", outcome.sop_class_uid),
                 element("ReferencedSOPInstanceUID", outcome.sop_uid)])


def _sequence(keyword: str, items: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    tag, _ = element(keyword, "")
    return tag, {"vr": "SQ", "Value": items}


def store_response(outcomes: Sequence[PartOutcome], base: str,
                   path_study: str | None) -> StoreResponse:
    """The dataset and status of a request whose parts ended as `outcomes` (at least one):
    200 all stored, 202 some failed or warned, 409 none stored."""
    stored = [o for o in outcomes if o.stored]
    failed = [o for o in outcomes if not o.stored]
    body: dict[str, Any] = {}
    studies = {o.study_uid for o in stored}
    study = path_study or (studies.pop() if len(studies) == 1 else None)
    if study:
        tag, value = element("RetrieveURL", f"{base}/studies/{study}")
        body[tag] = value
    if failed:
        tag, value = _sequence("FailedSOPSequence", [
            {**_reference(o), **dict([element("FailureReason", str(o.failure))])}
            for o in failed])
        body[tag] = value
    if stored:
        items = []
        for o in stored:
            item = {**_reference(o), **dict([element("RetrieveURL", instance_url(base, o))])}
            if o.warning is not None:
                item.update([element("WarningReason", str(o.warning))])
            items.append(dict(sorted(item.items())))
        tag, value = _sequence("ReferencedSOPSequence", items)
        body[tag] = value
    if not stored:
        status = 409
    elif failed or any(o.warning is not None for o in stored):
        status = 202
    else:
        status = 200
    return StoreResponse(status, dict(sorted(body.items())), _warnings(outcomes))


def _warnings(outcomes: Sequence[PartOutcome]) -> list[str]:
    """`Warning: 299` values, one per part that failed or warned (the first few)."""
    notes = [f"part {o.part}: {o.note}" for o in outcomes
             if o.note and (o.failure is not None or o.warning is not None)]
    found = [f'299 VIEWNODE "{_UNSAFE.sub("?", note)[:200]}"' for note in notes[:_MAX_WARNINGS]]
    if len(notes) > _MAX_WARNINGS:
        found.append(f'299 VIEWNODE "{len(notes) - _MAX_WARNINGS} more not listed"')
    return found
