"""QIDO-RS (PS3.18 10.6): searching studies, series and instances in the index.

Matching is the index's C-FIND matching (node/index/query.py: single values, lists, `*` and `?`
wildcards, date and time ranges, UID lists), restricted to the reader's scope. Attributes are
named by keyword or by tag; `includefield` adds returned attributes (`all`: every one the index
holds at those levels). A searching viewer session's study search also asks the source nodes
(source_search.py). An attribute the index cannot match on is not matched, and a `Warning`
header says so, as PS3.18 asks. `fuzzymatching` is accepted and not applied (the header says so).
An anonymized session may not match on an identifying attribute (400 naming it): its values are
emptied in the answer, and whether a study matched would tell them one query at a time.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from aiohttp import web
from pydicom.datadict import keyword_for_tag

from node.errors import InvalidInput
from node.index.query import ATTRIBUTES, FindMatch, FindRequest, Level, Model, scoped_find
from rest.dicomweb.dicom_json import PHI_KEYWORDS, dataset_json, element
from rest.dicomweb.negotiation import DICOM_JSON, require_json
from rest.dicomweb.patient_scope import NAMES_SEVERAL, patients_named
from rest.dicomweb.qido_values import check_value
from rest.dicomweb.readers import Reader, reader
from rest.dicomweb.source_search import asks_sources, search_sources
from rest.dicomweb.urls import BASE_PATH, base_url
from rest.middleware import public
from rest.state import SERVICES

routes = web.RouteTableDef()

# Returned whatever is asked (PS3.18 Table 10.6.3-3, -4, -5), when the index holds them.
DEFAULT_KEYS = {
    Level.STUDY: ("StudyDate", "StudyTime", "AccessionNumber", "ModalitiesInStudy",
                  "ReferringPhysicianName", "PatientName", "PatientID", "IssuerOfPatientID",
                  "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyID",
                  "StudyDescription", "NumberOfStudyRelatedSeries",
                  "NumberOfStudyRelatedInstances"),
    Level.SERIES: ("Modality", "SeriesDescription", "SeriesNumber", "SeriesInstanceUID",
                   "BodyPartExamined", "NumberOfSeriesRelatedInstances"),
    Level.IMAGE: ("SOPClassUID", "SOPInstanceUID", "InstanceNumber", "NumberOfFrames",
                  "AvailableTransferSyntaxUID"),
}
# Query parameters that are not attributes.
_CONTROL = frozenset({"includefield", "limit", "offset", "fuzzymatching", "sticky"})
_TAG = re.compile(r"^[0-9A-Fa-f]{8}$")
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
MAX_VALUE = 1024
MAX_LIMIT = 100_000


def keyword_of(name: str) -> str:
    """A query parameter's attribute keyword, from a keyword or an 8-hex-digit tag."""
    if _TAG.match(name):
        keyword = keyword_for_tag(int(name, 16))
        if keyword:
            return keyword
    if name and name[0].isupper() and name.isalnum():
        return name
    raise InvalidInput(f"{name}: not an attribute keyword or tag", field=name)


def _uid(text: str, name: str) -> str:
    if not _UID.match(text) or len(text) > 64:
        raise InvalidInput(f"{name}: not a UID", field=name)
    return text


def _count(query: Any, name: str, maximum: int) -> int | None:
    text = query.get(name)
    if text is None or text == "":
        return None
    if not text.isdigit() or int(text) > maximum:
        raise InvalidInput(f"{name}: a whole number from 0 to {maximum}", field=name)
    return int(text)


def _values(name: str, keyword: str, text: str) -> tuple[str, ...]:
    """Matching values: a comma-separated list is list matching (UID lists among them); each
    date, time or number checked (400 naming the parameter `name`)."""
    if len(text) > MAX_VALUE:
        raise InvalidInput(f"{keyword}: at most {MAX_VALUE} characters", field=keyword)
    kind = ATTRIBUTES[keyword].kind
    if kind == "uid":
        values = tuple(v for v in re.split(r"[,\\]", text) if v)
        return tuple(_uid(v, keyword) for v in values)
    values = tuple(text.split(",")) if "," in text else (text,)
    for value in values:
        check_value(kind, value, name)
    return values


class Search:
    """One QIDO-RS request, parsed: the FindRequest, what was ignored, and the paging."""

    def __init__(self, request: web.Request, level: Level, path_keys: dict[str, str],
                 anonymized: bool = False) -> None:
        query = request.query
        keys: dict[str, tuple[str, ...]] = {}
        self.unmatched: list[str] = []
        for name in dict.fromkeys(query):
            if name in _CONTROL:
                continue
            keyword = keyword_of(name)
            attribute = ATTRIBUTES.get(keyword)
            if attribute is None or attribute.level > level:
                self.unmatched.append(name)
                continue
            texts = [t for t in query.getall(name) if t != ""]
            if anonymized and texts and keyword in PHI_KEYWORDS:
                # Values emptied in the answer would still say whether they matched.
                raise InvalidInput(f"{name}: an anonymized session cannot match on an "
                                   "identifying attribute", field=name)
            keys[keyword] = tuple(v for t in texts for v in _values(name, keyword, t))
        for keyword, value in path_keys.items():
            keys[keyword] = (_uid(value, keyword),)
        returned = list(DEFAULT_KEYS[level])
        if level is Level.IMAGE:
            returned += DEFAULT_KEYS[Level.SERIES]
        # Outside a study's path, a series or instance names its study too (PS3.18 10.6.3.3).
        if level > Level.STUDY and "StudyInstanceUID" not in path_keys:
            returned += DEFAULT_KEYS[Level.STUDY]
        for field in query.getall("includefield", []):
            for name in (n.strip() for n in field.split(",") if n.strip()):
                if name.lower() == "all":
                    returned += [k for k, a in ATTRIBUTES.items() if a.level <= level]
                else:
                    returned.append(keyword_of(name))
        for keyword in returned:
            attribute = ATTRIBUTES.get(keyword)
            if attribute is not None and attribute.level <= level:
                keys.setdefault(keyword, ())
        self.find = FindRequest(level, Model.STUDY_ROOT, keys)
        self.limit = _count(query, "limit", MAX_LIMIT)
        self.offset = _count(query, "offset", 10**9) or 0
        self.fuzzy = query.get("fuzzymatching", "").lower() == "true"

    def warnings(self) -> list[str]:
        found = []
        if self.unmatched:
            found.append('299 VIEWNODE "The following attributes are not supported for '
                         f'matching: {", ".join(self.unmatched)[:512]}"')
        if self.fuzzy:
            found.append('299 VIEWNODE "fuzzymatching is not supported: matching is exact"')
        return found


def _retrieve_url(base: str, level: Level, values: dict[str, str]) -> str:
    url = f"{base}/studies/{values['StudyInstanceUID']}"
    if level >= Level.SERIES:
        url += f"/series/{values['SeriesInstanceUID']}"
    if level is Level.IMAGE:
        url += f"/instances/{values['SOPInstanceUID']}"
    return url


def _result(match: FindMatch, level: Level, base: str, who: Reader) -> dict[str, Any]:
    extra = [element("InstanceAvailability", "ONLINE"),
             element("RetrieveURL", _retrieve_url(base, level, match.values))]
    return dataset_json(match.values, who.anonymize, extra)


async def _search(request: web.Request, level: Level,
                  path_keys: Callable[[web.Request], dict[str, str]]) -> web.Response:
    require_json(request)
    who = await reader(request)
    keys = path_keys(request)
    if "StudyInstanceUID" in keys:
        who.require(keys["StudyInstanceUID"])
    search = Search(request, level, keys, who.anonymize)
    sessions = request.app[SERVICES].sessions
    patients = await patients_named(sessions, who, search.find.keys)
    warnings = search.warnings()
    if patients is not None and not patients:
        warnings.append(NAMES_SEVERAL)
        matches = []
    else:
        matches = await scoped_find(sessions, search.find,
                                    who.scope(search.limit, search.offset, patients))
    base = base_url(request)
    body = [_result(m, level, base, who) for m in matches]
    if level is Level.STUDY and asks_sources(who, search.offset, search.find.keys):
        room = (MAX_LIMIT if search.limit is None else search.limit) - len(matches)
        found = await search_sources(
            request.app[SERVICES], who, search.find.keys, list(search.find.keys),
            {m.values.get("StudyInstanceUID", "") for m in matches}, room)
        body += found.results
        warnings += found.warnings
    headers = {"Cache-Control": "no-store"}
    if warnings:
        headers["Warning"] = ", ".join(warnings)
    if not body:
        # PS3.18 8.3.4.1: no match is 204 No Content, with an empty body.
        return web.Response(status=204, headers=headers)
    return web.json_response(body, content_type=DICOM_JSON, headers=headers)


def _none(_: web.Request) -> dict[str, str]:
    return {}


def _study(request: web.Request) -> dict[str, str]:
    return {"StudyInstanceUID": request.match_info["study"]}


def _series(request: web.Request) -> dict[str, str]:
    return {**_study(request), "SeriesInstanceUID": request.match_info["series"]}


_ROUTES: Iterable[tuple[str, Level, Callable[[web.Request], dict[str, str]]]] = (
    ("/studies", Level.STUDY, _none),
    ("/series", Level.SERIES, _none),
    ("/instances", Level.IMAGE, _none),
    ("/studies/{study}/series", Level.SERIES, _study),
    ("/studies/{study}/instances", Level.IMAGE, _study),
    ("/studies/{study}/series/{series}/instances", Level.IMAGE, _series),
)


def _handler(level: Level, keys: Callable[[web.Request], dict[str, str]]
             ) -> Callable[[web.Request], Any]:
    @public
    async def search(request: web.Request) -> web.Response:
        return await _search(request, level, keys)
    return search


for _path, _level, _keys in _ROUTES:
    routes.get(BASE_PATH + _path, allow_head=False)(_handler(_level, _keys))
