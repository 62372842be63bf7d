"""Where a redeemed token sends the browser: OHIF on the context's first patient's studies, or
the slide viewer for a pathology case (OHIF's microscopy mode cannot read vendor slide
formats). The context's other patients are one click away in the patient switcher
(patient_routes.py)."""

from __future__ import annotations

from urllib.parse import urlencode

from node.index.context_queries import context_opening
from node.services import NodeServices
from node.viewing.context_patients import ContextPatient, ContextStudyRef, context_patients
from pathology.catalogue import slides_of_case
from rest.middleware import STICKY_PATTERN
from rest.ohif.bundle import BASE_PATH
from rest.ohif.protocols import PRIORS_SIDE_BY_SIDE

# OHIF's basic viewer mode (its route name is "viewer") under the node's /viewer/.
OHIF_VIEWER_ROUTE = f"{BASE_PATH}/viewer"
SLIDE_VIEWER_PATH = "/ngv/viewer"


async def start_url(services: NodeServices, context_pk: int) -> str:
    async with services.sessions() as session:
        context = await context_opening(session, context_pk)
        if context is None:
            return OHIF_VIEWER_ROUTE
        # The stored request: anonymize hides accNum from the browser, not from the node.
        accession = str(context.request.get("accNum") or "")
        if context.options.get("containerIdentifier"):
            return SLIDE_VIEWER_PATH
        patients = await context_patients(session, [
            ContextStudyRef(uid, purpose) for uid, purpose in context.studies])
        secondary = context.kind == "secondary"
    if accession and await slides_of_case(services.sessions, accession):
        return SLIDE_VIEWER_PATH
    return window_url(patients[0] if patients else None, secondary)


def window_url(patient: ContextPatient | None, secondary: bool, sticky: str = "") -> str:
    """OHIF on one patient's studies (on a second monitor, its priors side by side)."""
    if patient is None:
        return with_sticky(OHIF_VIEWER_ROUTE, sticky)
    uids = patient.study_uids
    query = {"StudyInstanceUIDs": ",".join(uids)}
    if secondary and len(uids) > 1:
        # The second monitor compares the priors (same modality first, then newest).
        query["hangingProtocolId"] = PRIORS_SIDE_BY_SIDE
    return with_sticky(f"{OHIF_VIEWER_ROUTE}?{urlencode(query)}", sticky)


def with_sticky(location: str, sticky: str) -> str:
    """The viewer's own requests carry the token's sticky too, so a proxy keeps them on this
    instance (a value that could not be echoed in a header is left out)."""
    if not (sticky and STICKY_PATTERN.match(sticky)):
        return location
    separator = "&" if "?" in location else "?"
    return f"{location}{separator}{urlencode({'sticky': sticky})}"
