"""Which patient a session means when it asks for "the studies of PatientID X".

OHIF's study browser lists the patient's other studies as `/studies?00100020=<PatientID>`,
without IssuerOfPatientID. A patient is (PatientID, issuer): when patients of several issuers
hold X, the bare ID names several patients, and answering them all would list another
hospital's patient beside this one, under this one's name. A viewer session therefore gets the
one of them its grant holds; when its grant holds none or several of them (a searching session
viewing someone else, or a link naming both), it gets none, with a Warning naming
IssuerOfPatientID. Wildcards and lists are searches for patients, not one patient's studies:
they answer every match, each under its own name. The API key asks as a hospital system means
it and gets every match, as C-FIND gives it.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from node.index.patient_queries import patients_with_id
from rest.dicomweb.readers import Reader

NAMES_SEVERAL = ('299 VIEWNODE "PatientID is held by patients of several issuers: '
                 'name IssuerOfPatientID"')


def one_patient_id(keys: Mapping[str, tuple[str, ...]]) -> str | None:
    """The PatientID of a query that names exactly one, without its issuer."""
    if any(v.strip() for v in keys.get("IssuerOfPatientID", ())):
        return None
    values = keys.get("PatientID", ())
    if len(values) != 1 or not values[0].strip() or "*" in values[0] or "?" in values[0]:
        return None
    return values[0]


async def patients_named(sessions: async_sessionmaker[AsyncSession], who: Reader,
                         keys: Mapping[str, tuple[str, ...]]) -> frozenset[int] | None:
    """The patient rows a session's query may match (None: no restriction; empty: none)."""
    patient_id = one_patient_id(keys)
    if who.grant is None or patient_id is None:
        return None
    async with sessions() as session:
        holders = await patients_with_id(session, patient_id)
    if len(holders) < 2:
        return None
    granted = frozenset(holders) & frozenset(who.grant.patient_of.values())
    return granted if len(granted) == 1 else frozenset()
