"""While the studies a viewer URL opens are still being retrieved (from a source node, or by a
POST import), OHIF would find none of them and say so. The node answers the viewer's page with
a dark waiting page instead, which asks every second whether any is still on its way and
loads OHIF once none is:

- `GET /viewer/waiting.js`: that page's script (the page allows no inline script);
- `GET /viewer/retrieval-state?StudyInstanceUIDs=...`: `{"waiting": n}`, how many of the
  named studies of the session are still pending or being retrieved.

A study whose retrieval failed is no longer waited for: OHIF then opens on what there is and
says what is not available.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from rest.middleware import json_error, public
from rest.ohif.bundle import BASE_PATH
from rest.refusal import refusal_page
from rest.viewer.grants import Grant
from rest.viewer.viewer_state import GRANTS

routes = web.RouteTableDef()

SCRIPT_PATH = f"{BASE_PATH}/waiting.js"
STATE_PATH = f"{BASE_PATH}/retrieval-state"
SCRIPT = (Path(__file__).parent / "waiting.js").read_bytes()
WAITING_STATES = frozenset({"pending", "retrieving"})
WAITING = ("Retrieving the studies",
           "The studies of this link are being retrieved from the archive; the viewer opens "
           "as soon as they are here.",
           "Keep this page open.")


def waiting_studies(grant: Grant, query: str) -> list[str]:
    """The studies of `query` (OHIF's comma-separated StudyInstanceUIDs; empty: all the
    session opens) that are still on their way."""
    named = {uid for uid in query.split(",") if uid}
    return [s["studyInstanceUID"] for s in grant.context["studies"]
            if s.get("state") in WAITING_STATES
            and (s["studyInstanceUID"] in named or not named)]


def waiting_page() -> web.Response:
    return refusal_page(200, *WAITING, script=SCRIPT_PATH)


@routes.get(SCRIPT_PATH, allow_head=False)
@public
async def script(request: web.Request) -> web.Response:
    return web.Response(body=SCRIPT, content_type="text/javascript",
                        headers={"Cache-Control": "no-cache",
                                 "X-Content-Type-Options": "nosniff"})


@routes.get(STATE_PATH, allow_head=False)
@public
async def retrieval_state(request: web.Request) -> web.Response:
    grant = await request.app[GRANTS].live_grant(request)
    if grant is None:
        return json_error(401, "no valid viewer session")
    waiting = waiting_studies(grant, request.query.get("StudyInstanceUIDs", ""))
    return web.json_response({"waiting": len(waiting)}, headers={"Cache-Control": "no-store"})
