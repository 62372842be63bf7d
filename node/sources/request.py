"""The POST API's request body, checked field by field into typed values.

Every error names the field by its path in the body (`studies[0].series[2].instances[0].file`),
so that the caller can find it in a request of hundreds of instances. A field the node does not
know is ignored, and the whole request's such fields are named in one log line: a caller adding a
field of a later version of the API (`folder.recursive`, say) still opens its studies. A known
field with a wrong type or value is refused.

Secrets (cloud keys, WADO headers, the user name and password of a WADO URL such as
`http://user:password@pacs/wado`) live only in `StorageSpec`, hidden from `repr`, and are left
out of `OpenRequest.as_json()`, which is what the viewing context keeps: its URL is the one
without them.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from node.errors import InvalidInput
from node.ingest.instance_record import is_valid_uid
from node.sources.json_input import parse_json
from node.sources.slide_metadata import JSON_FIELDS, SlideMetadata

log = logging.getLogger(__name__)

# mimeType -> what the file is; "slide" is a non-DICOM whole-slide image (NDPI, MRXS, SVS, TIFF).
MIME_TYPES = {
    "application/dicom": "dicom",
    "image/jpeg": "jpeg",
    "image/png": "png",
    "image/bmp": "bmp",
    "video/mp4": "mp4",
    "application/pdf": "pdf",
    "application/octet-stream": "slide",
}
S3_TYPES = ("aws-bucket", "wasabi-bucket")
WADO_TYPES = ("wado-rs", "wado-uri")
STORAGE_TYPES = (*S3_TYPES, "google-bucket", *WADO_TYPES)

MAX_NAME = 64
MAX_FILE = 1024
MAX_ITEMS = 10000
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$")
_CS = re.compile(r"^[A-Z0-9_ ]{1,16}$")
_TIME = re.compile(r"^([01][0-9]|2[0-3])([0-5][0-9]([0-5][0-9](\.[0-9]{1,6})?)?)?$")
_REGION = re.compile(r"^[a-z0-9-]{2,32}$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")
# The spec's example spells it `openingParameters`, its list of fields `OpeningParameters`.
OPENING_KEYS = ("openingParameters", "OpeningParameters")
# Unknown fields met while one body is parsed, named together in one log line.
_IGNORED: ContextVar[list[str] | None] = ContextVar("ignored_fields", default=None)
MAX_LOGGED_FIELDS = 10


@dataclass(frozen=True)
class InstanceEntry:
    where: str
    sop_uid: str = ""
    file: str = ""
    mime_type: str = ""
    slide: SlideMetadata = field(default_factory=SlideMetadata)
    # Position in its series, from 1: the Instance Number of a wrapped file.
    number: int = 1

    @property
    def kind(self) -> str:
        """"dicom", "jpeg", "png", "bmp", "mp4", "pdf" or "slide"."""
        return MIME_TYPES.get(self.mime_type, "dicom")


@dataclass(frozen=True)
class SeriesEntry:
    where: str
    series_uid: str
    description: str = ""
    modality: str = ""
    instances: tuple[InstanceEntry, ...] = ()
    # Position in its study, from 1: the Series Number of wrapped files.
    number: int = 1


@dataclass(frozen=True)
class StorageSpec:
    type: str
    name: str
    region: str = ""
    url: str = ""
    access_key: str = field(default="", repr=False)
    secret_key: str = field(default="", repr=False)
    # The decoded service-account key of a google-bucket.
    service_account: dict[str, Any] = field(default_factory=dict, repr=False)
    http_headers: dict[str, str] = field(default_factory=dict, repr=False)
    # The user name and password the WADO URL carried (`url` is the URL without them).
    url_user: str = field(default="", repr=False)
    url_password: str = field(default="", repr=False)

    def secrets(self) -> list[str]:
        """Every secret value of the request, for tests and redaction."""
        values = [self.access_key, self.secret_key, *self.http_headers.values(),
                  self.url_user, self.url_password]
        values += [str(v) for k, v in self.service_account.items()
                   if k in ("private_key", "private_key_id")]
        return [v for v in values if v]

    def secret_fields(self) -> dict[str, Any]:
        """The body's secret fields of this storage, as a request would give them: what a
        background import keeps sealed (node/sources/sealed_secrets.py) to rebuild its request."""
        if self.type in S3_TYPES:
            return {"accessKey": self.access_key, "secretAccessKey": self.secret_key}
        if self.type == "google-bucket":
            text = json.dumps(self.service_account, separators=(",", ":"))
            return {"token": base64.b64encode(text.encode()).decode()}
        out: dict[str, Any] = {}
        if self.http_headers:
            out["httpHeaders"] = dict(self.http_headers)
        if self.url_user or self.url_password:
            out["url"] = self.url_with_credentials()
        return out

    def url_with_credentials(self) -> str:
        """The URL as the request gave it, user name and password included."""
        if not (self.url_user or self.url_password):
            return self.url
        parts = urlsplit(self.url)
        userinfo = quote(self.url_user, safe="")
        if self.url_password:
            userinfo += ":" + quote(self.url_password, safe="")
        return urlunsplit(parts._replace(netloc=f"{userinfo}@{parts.netloc}"))

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "name": self.name}
        if self.region:
            out["region"] = self.region
        if self.url:
            out["url"] = self.url
        if self.http_headers:
            out["httpHeaders"] = sorted(self.http_headers)  # names only
        return out


@dataclass(frozen=True)
class StudyEntry:
    where: str
    study_uid: str
    storage: StorageSpec | None = None
    patient_id: str = ""
    patient_name: str = ""
    birth_date: str = ""
    sex: str = ""
    accession: str = ""
    study_date: str = ""
    study_time: str = ""
    description: str = ""
    series: tuple[SeriesEntry, ...] = ()


@dataclass(frozen=True)
class OpeningParameters:
    """The viewer options of a POST request: those of the GET API that make sense here, with
    the same meanings and defaults, but `hideDocuments` is None unless given (the documents
    the request lists itself are then shown: node/sources/post_context.py)."""

    collapse_previews: bool = False
    anonymize: bool = False
    hide_search: bool = True
    hide_documents: bool | None = None
    hide_layers: bool = False
    annotation_visibility: str = "ALL"
    full_preload_study: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        """collapsePreviews, and the others where they differ from their defaults."""
        default = OpeningParameters()
        out: dict[str, Any] = {"collapsePreviews": self.collapse_previews}
        for name, attribute in _OPENING_JSON.items():
            value = getattr(self, attribute)
            if value != getattr(default, attribute):
                out[name] = list(value) if isinstance(value, tuple) else value
        return out


# openingParameters' fields besides collapsePreviews, and the attributes that keep them.
_OPENING_JSON = {
    "anonymize": "anonymize", "hideSearch": "hide_search", "hideDocuments": "hide_documents",
    "hideLayers": "hide_layers", "annotationVisibility": "annotation_visibility",
    "fullPreloadStudy": "full_preload_study",
}


@dataclass(frozen=True)
class OpenRequest:
    username: str
    role: str
    studies: tuple[StudyEntry, ...] = ()
    folder: str = ""
    opening: OpeningParameters = field(default_factory=OpeningParameters)

    def lists_documents(self) -> bool:
        """Whether the request names a document file itself (a PDF)."""
        return any(i.kind == "pdf" for s in self.studies for r in s.series
                   for i in r.instances)

    def secrets(self) -> list[str]:
        return [s for study in self.studies if study.storage for s in study.storage.secrets()]

    def secret_fields(self) -> dict[str, dict[str, Any]]:
        """Each study's secret storage fields, by the study's index ({} when none)."""
        out = {}
        for index, study in enumerate(self.studies):
            fields = study.storage.secret_fields() if study.storage else {}
            if fields:
                out[str(index)] = fields
        return out

    def as_json(self) -> dict[str, Any]:
        """The request as understood, without any secret: what the viewing context keeps."""
        out: dict[str, Any] = {"username": self.username, "role": self.role}
        if self.folder:
            out["folder"] = {"path": self.folder}
        else:
            out["studies"] = [_study_json(s) for s in self.studies]
        out["openingParameters"] = self.opening.as_json()
        return out


def with_secrets(request_json: dict[str, Any], secrets: dict[str, dict[str, Any]]
                 ) -> dict[str, Any]:
    """A body `parse_request` takes again, from `OpenRequest.as_json()` and the request's
    `secret_fields()`: the inverse of leaving the secrets out."""
    out = dict(request_json)
    if "studies" in out:
        studies = []
        for index, study in enumerate(out["studies"]):
            study = dict(study)
            if "storage" in study:
                storage = {k: v for k, v in study["storage"].items() if k != "httpHeaders"}
                storage.update(secrets.get(str(index), {}))
                study["storage"] = storage
            studies.append(study)
        out["studies"] = studies
    return out


def _drop_empty(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v not in ("", None, [], {})}


def _study_json(study: StudyEntry) -> dict[str, Any]:
    return _drop_empty({
        "storage": study.storage.as_json() if study.storage else None,
        "patientID": study.patient_id, "patientName": study.patient_name,
        "patientBirthDate": study.birth_date, "patientSex": study.sex,
        "studyInstanceUID": study.study_uid, "accessionNumber": study.accession,
        "studyDate": study.study_date, "studyTime": study.study_time,
        "studyDescription": study.description,
        "series": [_drop_empty({
            "seriesInstanceUID": s.series_uid, "seriesDescription": s.description,
            "modality": s.modality,
            "instances": [_drop_empty({
                "sopInstanceUID": i.sop_uid, "file": i.file, "mimeType": i.mime_type,
                **i.slide.non_empty_json(),
            }) for i in s.instances],
        }) for s in study.series],
    })


class _Object:
    """One JSON object being read: each read marks its key, `done` notes the rest as ignored."""

    def __init__(self, value: Any, where: str) -> None:
        if not isinstance(value, dict):
            raise InvalidInput(f"{where or 'body'}: must be a JSON object", field=where or None)
        self.value = value
        self.where = where
        self.read: set[str] = set()

    def at(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def has(self, key: str) -> bool:
        return self.value.get(key) is not None

    def raw(self, key: str) -> Any:
        self.read.add(key)
        return self.value.get(key)

    def text(self, key: str, *, required: bool = False, max_length: int = MAX_NAME,
             check: Callable[[str], str | None] | None = None, dicom: bool = True) -> str:
        value = self.raw(key)
        where = self.at(key)
        if value is None:
            if required:
                raise InvalidInput(f"{where}: is required", field=where)
            return ""
        if not isinstance(value, str):
            raise InvalidInput(f"{where}: must be a string", field=where)
        if required and not value.strip():
            raise InvalidInput(f"{where}: must not be empty", field=where)
        if len(value) > max_length:
            raise InvalidInput(f"{where}: at most {max_length} characters", field=where)
        if not value.isprintable() or (dicom and "\\" in value):
            raise InvalidInput(f"{where}: contains characters that are not allowed",
                               field=where)
        if check is not None and value:
            problem = check(value)
            if problem:
                raise InvalidInput(f"{where}: {problem}", field=where)
        return value

    def uid(self, key: str, *, required: bool = False) -> str:
        return self.text(key, required=required, check=_uid_problem)

    def boolean(self, key: str, default: bool) -> bool:
        value = self.raw(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise InvalidInput(f"{self.at(key)}: must be true or false", field=self.at(key))
        return value

    def items(self, key: str, *, required: bool) -> list[Any]:
        value = self.raw(key)
        where = self.at(key)
        if value is None:
            if required:
                raise InvalidInput(f"{where}: is required", field=where)
            return []
        if not isinstance(value, list):
            raise InvalidInput(f"{where}: must be a list", field=where)
        if required and not value:
            raise InvalidInput(f"{where}: must not be empty", field=where)
        if len(value) > MAX_ITEMS:
            raise InvalidInput(f"{where}: at most {MAX_ITEMS} items", field=where)
        return value

    def done(self) -> None:
        ignored = _IGNORED.get()
        if ignored is not None:
            ignored += [self.at(key) for key in self.value if key not in self.read]


def _uid_problem(value: str) -> str | None:
    return None if is_valid_uid(value) else "not a valid DICOM UID"


def _date_problem(value: str) -> str | None:
    try:
        datetime.strptime(value, "%Y%m%d")
    except ValueError:
        return "must be a date as YYYYMMDD"
    return None if len(value) == 8 else "must be a date as YYYYMMDD"


def _time_problem(value: str) -> str | None:
    return None if _TIME.match(value) else "must be a time as HHMMSS[.FFFFFF]"


def _sex_problem(value: str) -> str | None:
    return None if value in ("M", "F", "O") else "must be M, F or O"


def _cs_problem(value: str) -> str | None:
    return None if _CS.match(value) else "must be upper-case letters, digits, '_' or ' '"


def _name_problem(value: str) -> str | None:
    groups = value.split("=")
    if len(groups) > 3 or any(len(g) > 64 or g.count("^") > 4 for g in groups):
        return "not a DICOM person name (at most 5 components and 64 characters per group)"
    return None


def parse_body(text: bytes | str) -> OpenRequest:
    """Parse and check the raw body; InvalidInput for anything else than a valid request."""
    return parse_request(parse_json(text, "body"))


def parse_request(value: Any) -> OpenRequest:
    ignored: list[str] = []
    reset = _IGNORED.set(ignored)
    try:
        request = _parse_request(value)
    finally:
        _IGNORED.reset(reset)
    if ignored:
        names = ", ".join(repr(name[:80]) for name in ignored[:MAX_LOGGED_FIELDS])
        more = len(ignored) - MAX_LOGGED_FIELDS
        log.warning("POST request body: unknown field(s) ignored: %s%s", names,
                    f" and {more} more" if more > 0 else "")
    return request


def _parse_request(value: Any) -> OpenRequest:
    body = _Object(value, "")
    username = body.text("username", required=True, dicom=False)
    role = body.text("role", required=True, dicom=False)
    has_studies, has_folder = body.has("studies"), body.has("folder")
    if has_studies == has_folder:
        raise InvalidInput("exactly one of studies and folder is required", field="studies")
    opening = _opening_parameters(body)
    folder = ""
    studies: list[StudyEntry] = []
    if has_folder:
        spec = _Object(body.raw("folder"), "folder")
        folder = spec.text("path", required=True, max_length=MAX_FILE, dicom=False)
        spec.done()
    else:
        items = body.items("studies", required=True)
        studies = [_study(item, f"studies[{i}]") for i, item in enumerate(items)]
        _check_unique(studies)
    body.done()
    return OpenRequest(username, role, tuple(studies), folder, opening)


def _opening_parameters(body: _Object) -> OpeningParameters:
    given = [key for key in OPENING_KEYS if body.raw(key) is not None]
    if not given:
        return OpeningParameters()
    if len(given) > 1:
        raise InvalidInput("give openingParameters or OpeningParameters, not both",
                           field=given[1])
    obj = _Object(body.raw(given[0]), given[0])
    visibility = obj.text("annotationVisibility", max_length=8, dicom=False).upper() or "ALL"
    if visibility not in ("ALL", "USER"):
        where = obj.at("annotationVisibility")
        raise InvalidInput(f"{where}: must be ALL or USER", field=where)
    hide_documents = obj.boolean("hideDocuments", False) if obj.has("hideDocuments") else None
    opening = OpeningParameters(
        collapse_previews=obj.boolean("collapsePreviews", False),
        anonymize=obj.boolean("anonymize", False),
        hide_search=obj.boolean("hideSearch", True),
        hide_documents=hide_documents,
        hide_layers=obj.boolean("hideLayers", False),
        annotation_visibility=visibility,
        full_preload_study=_uid_list(obj, "fullPreloadStudy"),
    )
    obj.done()
    return opening


def _uid_list(obj: _Object, key: str) -> tuple[str, ...]:
    """A UID, or a list of them (the GET API's 1-n parameter)."""
    value = obj.raw(key)
    where = obj.at(key)
    if value is None:
        return ()
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or len(values) > MAX_ITEMS:
        raise InvalidInput(f"{where}: must be a UID or a list of at most {MAX_ITEMS} UIDs",
                           field=where)
    for index, uid in enumerate(values):
        if not isinstance(uid, str) or not is_valid_uid(uid):
            at = f"{where}[{index}]" if isinstance(value, list) else where
            raise InvalidInput(f"{at}: not a valid DICOM UID", field=at)
    return tuple(dict.fromkeys(values))


def _study(value: Any, where: str) -> StudyEntry:
    obj = _Object(value, where)
    storage = _storage(obj.raw("storage"), obj.at("storage")) if obj.has("storage") else None
    obj.raw("storage")
    kind = storage.type if storage else "local"
    study = StudyEntry(
        where=where,
        study_uid=obj.uid("studyInstanceUID", required=True),
        storage=storage,
        patient_id=obj.text("patientID"),
        patient_name=obj.text("patientName", max_length=3 * 64 + 2, check=_name_problem),
        birth_date=obj.text("patientBirthDate", max_length=8, check=_date_problem),
        sex=obj.text("patientSex", max_length=1, check=_sex_problem),
        accession=obj.text("accessionNumber", max_length=16),
        study_date=obj.text("studyDate", max_length=8, check=_date_problem),
        study_time=obj.text("studyTime", max_length=13, check=_time_problem),
        description=obj.text("studyDescription"),
        series=tuple(
            _series(item, f"{where}.series[{i}]", kind, i + 1)
            for i, item in enumerate(obj.items("series", required=kind != "wado-rs"))
        ),
    )
    obj.done()
    return study


def _series(value: Any, where: str, kind: str, number: int) -> SeriesEntry:
    obj = _Object(value, where)
    series = SeriesEntry(
        where=where,
        series_uid=obj.uid("seriesInstanceUID", required=True),
        description=obj.text("seriesDescription"),
        modality=obj.text("modality", max_length=16, check=_cs_problem),
        instances=tuple(
            _instance(item, f"{where}.instances[{i}]", kind, i + 1)
            for i, item in enumerate(obj.items("instances", required=kind != "wado-rs"))
        ),
        number=number,
    )
    obj.done()
    return series


def _instance(value: Any, where: str, kind: str, number: int) -> InstanceEntry:
    obj = _Object(value, where)
    wado = kind in WADO_TYPES
    sop_uid = obj.uid("sopInstanceUID", required=wado)
    file = obj.text("file", required=not wado, max_length=MAX_FILE, dicom=False)
    if wado and file:
        raise InvalidInput(f"{obj.at('file')}: not used with {kind} (instances are named by "
                           "sopInstanceUID)", field=obj.at("file"))
    mime = obj.text("mimeType", required=not wado, dicom=False)
    if mime and mime not in MIME_TYPES:
        raise InvalidInput(
            f"{obj.at('mimeType')}: unsupported mimeType {mime!r} (supported: "
            f"{', '.join(MIME_TYPES)})", field=obj.at("mimeType"))
    if wado and mime not in ("", "application/dicom"):
        raise InvalidInput(f"{obj.at('mimeType')}: {kind} serves application/dicom only",
                           field=obj.at("mimeType"))
    slide = SlideMetadata(**{attr: obj.text(name) for name, attr in JSON_FIELDS.items()})
    if MIME_TYPES.get(mime) == "slide" and not slide.container_identifier:
        # A non-DICOM slide is found again only by its identifier (the slide barcode).
        where = obj.at("containerIdentifier")
        raise InvalidInput(f"{where}: is required for a non-DICOM slide", field=where)
    obj.done()
    return InstanceEntry(where, sop_uid, file, mime, slide, number)


def _storage(value: Any, where: str) -> StorageSpec:
    obj = _Object(value, where)
    kind = obj.text("type", required=True, dicom=False)
    if kind not in STORAGE_TYPES:
        raise InvalidInput(f"{obj.at('type')}: unknown storage type {kind!r} (known: "
                           f"{', '.join(STORAGE_TYPES)})", field=obj.at("type"))
    if kind in WADO_TYPES:
        name = obj.text("name", required=True, max_length=MAX_FILE, dicom=False)
        url, user, password = _url(obj)
        spec = StorageSpec(kind, name, url=url, http_headers=_headers(obj), url_user=user,
                           url_password=password)
    else:
        name = obj.text("name", required=True, max_length=222, dicom=False,
                        check=lambda v: None if _BUCKET.match(v) else "not a bucket name")
        if kind in S3_TYPES:
            spec = StorageSpec(
                kind, name,
                region=obj.text("region", required=True, dicom=False,
                                check=lambda v: None if _REGION.match(v) else "not a region"),
                access_key=obj.text("accessKey", required=True, max_length=256, dicom=False),
                secret_key=obj.text("secretAccessKey", required=True, max_length=256,
                                    dicom=False),
            )
        else:
            spec = StorageSpec(kind, name, service_account=_service_account(obj))
    obj.done()
    return spec


def _url(obj: _Object) -> tuple[str, str, str]:
    """(the URL without user name and password, the user name, the password)."""
    url = obj.text("url", required=True, max_length=MAX_FILE, dicom=False)
    where = obj.at("url")
    try:
        parts = urlsplit(url)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
        _ = parts.port  # out of range: ValueError
    except ValueError:
        valid = False
    if not valid:
        raise InvalidInput(f"{where}: must be an http or https URL", field=where)
    if parts.query or parts.fragment:
        raise InvalidInput(f"{where}: must not carry a query or fragment", field=where)
    userinfo, _, host = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    return urlunsplit(parts._replace(netloc=host)), unquote(user), unquote(password)


def _headers(obj: _Object) -> dict[str, str]:
    value = obj.raw("httpHeaders")
    where = obj.at("httpHeaders")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput(f"{where}: must be an object of header names and values",
                           field=where)
    headers: dict[str, str] = {}
    for name, text in value.items():
        at = f"{where}.{name}"
        if not _HEADER_NAME.match(name):
            raise InvalidInput(f"{where}: not a valid header name", field=where)
        if not isinstance(text, str) or len(text) > 8192 or any(c in text for c in "\r\n\x00"):
            raise InvalidInput(f"{at}: must be a single-line string", field=at)
        headers[name] = text
    return headers


def _service_account(obj: _Object) -> dict[str, Any]:
    token = obj.text("token", required=True, max_length=65536, dicom=False)
    where = obj.at("token")
    try:
        info = parse_json(base64.b64decode(token.strip(), validate=True), where)
    except (binascii.Error, ValueError, InvalidInput) as exc:
        raise InvalidInput(f"{where}: must be a base64-encoded service-account key (JSON)",
                           field=where) from exc
    if not isinstance(info, dict) or info.get("type") != "service_account":
        raise InvalidInput(f"{where}: not a service-account key", field=where)
    for key in ("client_email", "private_key"):
        if not isinstance(info.get(key), str) or not info[key]:
            raise InvalidInput(f"{where}: the service-account key has no {key}", field=where)
    return info


def _check_unique(studies: list[StudyEntry]) -> None:
    """A SOP Instance UID names one instance: the same one twice would open one of them. (A
    study or series may be named twice: its instances can come from several storages.)"""
    seen: set[str] = set()
    for study in studies:
        for series in study.series:
            for instance in series.instances:
                if instance.sop_uid and instance.sop_uid in seen:
                    where = f"{instance.where}.sopInstanceUID"
                    raise InvalidInput(f"{where}: the same instance is named twice",
                                       field=where)
                seen.add(instance.sop_uid)
