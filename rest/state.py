"""The application's typed state, shared by the route modules (no globals)."""

from __future__ import annotations

from aiohttp import web

from node.retention import StudyDeletions
from node.services import NodeServices
from node.viewing import RetrievalRegistry, TokenIssuer

SERVICES = web.AppKey("services", NodeServices)
API_KEY = web.AppKey("api_key", str)
RETRIEVALS = web.AppKey("retrievals", RetrievalRegistry)
ISSUER = web.AppKey("issuer", TokenIssuer)
# This instance's part in removing deleted studies' files (any instance's deletions).
DELETIONS = web.AppKey("deletions", StudyDeletions)
# This instance's name in the X-Node-Instance header, for checking where a proxy routed a call.
INSTANCE_NAME = web.AppKey("instance_name", str)
# [http] trusted_proxies as networks (rest/client_address.py).
TRUSTED_PROXIES = web.AppKey("trusted_proxies", tuple)
