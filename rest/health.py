"""GET /healthz and GET /readyz: probes for load balancers and orchestrators, without the key.

/healthz says the process answers HTTP (liveness: restart it if not) and nothing else.
/readyz says whether it can do its work (readiness: send it traffic or not): 503 names the
failing parts ("database", "storage") and never more, since anyone may ask.
"""

from __future__ import annotations

from aiohttp import web

from node.process.readiness import failing_parts
from rest.middleware import public
from rest.state import SERVICES

routes = web.RouteTableDef()

_NO_STORE = {"Cache-Control": "no-store"}


@routes.get("/healthz", allow_head=False)
@public
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "alive"}, headers=_NO_STORE)


@routes.get("/readyz", allow_head=False)
@public
async def readyz(request: web.Request) -> web.Response:
    failing = await failing_parts(request.app[SERVICES])
    if failing:
        return web.json_response(
            {"status": "not ready", "error": f"not ready: {', '.join(failing)} failing",
             "failing": failing}, status=503, headers=_NO_STORE)
    return web.json_response({"status": "ready"}, headers=_NO_STORE)
