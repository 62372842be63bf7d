"""The POST API's request body, checked into the typed request the node works with.

node/sources/request_body.py's models check the body field by field; every error names the
field by its path in the body (`studies[0].series[2].instances[0].file`), so that the caller can
find it in a request of hundreds of instances. A field the node does not know is ignored, and
the whole request's such fields are named in one log line: a caller adding a field of a later
version of the API (`folder.recursive`, say) still opens its studies. A known field with a wrong
type or value is refused.

Secrets (cloud keys, WADO headers, the user name and password of a WADO URL such as
`http://user:password@pacs/wado`) live only in `StorageSpec`, hidden from `repr`, and are left
out of `OpenRequest.as_json()`, which is what the viewing context keeps: its URL is the one
without them.
"""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from node.errors import InvalidInput
from node.input_fields import PROBLEM, field_path
from node.sources.json_input import parse_json
from node.sources.request_body import (
    MIME_TYPES,
    S3_TYPES,
    STORAGE_TYPES,
    WADO_TYPES,
    InstanceBody,
    RequestBody,
    SeriesBody,
    StorageBody,
    StudyBody,
    service_account,
    unknown_fields,
)
from node.sources.slide_metadata import JSON_FIELDS, SlideMetadata

__all__ = ["MIME_TYPES", "S3_TYPES", "STORAGE_TYPES", "WADO_TYPES"]

log = logging.getLogger(__name__)

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


def parse_body(text: bytes | str) -> OpenRequest:
    """Parse and check the raw body; InvalidInput for anything else than a valid request."""
    return parse_request(parse_json(text, "body"))


def parse_request(value: Any) -> OpenRequest:
    """The checked request; InvalidInput naming the first field that is wrong."""
    try:
        body = RequestBody.model_validate(value)
    except ValidationError as exc:
        raise _invalid_input(exc.errors(include_url=False)[0]) from None
    ignored = list(unknown_fields(body))
    if ignored:
        names = ", ".join(repr(name[:80]) for name in ignored[:MAX_LOGGED_FIELDS])
        more = len(ignored) - MAX_LOGGED_FIELDS
        log.warning("POST request body: unknown field(s) ignored: %s%s", names,
                    f" and {more} more" if more > 0 else "")
    return _request(body)


# pydantic's own error types, in the words this API has always used.
_WORDS = {
    "missing": "is required", "string_type": "must be a string",
    "bool_type": "must be true or false", "list_type": "must be a list",
    "model_type": "must be a JSON object", "model_attributes_type": "must be a JSON object",
    "dict_type": "must be a JSON object", "too_short": "must not be empty",
}
def _invalid_input(error: ErrorDetails) -> InvalidInput:
    where = field_path(error["loc"], error.get("ctx"))
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == PROBLEM and ctx.get("alone"):
        return InvalidInput(error["msg"], field=where)
    if kind == "string_too_long":
        words = f"at most {ctx['max_length']} characters"
    elif kind == "too_long":
        words = f"at most {ctx['max_length']} items"
    else:
        words = _WORDS.get(kind, error["msg"])
    return InvalidInput(f"{where or 'body'}: {words}", field=where or None)


def _request(body: RequestBody) -> OpenRequest:
    opening = body.opening
    return OpenRequest(
        username=body.username, role=body.role,
        studies=tuple(_study(study, f"studies[{i}]") for i, study in enumerate(body.studies)),
        folder=body.folder.path if body.folder else "",
        opening=OpeningParameters(
            collapse_previews=opening.collapse_previews, anonymize=opening.anonymize,
            hide_search=opening.hide_search, hide_documents=opening.hide_documents,
            hide_layers=opening.hide_layers,
            annotation_visibility=opening.annotation_visibility,
            full_preload_study=tuple(dict.fromkeys(opening.full_preload_study))),
    )


def _study(study: StudyBody, where: str) -> StudyEntry:
    return StudyEntry(
        where=where, study_uid=study.study_uid,
        storage=_storage(study.storage) if study.storage else None,
        patient_id=study.patient_id, patient_name=study.patient_name,
        birth_date=study.birth_date, sex=study.sex, accession=study.accession,
        study_date=study.study_date, study_time=study.study_time,
        description=study.description,
        series=tuple(_series(series, f"{where}.series[{i}]", i + 1)
                     for i, series in enumerate(study.series)),
    )


def _series(series: SeriesBody, where: str, number: int) -> SeriesEntry:
    return SeriesEntry(
        where=where, series_uid=series.series_uid, description=series.description,
        modality=series.modality, number=number,
        instances=tuple(_instance(instance, f"{where}.instances[{i}]", i + 1)
                        for i, instance in enumerate(series.instances)),
    )


def _instance(instance: InstanceBody, where: str, number: int) -> InstanceEntry:
    slide = _NO_SLIDE
    if not _SLIDE_FIELDS.isdisjoint(instance.model_fields_set):
        slide = SlideMetadata(**{attr: getattr(instance, attr) for attr in _SLIDE_FIELDS})
    return InstanceEntry(where, instance.sop_uid, instance.file, instance.mime_type, slide,
                         number)


# Most instances are no slide: they share one empty SlideMetadata.
_NO_SLIDE = SlideMetadata()
_SLIDE_FIELDS = frozenset(JSON_FIELDS.values())


def _storage(storage: StorageBody) -> StorageSpec:
    if storage.type in WADO_TYPES:
        parts = urlsplit(storage.url)
        userinfo, _, host = parts.netloc.rpartition("@")
        user, _, password = userinfo.partition(":")
        return StorageSpec(storage.type, storage.name,
                           url=urlunsplit(parts._replace(netloc=host)),
                           http_headers=storage.http_headers, url_user=unquote(user),
                           url_password=unquote(password))
    if storage.type in S3_TYPES:
        return StorageSpec(storage.type, storage.name, region=storage.region,
                           access_key=storage.access_key, secret_key=storage.secret_key)
    return StorageSpec(storage.type, storage.name,
                       service_account=service_account(storage.token))
