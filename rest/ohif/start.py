"""Where a redeemed token sends the browser: OHIF on the context's studies, or the slide viewer
for a pathology case (OHIF's microscopy mode cannot read vendor slide formats)."""

from __future__ import annotations

from urllib.parse import urlencode

from node.index.context_queries import context_opening
from node.services import NodeServices
from pathology.catalogue import slides_of_case
from rest.ohif.bundle import BASE_PATH
from rest.ohif.protocols import PRIORS_SIDE_BY_SIDE

# The context's studies that a window opens (the rest are the history it lists).
OPENED = ("open", "prior")
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
    uids = [uid for uid, purpose in context.studies if purpose in OPENED]
    uids = uids or [uid for uid, _ in context.studies[:1]]
    secondary = context.kind == "secondary"
    if accession and await slides_of_case(services.sessions, accession):
        return SLIDE_VIEWER_PATH
    query = {"StudyInstanceUIDs": ",".join(uids)}
    if secondary and len(uids) > 1:
        # The second monitor compares the priors (same modality first, then newest).
        query["hangingProtocolId"] = PRIORS_SIDE_BY_SIDE
    return f"{OHIF_VIEWER_ROUTE}?{urlencode(query)}"
