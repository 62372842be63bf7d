"""The POST API's request body as pydantic models: what each field may hold, and the schema the
OpenAPI document shows for it (rest/obscurl_post.py), from one description.

A field's own checks (type, length, characters, format) sit on the field; what depends on other
fields (a WADO storage names instances by UID, a bucket by file; exactly one of studies and
folder) sits on the model that holds them both. Every error names the field by its path in the
body (`studies[0].series[2].instances[0].file`): node/sources/request.py turns the first one into
InvalidInput, and the checked body into the request the node works with.

JSON null counts as absent, as it always has. A field the models do not know is kept aside
(`model_extra`) for the request's one log line of ignored fields.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, ClassVar
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    StrictBool,
    WithJsonSchema,
    model_validator,
)

from node.errors import InvalidInput
from node.ingest.instance_record import is_valid_uid
from node.input_fields import UID_SCHEMA, TextField, problem
from node.sources.json_input import parse_json

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
MAX_BUCKET = 222
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$")
_CS = re.compile(r"^[A-Z0-9_ ]{1,16}$")
_TIME = re.compile(r"^([01][0-9]|2[0-3])([0-5][0-9]([0-5][0-9](\.[0-9]{1,6})?)?)?$")
_REGION = re.compile(r"^[a-z0-9-]{2,32}$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")
_SECRET = "never logged; kept only encrypted while its import runs"


@dataclass(frozen=True)
class Text(TextField):
    """A body text field's checks, in the order callers have always met them: a string, not
    blank when required, at most `max_length` characters, printable (and without backslash
    where it goes into DICOM), then `check`'s rule on a non-empty value. `pattern` is for the
    schema."""

    max_length: int = MAX_NAME
    dicom: bool = True
    required: bool = False
    check: Callable[[str], str | None] | None = None
    pattern: str | None = None

    def schema_extra(self) -> dict[str, Any]:
        return {"pattern": self.pattern} if self.pattern else {}

    def validate(self, value: str) -> str:
        if self.required and not value.strip():
            raise problem("must not be empty")
        if not value.isprintable() or (self.dicom and "\\" in value):
            raise problem("contains characters that are not allowed")
        if self.check is not None and value:
            found = self.check(value)
            if found:
                raise problem(found)
        return value


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


def _mime_problem(value: str) -> str | None:
    if value in MIME_TYPES:
        return None
    return f"unsupported mimeType {value!r} (supported: {', '.join(MIME_TYPES)})"


def _storage_type_problem(value: str) -> str | None:
    if value in STORAGE_TYPES:
        return None
    return f"unknown storage type {value!r} (known: {', '.join(STORAGE_TYPES)})"


def _enum(values: Any, description: str = "") -> WithJsonSchema:
    schema: dict[str, Any] = {"type": "string", "enum": list(values)}
    return WithJsonSchema({**schema, "description": description} if description else schema)


BodyUid = Annotated[str, Text(check=_uid_problem), WithJsonSchema(UID_SCHEMA)]
RequiredUid = Annotated[str, Text(required=True, check=_uid_problem), WithJsonSchema(UID_SCHEMA)]
DicomText = Annotated[str, Text()]
Date = Annotated[str, Text(8, check=_date_problem, pattern="^[0-9]{8}$")]


class BodyPart(BaseModel):
    """An object of the body: null is absent, unknown fields are kept aside, and inputs are
    never copied into errors (they may be secrets)."""

    model_config = ConfigDict(extra="allow", frozen=True, hide_input_in_errors=True)
    # The fields holding parts (or lists of them), walked for unknown fields.
    nested: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="before")
    @classmethod
    def _null_is_absent(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {key: item for key, item in value.items() if item is not None}
        return value

    def given(self, name: str) -> bool:
        """Whether the body gave this field (by its Python name)."""
        return name in self.model_fields_set


class InstanceBody(BodyPart):
    sop_uid: BodyUid = Field("", alias="sopInstanceUID")
    file: Annotated[str, Text(MAX_FILE, dicom=False)] = Field(
        "", description="A host path (mapped by `python -m node mapping add`) or an object key "
                        "of the bucket.")
    # Which mimeTypes are known is checked with the storage's needs (node/sources/request.py's
    # order: a blank one is missing before it is unknown).
    mime_type: Annotated[str, Text(dicom=False), _enum(MIME_TYPES)] = Field(
        "", alias="mimeType")
    # Digital pathology: node/sources/slide_metadata.py's JSON_FIELDS, in the spec's order.
    container_identifier: DicomText = Field("", alias="containerIdentifier")
    specimen_identifier: DicomText = Field("", alias="specimenIdentifier")
    specimen_alias: DicomText = Field("", alias="specimenAlias")
    specimen_procedure: DicomText = Field("", alias="specimenProcedure")
    specimen_body_site: DicomText = Field("", alias="specimenBodySite")
    block_identifier: DicomText = Field("", alias="blockIdentifier")
    block_alias: DicomText = Field("", alias="blockAlias")
    block_procedure: DicomText = Field("", alias="blockProcedure")
    slide_identifier: DicomText = Field("", alias="slideIdentifier")
    slide_alias: DicomText = Field("", alias="slideAlias")
    slide_stain_code: DicomText = Field("", alias="slideStainCode")


class SeriesBody(BodyPart):
    nested = ("instances",)
    series_uid: RequiredUid = Field(alias="seriesInstanceUID")
    description: DicomText = Field("", alias="seriesDescription")
    modality: Annotated[str, Text(16, check=_cs_problem, pattern="^[A-Z0-9_ ]+$")] = ""
    instances: list[InstanceBody] = Field(default_factory=list, max_length=MAX_ITEMS)


def _headers(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise problem("must be an object of header names and values")
    for name, text in value.items():
        if not _HEADER_NAME.match(name):
            raise problem("not a valid header name")
        if not isinstance(text, str) or len(text) > 8192 or any(c in text for c in "\r\n\x00"):
            raise problem("must be a single-line string", at=name)
    return dict(value)


class StorageBody(BodyPart):
    type: Annotated[str, Text(required=True, dicom=False, check=_storage_type_problem),
                    _enum(STORAGE_TYPES)]
    name: Annotated[str, Text(MAX_FILE, required=True, dicom=False)] = Field(
        description="Bucket name, or a label for a WADO server.")
    region: Annotated[str, Text(dicom=False)] = Field("", description="S3/Wasabi region.")
    access_key: Annotated[str, Text(256, dicom=False)] = Field(
        "", alias="accessKey", repr=False, description=f"S3/Wasabi access key ({_SECRET}).")
    secret_key: Annotated[str, Text(256, dicom=False)] = Field(
        "", alias="secretAccessKey", repr=False,
        description=f"S3/Wasabi secret key ({_SECRET}).")
    token: Annotated[str, Text(65536, dicom=False)] = Field(
        "", repr=False, description=f"Google service-account key, base64 JSON ({_SECRET}); its "
                                    "token_uri must be Google's.")
    url: Annotated[str, Text(MAX_FILE, dicom=False)] = Field(
        "", repr=False,
        description="WADO-RS base URL or WADO-URI URL. Loopback, link-local and this node's own "
                    "ports are refused unless [sources] allowed_hosts lists them; redirects to "
                    "another server are not followed. A user name and password in it are sent "
                    "as Basic authentication and kept like httpHeaders.")
    http_headers: Annotated[dict[str, str], PlainValidator(_headers), WithJsonSchema({
        "type": "object", "additionalProperties": {"type": "string"},
        "description": f"Headers sent to the WADO server and to no other ({_SECRET})."})] = Field(
        default_factory=dict, alias="httpHeaders", repr=False)

    @model_validator(mode="after")
    def _fields_of_its_type(self) -> StorageBody:
        """Each storage type needs its own fields; those of other types are not read."""
        if self.type in WADO_TYPES:
            _required(self, "url", "url")
            url_problem(self.url)
        else:
            if len(self.name) > MAX_BUCKET:
                raise problem(f"at most {MAX_BUCKET} characters", at="name")
            if not _BUCKET.match(self.name):
                raise problem("not a bucket name", at="name")
        if self.type in S3_TYPES:
            _required(self, "region", "region")
            if not _REGION.match(self.region):
                raise problem("not a region", at="region")
            _required(self, "access_key", "accessKey")
            _required(self, "secret_key", "secretAccessKey")
        if self.type == "google-bucket":
            _required(self, "token", "token")
            service_account(self.token)
        return self


def url_problem(url: str) -> None:
    """A WADO URL is http or https, with a host, without query or fragment."""
    try:
        parts = urlsplit(url)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
        _ = parts.port  # out of range: ValueError
    except ValueError:
        valid = False
    if not valid:
        raise problem("must be an http or https URL", at="url")
    if parts.query or parts.fragment:
        raise problem("must not carry a query or fragment", at="url")


def service_account(token: str) -> dict[str, Any]:
    """The decoded service-account key of a google-bucket's token."""
    try:
        info = parse_json(base64.b64decode(token.strip(), validate=True), "token")
    except (binascii.Error, ValueError, InvalidInput) as exc:
        raise problem("must be a base64-encoded service-account key (JSON)", at="token") from exc
    if not isinstance(info, dict) or info.get("type") != "service_account":
        raise problem("not a service-account key", at="token")
    for key in ("client_email", "private_key"):
        if not isinstance(info.get(key), str) or not info[key]:
            raise problem(f"the service-account key has no {key}", at="token")
    return info


def _required(part: BodyPart, name: str, alias: str, at: str = "") -> None:
    """A field that this part's context makes required: given, and not blank."""
    where = f"{at}.{alias}" if at else alias
    if not part.given(name):
        raise problem("is required", at=where)
    if not str(getattr(part, name)).strip():
        raise problem("must not be empty", at=where)


def _items(part: BodyPart, name: str, at: str) -> None:
    if not part.given(name):
        raise problem("is required", at=at)
    if not getattr(part, name):
        raise problem("must not be empty", at=at)


class StudyBody(BodyPart):
    nested = ("storage", "series")
    storage: StorageBody | None = None
    patient_id: DicomText = Field("", alias="patientID")
    patient_name: Annotated[str, Text(3 * 64 + 2, check=_name_problem)] = Field(
        "", alias="patientName", description="Patient's Name (DICOM PN).")
    birth_date: Date = Field("", alias="patientBirthDate")
    sex: Annotated[str, Text(1, check=_sex_problem), _enum("MFO")] = Field(
        "", alias="patientSex")
    study_uid: RequiredUid = Field(alias="studyInstanceUID")
    accession: Annotated[str, Text(16)] = Field("", alias="accessionNumber")
    study_date: Date = Field("", alias="studyDate")
    study_time: Annotated[str, Text(13, check=_time_problem)] = Field(
        "", alias="studyTime", description="HHMMSS[.FFFFFF]")
    description: DicomText = Field("", alias="studyDescription")
    series: list[SeriesBody] = Field(default_factory=list, max_length=MAX_ITEMS)

    @property
    def kind(self) -> str:
        """The storage type, or "local" for files named by host path."""
        return self.storage.type if self.storage else "local"

    @model_validator(mode="after")
    def _instances_as_its_storage_names_them(self) -> StudyBody:
        """WADO-RS may name a whole study; the others list series and instances. WADO names
        instances by UID, the others by file and mimeType."""
        kind = self.kind
        if kind != "wado-rs":
            _items(self, "series", "series")
        for s, series in enumerate(self.series):
            if kind != "wado-rs":
                _items(series, "instances", f"series[{s}].instances")
            for i, instance in enumerate(series.instances):
                _check_instance(instance, kind, f"series[{s}].instances[{i}]")
        return self


def _check_instance(instance: InstanceBody, kind: str, at: str) -> None:
    wado = kind in WADO_TYPES
    if wado:
        _required(instance, "sop_uid", "sopInstanceUID", at)
        if instance.file:
            raise problem(f"not used with {kind} (instances are named by sopInstanceUID)",
                          at=f"{at}.file")
    else:
        _required(instance, "file", "file", at)
        _required(instance, "mime_type", "mimeType", at)
    mime = instance.mime_type
    if mime and _mime_problem(mime):
        raise problem(str(_mime_problem(mime)), at=f"{at}.mimeType")
    if wado and mime not in ("", "application/dicom"):
        raise problem(f"{kind} serves application/dicom only", at=f"{at}.mimeType")
    if MIME_TYPES.get(instance.mime_type) == "slide" and not instance.container_identifier:
        # A non-DICOM slide is found again only by its identifier (the slide barcode).
        raise problem("is required for a non-DICOM slide", at=f"{at}.containerIdentifier")


class FolderBody(BodyPart):
    path: Annotated[str, Text(MAX_FILE, required=True, dicom=False)] = Field(
        description="A mapped host folder.")


def _uid_or_uids(value: Any) -> Any:
    """The GET API's 1-n parameter: one UID, or a list of them."""
    if isinstance(value, str):
        if not is_valid_uid(value):
            raise problem("not a valid DICOM UID")
        return [value]
    if not isinstance(value, list) or len(value) > MAX_ITEMS:
        raise problem(f"must be a UID or a list of at most {MAX_ITEMS} UIDs")
    return value


def _visibility(value: str) -> str:
    visibility = value.upper() or "ALL"
    if visibility not in ("ALL", "USER"):
        raise problem("must be ALL or USER")
    return visibility


class OpeningBody(BodyPart):
    """Viewer options, with the meanings and defaults of GET /ngv/obscurl's parameters, except
    hideDocuments."""

    collapse_previews: StrictBool = Field(False, alias="collapsePreviews",
                                          description="Show the thumbnail panel collapsed.")
    anonymize: StrictBool = False
    hide_search: StrictBool = Field(True, alias="hideSearch")
    hide_documents: Annotated[StrictBool | None, WithJsonSchema({
        "type": "boolean", "description": "Default: false when the request lists a document "
                                          "file itself (a PDF), else true."})] = Field(
        None, alias="hideDocuments")
    hide_layers: StrictBool = Field(False, alias="hideLayers")
    annotation_visibility: Annotated[
        str, Text(8, dicom=False), AfterValidator(_visibility), _enum(("ALL", "USER")),
    ] = Field("ALL", alias="annotationVisibility")
    full_preload_study: Annotated[
        list[BodyUid], BeforeValidator(_uid_or_uids),
        WithJsonSchema({"oneOf": [UID_SCHEMA, {"type": "array", "items": UID_SCHEMA}],
                        "description": "Studies to render ahead of time once imported (of "
                                       "those the request brings in)."}),
    ] = Field(default_factory=list, alias="fullPreloadStudy")


class RequestBody(BodyPart):
    """Exactly one of `studies` and `folder`."""

    nested = ("folder", "opening_parameters", "opening_spelt_as_in_the_list", "studies")

    username: Annotated[str, Text(required=True, dicom=False)] = Field(description="Who asks.")
    role: Annotated[str, Text(required=True, dicom=False)] = Field(
        description="An existing role.")
    folder: FolderBody | None = None
    opening_parameters: OpeningBody | None = Field(None, alias="openingParameters")
    opening_spelt_as_in_the_list: OpeningBody | None = Field(
        None, alias="OpeningParameters",
        description="The spec's other spelling of openingParameters (not both).")
    studies: list[StudyBody] = Field(default_factory=list, min_length=1, max_length=MAX_ITEMS)

    @model_validator(mode="after")
    def _one_source_and_one_opening(self) -> RequestBody:
        if self.given("studies") == self.given("folder"):
            raise problem("exactly one of studies and folder is required", at="studies",
                          alone=True)
        if self.opening_parameters is not None and self.opening_spelt_as_in_the_list is not None:
            raise problem("give openingParameters or OpeningParameters, not both",
                          at="OpeningParameters", alone=True)
        _check_unique(self.studies)
        return self

    @property
    def opening(self) -> OpeningBody:
        # The spec's example spells it `openingParameters`, its list of fields
        # `OpeningParameters`.
        return (self.opening_parameters or self.opening_spelt_as_in_the_list
                or OpeningBody.model_validate({}))


def _check_unique(studies: list[StudyBody]) -> None:
    """A SOP Instance UID names one instance: the same one twice would open one of them. (A
    study or series may be named twice: its instances can come from several storages.)"""
    seen: set[str] = set()
    for s, study in enumerate(studies):
        for r, series in enumerate(study.series):
            for i, instance in enumerate(series.instances):
                if instance.sop_uid and instance.sop_uid in seen:
                    raise problem("the same instance is named twice", at=(
                        f"studies[{s}].series[{r}].instances[{i}].sopInstanceUID"))
                seen.add(instance.sop_uid)


def unknown_fields(part: BodyPart, where: str = "") -> Iterator[str]:
    """The paths of the fields the models do not know, at any depth."""
    for key in part.model_extra or {}:
        yield f"{where}.{key}" if where else key
    for name in part.nested:
        value = getattr(part, name)
        alias = type(part).model_fields[name].alias or name
        at = f"{where}.{alias}" if where else alias
        if isinstance(value, BodyPart):
            yield from unknown_fields(value, at)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                yield from unknown_fields(item, f"{at}[{index}]")
