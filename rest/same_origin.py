"""State changes by the browser's session cookie come from the viewer's own pages only.

A page on another site can make the browser send POST, PUT or DELETE to the node, and a
`text/plain` or form body needs no CORS preflight; SameSite=Strict on the cookie is then the
only thing in the way (and a sibling site counts as same-site). So every state-changing route
that is not behind the API key (search/open, the session's annotation layers, any later one)
checks, before its handler runs:

- the body is JSON (`Content-Type: application/json` or `...+json`), or DICOM instances for
  STOW-RS (`multipart/related`), else 415: a cross-site form or `text/plain` request cannot
  send those without a preflight the node never answers;
- `Origin`, when sent, is the node's own origin as the browser addressed it (through a trusted
  proxy: X-Forwarded-Proto and X-Forwarded-Host), else 403;
- without Origin, `Sec-Fetch-Site`, when sent, is `same-origin` or `none` (typed by the
  user), else 403;
- with neither header the client is no browser (every current browser sends Origin on
  these methods): a script holding the cookie may pass, as it could send any header anyway.

Routes behind the API key are called by servers, not browsers, and are left alone, as is any
request that carries an `Authorization` header (DICOMweb with the key): a cross-site page cannot
send that header without a preflight either.
"""

from __future__ import annotations

import logging

from aiohttp import web
from yarl import URL

from rest.client_address import request_origin
from rest.middleware import Handler, json_error

log = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
ALLOWED_FETCH_SITES = frozenset({"same-origin", "none"})


def _same(sent: str, own: URL | None) -> bool:
    if own is None or sent == "null":
        return False
    try:
        origin = URL(sent)
        return (origin.is_absolute() and origin.path in ("", "/") and not origin.query_string
                and (origin.scheme, origin.host, origin.port) == (
                    own.scheme, own.host, own.port))
    except ValueError:
        return False


def refusal(request: web.Request) -> tuple[int, str, str] | None:
    """(status, message, header at fault) when the request may not change state."""
    sent = request.headers.get("Origin")
    site = request.headers.get("Sec-Fetch-Site")
    if sent is not None and not _same(sent, request_origin(request)):
        message = f"Origin {sent[:200]!r} is not the viewer's origin"
        return 403, f"cross-origin request refused: {message}", "Origin"
    if sent is None and site is not None and site.lower() not in ALLOWED_FETCH_SITES:
        message = f"Sec-Fetch-Site {site[:40]!r}"
        return 403, f"cross-origin request refused: {message}", "Sec-Fetch-Site"
    kind = request.content_type
    if request.method in BODY_METHODS and not _is_json(kind) and kind != "multipart/related":
        message = f"expected application/json, not {kind[:100]!r}"
        return 415, f"Content-Type: {message}", "Content-Type"
    return None


def _is_json(media_type: str) -> bool:
    return media_type == "application/json" or media_type.endswith("+json")


@web.middleware
async def require_same_origin(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The checks above on unsafe methods of the public (session cookie) routes."""
    match = request.match_info
    if (request.method in SAFE_METHODS or match.http_exception is not None
            or not getattr(match.handler, "public", False)
            or "Authorization" in request.headers):
        return await handler(request)
    refused = refusal(request)
    if refused is None:
        return await handler(request)
    status, message, header = refused
    log.warning("%d %s %s from %s: %s refused", status, request.method, request.path,
                request.remote, header)
    return json_error(status, message, header)
