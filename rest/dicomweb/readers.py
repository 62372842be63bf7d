"""Who reads DICOMweb, and what they may read.

Two kinds of reader share the routes:
- a hospital system sends the API key (`Authorization: <key>`) and reads everything;
- a browser sends the viewer session cookie (a redeemed token) and reads only what its viewing
  context grants (rest/viewer/grants.py), or every local study when its role may search and the
  token did not hide search (OHIF's study list), with the context's options applied on the
  server: identifying values emptied when anonymized, documents absent when hidden (but not
  the measurements sessions saved as SR: SAVED_BY_SESSIONS).

A wrong key is refused even with a valid cookie beside it, so that a misconfigured system never
silently falls back to a browser's narrower grant.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from aiohttp import web

from node.index.query import Scope
from node.render.sop_classes import DOCUMENT_PREFIXES
from rest.state import API_KEY
from rest.viewer.grants import Grant
from rest.viewer.viewer_state import GRANTS

# The index's origin of what viewer sessions stored over STOW-RS, followed by the user's name:
# OHIF's saved measurements. Hidden documents leave them shown (readers' annotations of the
# images, not reports).
SAVED_BY_SESSIONS = "stow:"


@dataclass(frozen=True)
class Reader:
    # None: the API key, full access.
    grant: Grant | None

    @property
    def anonymize(self) -> bool:
        return self.grant is not None and self.grant.anonymize

    @property
    def hide_documents(self) -> bool:
        return self.grant is not None and not self.grant.features.get("documents")

    @property
    def reads_every_study(self) -> bool:
        """The API key, or a session whose role may search and whose token did not hide it:
        OHIF's study list searches the whole index (and the source nodes,
        rest/dicomweb/source_search.py) and opens what it finds (an anonymized session never
        searches)."""
        return self.grant is None or bool(self.grant.features.get("search"))

    def scope(self, limit: int | None = None, offset: int = 0,
              patients: frozenset[int] | None = None) -> Scope:
        """What a query of this reader may match (`patients`: rest/dicomweb/patient_scope)."""
        return Scope(
            studies=None if self.reads_every_study or self.grant is None else self.grant.allowed,
            patients=patients,
            without_sop_class_prefixes=DOCUMENT_PREFIXES if self.hide_documents else (),
            limit=limit, offset=offset, keep_origin_prefix=SAVED_BY_SESSIONS)

    def require(self, study_uid: str) -> None:
        """403 for a study outside the session's grant (without saying whether it exists)."""
        if self.grant is not None and not self.reads_every_study:
            self.grant.require(study_uid)


async def reader(request: web.Request) -> Reader:
    """The API key's reader, or the session's (for the study the path names, or for a search
    across studies: rest/viewer/grants.py, `for_study`); 401 without either."""
    sent = request.headers.get("Authorization")
    if sent is not None:
        if hmac.compare_digest(sent.encode("utf-8", "surrogateescape"),
                               request.app[API_KEY].encode("utf-8")):
            return Reader(None)
        raise web.HTTPUnauthorized(reason="unauthorized: wrong API key")
    return Reader(await request.app[GRANTS].for_study(request, request.match_info.get("study")))
