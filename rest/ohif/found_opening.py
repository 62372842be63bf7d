"""Opening, from OHIF's study list, a study the session found on a source node.

The study list of a searching session lists the source nodes' studies beside the node's
(rest/dicomweb/source_search.py); the node can show one only once it holds it. When the
viewer's page names studies that are neither the session's nor in the index (or there only in
part: their last retrieval failed), and the session may search, the node looks for each on the
source nodes (C-FIND by StudyInstanceUID, bounded
by `[dicomweb] source_search_timeout`), adds those found to the session's context and has them
retrieved (node/viewing/found_studies.py); the page is then the waiting page (waiting.py),
which opens OHIF once they are here. A study found nowhere is left to OHIF, which says so.

A study launched from the study list loads the page anew (page_controls.study_list_opening),
so that this page route sees every study opened from the list, and each opens a window of its
own on its own patient.
"""

from __future__ import annotations

from aiohttp import web

from node.ingest.instance_record import is_valid_uid
from node.viewing.found_studies import add_found_study, local_studies, locate_on_sources
from rest.state import RETRIEVALS, SERVICES
from rest.viewer.grants import Grant
from rest.viewer.viewer_state import GRANTS

# At most this many studies of one URL are looked for on the source nodes: OHIF's study list
# opens one, a hand-written URL gets no more C-FIND than this.
MAX_LOOKED_FOR = 8


def _named(query: str) -> list[str]:
    """The valid study UIDs of OHIF's comma-separated StudyInstanceUIDs, each once."""
    uids = (uid.strip() for uid in query.split(","))
    return list(dict.fromkeys(uid for uid in uids if is_valid_uid(uid)))


async def open_found_studies(request: web.Request, grant: Grant, query: str) -> Grant:
    """Add the studies `query` names that only a source node holds, whole, to a searching
    session's context (retrieved in the background); the grant as it then is. A study whose
    last retrieval failed counts as not held: the index may have only part of it."""
    services = request.app[SERVICES]
    if not grant.features.get("search") or not services.config.source_nodes:
        return grant
    own = {s["studyInstanceUID"] for s in grant.context["studies"]}
    named = [uid for uid in _named(query) if uid not in own][:MAX_LOOKED_FOR]
    if not named:
        return grant
    local = await local_studies(services, named)
    incomplete = {uid for uid, failed_source in local.items() if failed_source}
    missing = [uid for uid in named
               if uid in incomplete or (uid not in grant.allowed and uid not in local)]
    timeout = services.config.dicomweb.source_search_timeout
    located = await locate_on_sources(services.config, missing, timeout)
    found = [(uid, located[uid]) for uid in missing if uid in located]
    if not found:
        return grant
    position = len(grant.context["studies"])
    for offset, (uid, source) in enumerate(found):
        await add_found_study(services, request.app[RETRIEVALS], grant.context_pk,
                              position + offset, uid, source)
    request.app[GRANTS].forget(request)
    return await request.app[GRANTS].for_request(request, fresh=True)
