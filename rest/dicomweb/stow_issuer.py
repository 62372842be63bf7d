"""The session door's one amendment to what it stores: a missing IssuerOfPatientID.

OHIF's DICOM SEG export copies PatientID from the images but not IssuerOfPatientID (dcmjs's
`DerivedDataset.derive` copies a fixed list of the referenced image's attributes that leaves it
out; its SR export copies the issuer). For a patient whose studies carry an issuer, the node
would refuse such a segmentation as another patient's study (a patient is PatientID and issuer),
and a reader could not save it.

So a viewer session's STOW-RS (role with `save`) fills in the issuer when, and only when, the
instance names a study its grant holds that is in the index, its PatientID is that study's
patient's, it has no IssuerOfPatientID (absent or empty), and that patient has one. The element
is spliced into the file before the ingest path reads it (node/ingest/issuer_fill.py), so the
stored file and the index agree. Any other mismatch is refused as before; so is everything the
API key and C-STORE bring: a PACS that sends without the issuer is a configuration to fix
there, not a gap a viewer's object fell into.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from node.index.patient_queries import patient_of_study
from node.ingest.issuer_fill import IssuerGap, find_issuer_gap, issuer_element


@dataclass(frozen=True)
class IssuerFill:
    """What goes into one part's file: `element` (IssuerOfPatientID holding `issuer`) in `gap`."""

    gap: IssuerGap
    element: bytes
    issuer: str


class MissingIssuers:
    """One session request's decisions; the patients of the studies it stores into, looked up
    once each."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession],
                 allowed: Collection[str]) -> None:
        self._sessions = sessions
        self._allowed = allowed
        self._patients: dict[str, tuple[str, str] | None] = {}

    async def fill_for(self, part: bytes | memoryview | Path) -> IssuerFill | None:
        """The fill of a part (its bytes, or its file in incoming/), or None: it is stored, or
        refused, as it came. (Its header is read in a thread, off the event loop.)"""
        gap = await asyncio.to_thread(_gap_of, part)
        if gap is None or gap.study_uid not in self._allowed:
            return None
        patient = await self._patient(gap.study_uid)
        if patient is None:
            return None
        patient_id, issuer = patient
        if not issuer or patient_id != gap.patient_id:
            return None
        element = issuer_element(gap, issuer)
        return None if element is None else IssuerFill(gap, element, issuer)

    async def _patient(self, study_uid: str) -> tuple[str, str] | None:
        if study_uid not in self._patients:
            async with self._sessions() as session:
                self._patients[study_uid] = await patient_of_study(session, study_uid)
        return self._patients[study_uid]


def _gap_of(part: bytes | memoryview | Path) -> IssuerGap | None:
    if not isinstance(part, Path):
        return find_issuer_gap(BytesIO(part))
    try:
        with part.open("rb") as source:
            return find_issuer_gap(source)
    except OSError:  # the ingest path meets it too, and answers for the part
        return None
