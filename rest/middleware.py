"""Cross-cutting HTTP work: the API key, errors as JSON, the routing and security headers.

Every route needs the API key unless its handler is marked `public` (the pages a browser opens
with a token or a session cookie, and the OpenAPI document).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from node.errors import Conflict, InvalidInput, NotFound, RemoteNodeError
from rest.state import API_KEY, INSTANCE_NAME

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
H = TypeVar("H", bound=Callable[..., Any])

# A sticky value echoed in a header: visible ASCII only, so it can never split a header.
STICKY_PATTERN = re.compile(r"^[\x21-\x7e]{1,64}$")

# What a browser may render as a page of the node's origin when it navigates to the response.
# A page that needs more (the viewer) sets its own policy; these are the defaults.
PAGE_POLICY = ("default-src 'none'; base-uri 'none'; form-action 'none'; "
               "frame-ancestors 'none'")
# A document from a study (PDF, or anything offered as a download): sandboxed by the response
# itself, an opaque origin without scripts, forms, popups or top navigation. Chromium's PDF
# viewer works under it (it refuses any PDF in an <iframe sandbox>, whatever the tokens).
DOCUMENT_POLICY = ("sandbox; default-src 'none'; base-uri 'none'; form-action 'none'; "
                   "frame-ancestors 'self'")
PAGE_TYPES = frozenset({"text/html", "application/xhtml+xml", "image/svg+xml", "text/xml",
                        "application/xml"})
DOCUMENT_TYPES = frozenset({"application/pdf", "application/octet-stream"})


def public(handler: H) -> H:
    """Mark a handler as reachable without the API key."""
    handler.public = True  # type: ignore[attr-defined]
    return handler


def json_error(status: int, message: str, field: str | None = None,
               headers: dict[str, str] | None = None) -> web.Response:
    body: dict[str, Any] = {"error": message}
    if field:
        body["field"] = field
    return web.json_response(body, status=status, headers=headers)


@web.middleware
async def errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map the node's error types to statuses; no traceback ever reaches a client."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items()
                   if k.lower() not in ("content-type", "content-length")}
        return json_error(exc.status, exc.reason, headers=headers)
    except InvalidInput as exc:
        return json_error(400, str(exc), exc.field)
    except HttpProcessingError as exc:
        # A body aiohttp cannot parse (a malformed multipart part, say) is the client's error.
        status = exc.code if 400 <= exc.code < 500 else 400
        return json_error(status, f"malformed request: {exc.message}"[:200])
    except NotFound as exc:
        return json_error(404, str(exc))
    except Conflict as exc:
        return json_error(409, str(exc))
    except RemoteNodeError as exc:
        return json_error(502, str(exc))
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("unexpected error in %s %s", request.method, request.path)
        return json_error(500, "internal server error")


@web.middleware
async def require_api_key(request: web.Request, handler: Handler) -> web.StreamResponse:
    """`Authorization: <API key>` on every non-public route, compared in constant time. The
    log says who was refused and why, never the key they sent."""
    match = request.match_info
    if match.http_exception is not None or getattr(match.handler, "public", False):
        return await handler(request)
    sent = request.headers.get("Authorization")
    if sent is None:
        reason = "missing Authorization header"
    elif hmac.compare_digest(sent.encode("utf-8", "surrogateescape"),
                             request.app[API_KEY].encode("utf-8")):
        return await handler(request)
    else:
        reason = "wrong API key"
    log.warning("401 %s %s from %s: %s", request.method, request.path, request.remote, reason)
    return json_error(401, f"unauthorized: {reason}")


async def routing_headers(request: web.Request, response: web.StreamResponse) -> None:
    """X-Node-Instance on every response; X-Sticky echoing the request's sticky value, so
    that a reverse proxy's routing can be checked from outside."""
    response.headers.setdefault("X-Node-Instance", request.app[INSTANCE_NAME])
    sticky = request.query.get("sticky", "")
    if sticky and "X-Sticky" not in response.headers and STICKY_PATTERN.match(sticky):
        response.headers["X-Sticky"] = sticky


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """`X-Content-Type-Options: nosniff` on every response, so that nothing is ever read as
    another type than the one it is sent as; a Content-Security-Policy on every response a
    browser could render as a page or a document, unless its route set a policy of its own."""
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    kind = response.headers.get("Content-Type", "").partition(";")[0].strip().lower()
    if kind in PAGE_TYPES:
        response.headers.setdefault("Content-Security-Policy", PAGE_POLICY)
    elif kind in DOCUMENT_TYPES:
        response.headers.setdefault("Content-Security-Policy", DOCUMENT_POLICY)
