"""Which slides a viewer session may read, and whether its token opens the slide viewer.

A GET token names a case (accNum), or one slide of it (accNum + containerIdentifier). A POST
token names studies in its JSON, each instance a slide by its containerIdentifier, and often no
accession number at the request's top level: its slides are those of the studies it named,
known once its import has registered them. Until the import is over, the session is told that
more slides may come, so that the page waits for them rather than saying there are none.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from node.index.context_queries import context_with_studies
from node.index.patient_queries import patient_keys_of_studies
from node.services import NodeServices
from node.viewing.named_patient import studies_of_other_patients
from pathology.catalogue import slides_of_case, slides_of_studies, studies_of_slides
from rest.state import SERVICES
from rest.viewer.case_banner import opening_position

if TYPE_CHECKING:
    from node.index.viewing_models import ContextStudy, ViewingContext

SLIDE_GRANT_SECONDS = 2.0
MAX_CACHED = 4096
# The POST API's MIME type of a non-DICOM slide file, and DICOM's modality of slide images.
SLIDE_MIME_TYPE = "application/octet-stream"
SLIDE_MODALITY = "SM"
# Import states after which nothing more arrives (an interrupted import is resumed).
IMPORT_OVER = ("done", "stopped")


@dataclass(frozen=True)
class SessionSlides:
    """The slides one context may read (containerIdentifiers), the one to open first ("" for
    the first), the case's accession numbers, whether its import may still bring more, and
    the study whose patient the banner names ("": the study the context opens first)."""

    allowed: tuple[str, ...]
    selected: str
    accessions: tuple[str, ...]
    pending: bool
    banner_study: str = ""


def request_names_slides(request: Mapping[str, Any]) -> bool:
    """Whether a POST request's JSON names a slide: an instance with a containerIdentifier or
    sent as a slide file, or a series of slide images."""
    for study in request.get("studies") or ():
        for series in study.get("series") or ():
            if series.get("modality") == SLIDE_MODALITY:
                return True
            for instance in series.get("instances") or ():
                if instance.get("containerIdentifier") or \
                        instance.get("mimeType") == SLIDE_MIME_TYPE:
                    return True
    return False


async def _load(services: NodeServices, context_pk: int) -> ViewingContext | None:
    async with services.sessions() as session:
        return await context_with_studies(session, context_pk)


async def context_slides(services: NodeServices, context: ViewingContext) -> SessionSlides:
    """What the context grants. The stored request, not the context JSON: anonymize hides
    accNum from the browser, not from the grant. A study the index holds for another patient
    than the one the request names for it is no more the session's here than in its grant
    (node/viewing/named_patient.py): neither its slides nor its patient."""
    async with services.sessions() as session:
        others = await studies_of_other_patients(
            session, context.request, [(row.study_uid, row.purpose) for row in context.studies])
    studies = [row for row in context.studies if row.study_uid not in others]
    accession = str(context.request.get("accNum") or "")
    selected = str(context.options.get("containerIdentifier") or "")
    found = set(await slides_of_case(services.sessions, accession)) if accession else set()
    if not selected:
        found |= set(await slides_of_studies(
            services.sessions, [row.study_uid for row in studies]))
    allowed = tuple(sorted(cid for cid in found if not selected or cid == selected))
    allowed, banner_study = await _one_patients_slides(services, context, studies, others,
                                                       allowed, selected)
    accessions = (accession,) if accession else tuple(dict.fromkeys(
        row.accession_number for row in studies if row.accession_number))
    state = (context.sources or {}).get("import", {}).get("state")
    pending = state is not None and state not in IMPORT_OVER
    return SessionSlides(allowed, selected, accessions, pending, banner_study)


async def _one_patients_slides(services: NodeServices, context: ViewingContext,
                               studies: Sequence[ContextStudy], others: set[str],
                               slides: tuple[str, ...], selected: str
                               ) -> tuple[tuple[str, ...], str]:
    """The slides of one patient, and the study whose patient the banner names ("": the
    context's first opened study). The page shows one patient's banner: a case that two
    patients' studies share (an accession number given twice, or by two hospitals) would
    otherwise show one patient's slides under the other's name. The patient is that of the
    slide the token names, else of the study the context opens first; a slide none of whose
    studies is in the index (a registered file) has no patient the index knows, and stays."""
    studies_of = await studies_of_slides(services.sessions, list(slides))
    slides = tuple(cid for cid in slides if not others.intersection(studies_of.get(cid, ())))
    position = opening_position([row.purpose for row in studies], context.kind)
    opening = "" if position is None else studies[position].study_uid
    named = sorted(studies_of.get(selected, ())) if selected else [opening]
    async with services.sessions() as session:
        patient_of = await patient_keys_of_studies(
            session, {opening, *named, *(uid for uids in studies_of.values() for uid in uids)})
    banner_study = next((uid for uid in named if uid in patient_of), "")
    shown = patient_of.get(banner_study)
    if shown is None:
        return slides, ""
    kept = tuple(cid for cid in slides
                 if all(patient_of.get(uid, shown) == shown for uid in studies_of.get(cid, ())))
    return kept, banner_study


async def opens_slides(services: NodeServices, context_pk: int) -> bool:
    """Whether the context is a pathology case: the slide viewer opens it, not OHIF (whose
    microscopy mode cannot read vendor slide formats and is not served)."""
    context = await _load(services, context_pk)
    if context is None:
        return False
    if context.options.get("containerIdentifier") or request_names_slides(context.request):
        return True
    return bool((await context_slides(services, context)).allowed)


class SlideGrants:
    """Each context's slides, kept a short while like the grants."""

    def __init__(self) -> None:
        self._cache: dict[int, tuple[float, SessionSlides]] = {}

    async def slides(self, request: web.Request, context_pk: int) -> SessionSlides:
        now = time.monotonic()
        cached = self._cache.get(context_pk)
        if cached is not None and now - cached[0] < SLIDE_GRANT_SECONDS:
            return cached[1]
        services = request.app[SERVICES]
        context = await _load(services, context_pk)
        if context is None:
            raise web.HTTPUnauthorized(reason="no valid viewer session")
        slides = await context_slides(services, context)
        if len(self._cache) > MAX_CACHED:
            self._cache.clear()
        self._cache[context_pk] = (now, slides)
        return slides


SLIDE_GRANTS = web.AppKey("slide_grants", SlideGrants)
