"""The viewer's search box: the local index and the source nodes, by patient name or ID,
accession number, study date range and modality. Needs the search feature (role permission,
hideSearch=false, not anonymized).

GET /ngv/api/search?patientName=&patientID=&accNum=&dateFrom=&dateTo=&modality=
POST /ngv/api/search/open {"studyInstanceUID": ..., "source": AE title or ""}: adds a found
study to the session's context (purpose "search"), retrieving it when it is remote, so that
the session may then open it like any other.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from node.dimse import scu
from node.errors import InvalidInput
from node.index.context_queries import add_context_study
from node.index.viewer_queries import search_local_studies, study_is_local
from node.viewing.study_resolution import select_sources
from rest.json_body import read_json
from rest.middleware import public
from rest.state import RETRIEVALS, SERVICES
from rest.viewer.viewer_state import GRANTS

routes = web.RouteTableDef()

MAX_RESULTS = 100
_DATE = re.compile(r"^\d{8}$")
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_TEXT_MAX = 64


def _text(request: web.Request, name: str) -> str:
    value = request.query.get(name, "").strip()
    if len(value) > _TEXT_MAX or "\\" in value:
        raise InvalidInput(f"{name}: at most {_TEXT_MAX} characters, no backslash", name)
    return value


def _date(request: web.Request, name: str) -> str:
    value = _text(request, name).replace("-", "")
    if value and not _DATE.match(value):
        raise InvalidInput(f"{name}: a date as YYYYMMDD or YYYY-MM-DD", name)
    return value


async def _local(request: web.Request, keys: dict[str, str]) -> list[dict[str, Any]]:
    search = {**keys, "name": keys["name"].upper(), "modality": keys["modality"].upper()}
    async with request.app[SERVICES].sessions() as session:
        rows = await search_local_studies(session, search, MAX_RESULTS)
    return [{"studyInstanceUID": r.study_uid,
             "patientName": r.patient_name.replace("^", " ").strip(),
             "patientID": r.patient_id, "issuerOfPatientID": r.issuer,
             "studyDate": r.study_date, "studyDescription": r.description,
             "accessionNumber": r.accession, "modalities": r.modalities,
             "source": ""} for r in rows]


async def _remote(request: web.Request, keys: dict[str, str]
                  ) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    config = request.app[SERVICES].config
    if not config.source_nodes:
        return [], []
    query: dict[str, str] = {}
    if keys["name"]:
        query["PatientName"] = keys["name"] if "*" in keys["name"] else keys["name"] + "*"
    if keys["patient_id"]:
        query["PatientID"] = keys["patient_id"]
    query["IssuerOfPatientID"] = ""  # returned, so that a result names its whole patient
    if keys["accession"]:
        query["AccessionNumber"] = keys["accession"]
    if keys["from"] or keys["to"]:
        query["StudyDate"] = f"{keys['from']}-{keys['to']}"
    if keys["modality"]:
        query["ModalitiesInStudy"] = keys["modality"].upper()
    result = await scu.find(config, config.source_nodes, "STUDY", query)
    found = []
    for ae_title, ds in result.matches[:MAX_RESULTS]:
        found.append({
            "studyInstanceUID": str(ds.get("StudyInstanceUID", "")),
            "patientName": str(ds.get("PatientName", "")).replace("^", " ").strip(),
            "patientID": str(ds.get("PatientID", "")),
            "issuerOfPatientID": str(ds.get("IssuerOfPatientID", "")),
            "studyDate": str(ds.get("StudyDate", "")),
            "studyDescription": str(ds.get("StudyDescription", "")),
            "accessionNumber": str(ds.get("AccessionNumber", "")),
            "modalities": [str(m) for m in (ds.get("ModalitiesInStudy") or [])]
            if not isinstance(ds.get("ModalitiesInStudy"), str)
            else [str(ds.get("ModalitiesInStudy"))],
            "source": ae_title})
    failed = [{"aeTitle": f.ae_title, "message": f.message} for f in result.failed]
    return found, failed


@routes.get("/ngv/api/search")
@public
async def search(request: web.Request) -> web.Response:
    grant = await request.app[GRANTS].for_request(request)
    grant.require_feature("search")
    keys = {"name": _text(request, "patientName"), "patient_id": _text(request, "patientID"),
            "accession": _text(request, "accNum"), "from": _date(request, "dateFrom"),
            "to": _date(request, "dateTo"), "modality": _text(request, "modality")}
    if not any(keys.values()):
        raise InvalidInput("give at least one search key", "patientName")
    local = await _local(request, keys)
    remote, failed = await _remote(request, keys)
    known = {s["studyInstanceUID"] for s in local}
    studies = local + [s for s in remote if s["studyInstanceUID"] not in known]
    return web.json_response({"studies": studies[:MAX_RESULTS], "failed": failed},
                             headers={"Cache-Control": "no-store"})


@routes.post("/ngv/api/search/open")
@public
async def open_found(request: web.Request) -> web.Response:
    grant = await request.app[GRANTS].for_request(request)
    grant.require_feature("search")
    body = await read_json(request)
    uid = str(body.get("studyInstanceUID", "")) if isinstance(body, dict) else ""
    source = str(body.get("source") or "") if isinstance(body, dict) else ""
    if not _UID.match(uid) or len(uid) > 64:
        raise InvalidInput("studyInstanceUID: not a UID", "studyInstanceUID")
    services = request.app[SERVICES]
    remote = select_sources(services.config, [source])[0] if source else None
    async with services.sessions() as session:
        local = await study_is_local(session, uid)
        if not local and remote is None:
            raise InvalidInput("studyInstanceUID: not in the local index", "studyInstanceUID")
        if uid not in grant.allowed:
            await add_context_study(session, grant.context_pk, len(grant.context["studies"]),
                                    uid, purpose="search",
                                    state="available" if local else "pending",
                                    source="" if local else source)
    if not local and remote is not None:
        await request.app[RETRIEVALS].ensure(remote, uid)
    request.app[GRANTS].forget(request)
    return web.json_response({"studyInstanceUID": uid, "added": True})
