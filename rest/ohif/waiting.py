"""While the studies a viewer URL opens are still being retrieved (from a source node, or by a
POST import), OHIF would find none of them and say so. The node answers the viewer's page with
a dark waiting page instead, which asks every second how the retrievals are going, shows the
instances received of those each source announced, and loads OHIF once none is on its way:

- `GET /viewer/waiting.js`: that page's script (the page allows no inline script);
- `GET /viewer/retrieval-state?StudyInstanceUIDs=...`: how many of the named studies of the
  session are still pending or being retrieved, and each one's state and progress.

A study the URL names whose retrieval from a source node failed (the source down, refusing,
or sending only part of the study) keeps the waiting page, which says why and offers to try
again: OHIF would show a partial study as if it were whole. Opening the URL again (the page's
Retry does just that) retrieves it again (`reopen_failed`); the jobs table runs one retrieval
however many tabs and instances ask. The page also offers the URL's other studies without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web

from rest.middleware import json_error, public
from rest.ohif.bundle import BASE_PATH
from rest.refusal import refusal_page
from rest.state import RETRIEVALS
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


def _named(query: str) -> set[str]:
    """OHIF's comma-separated StudyInstanceUIDs."""
    return {uid for uid in query.split(",") if uid}


def waiting_studies(grant: Grant, query: str) -> list[str]:
    """The studies of `query` (OHIF's comma-separated StudyInstanceUIDs; empty: all the
    session opens) that are still on their way."""
    named = _named(query)
    return [s["studyInstanceUID"] for s in grant.context["studies"]
            if s.get("state") in WAITING_STATES
            and (s["studyInstanceUID"] in named or not named)]


def failed_retrievals(grant: Grant, query: str) -> dict[str, str]:
    """The studies `query` names whose retrieval from a source node failed, each with that
    source's AE title (a POST import's failure is no retrieval to try again)."""
    named = _named(query)
    return {s["studyInstanceUID"]: s["source"] for s in grant.context["studies"]
            if s.get("state") == "failed" and s.get("source")
            and s["studyInstanceUID"] in named}


async def reopen_failed(request: web.Request, grant: Grant, query: str) -> Grant:
    """Opening a study whose retrieval failed retrieves it again; the grant as it then is."""
    failed = failed_retrievals(grant, query)
    if not failed or not await request.app[RETRIEVALS].reopen(grant.context_pk, failed):
        return grant
    request.app[GRANTS].forget(request)
    return await request.app[GRANTS].for_request(request, fresh=True)


def waiting_page() -> web.Response:
    return refusal_page(200, *WAITING, script=SCRIPT_PATH)


def _progress(study: dict[str, Any]) -> dict[str, Any]:
    return {"studyInstanceUID": study["studyInstanceUID"], "state": study["state"],
            "source": study.get("source"), "received": study.get("instancesReceived", 0),
            "announced": study.get("instancesAnnounced"), "message": study.get("message")}


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
    query = request.query.get("StudyInstanceUIDs", "")
    shown = set(waiting_studies(grant, query)) | set(failed_retrievals(grant, query))
    studies = [_progress(s) for s in grant.context["studies"] if s["studyInstanceUID"] in shown]
    return web.json_response({"waiting": sum(s["state"] in WAITING_STATES for s in studies),
                              "studies": studies},
                             headers={"Cache-Control": "no-store"})
