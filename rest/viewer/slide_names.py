"""How the viewer session names its slides: by containerIdentifier, or, when the session is
anonymized, by an alias that identifies nothing.

A containerIdentifier is the slide's barcode, usually the case's accession number with the
part, block and slide (C231606-1426-A-1-1): to anyone with the lab system as good as the
patient's name. An anonymized session sees each slide under an HMAC of it keyed by the session
cookie: the same for every request of that session (on any worker or instance), another in
every other session, and no help to a page script, which cannot read the (httpOnly) cookie.
The specimen, block and slide identifiers are left out of the metadata too; their aliases
(A-1-A), procedures, body site and stain stay, which is what a teaching case needs.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from typing import Any

from aiohttp import web

from pathology.catalogue import check_container_identifier
from rest.viewer.grants import COOKIE, Grant

ALIAS_PREFIX = "slide-"
ALIAS_HEX = 32
HIDDEN_FIELDS = ("specimenIdentifier", "blockIdentifier", "slideIdentifier")


def slide_alias(cookie: str, container_identifier: str) -> str:
    digest = hmac.new(cookie.encode("utf-8", "surrogateescape"),
                      container_identifier.encode("utf-8"), hashlib.sha256).hexdigest()
    return ALIAS_PREFIX + digest[:ALIAS_HEX]


class SlideNames:
    """The names one request's session gives its slides."""

    def __init__(self, request: web.Request, grant: Grant) -> None:
        self._key = request.cookies.get(COOKIE, "") if grant.anonymize else None

    @property
    def anonymized(self) -> bool:
        return self._key is not None

    def shown(self, container_identifier: str) -> str:
        """What the browser calls the slide."""
        if self._key is None:
            return container_identifier
        return slide_alias(self._key, container_identifier)

    def resolve(self, name: str, allowed: Iterable[str]) -> str | None:
        """The containerIdentifier the browser's name stands for among `allowed`, if any."""
        if self._key is None:
            cid = check_container_identifier(name)
            return cid if cid in allowed else None
        return next((cid for cid in allowed if self.shown(cid) == name), None)

    def metadata(self, fields: dict[str, Any]) -> dict[str, Any]:
        """A slide's metadata JSON as the session may see it."""
        if self._key is None:
            return fields
        shown = dict(fields, containerIdentifier=self.shown(fields["containerIdentifier"]))
        for name in HIDDEN_FIELDS:
            shown[name] = ""
        return shown
