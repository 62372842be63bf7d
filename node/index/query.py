"""C-FIND matching over the index (PS3.4 C.2.2.2), as one SQL statement per query.

The index keeps every attribute a query can ask for, so a C-FIND never opens a file. Matching
keys become WHERE clauses (single value, universal, wildcard, list of UIDs, date/time ranges,
case-insensitive person names); computed attributes (counts, ModalitiesInStudy) are correlated
subqueries of the same statement, so the database does the whole job in one round trip.

This module knows nothing of pynetdicom: keys arrive as keyword -> values, matches leave as
keyword -> text.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import AsyncGenerator, Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import (
    Engine,
    Select,
    SQLColumnExpression,
    and_,
    exists,
    func,
    literal,
    or_,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased

from node.errors import InvalidInput
from node.index.dicom_models import Instance, Patient, Series, Study
from node.index.wildcard_match import WildcardMatch


class Level(enum.IntEnum):
    """Query/Retrieve levels, ordered from the top of the hierarchy down."""

    PATIENT = 0
    STUDY = 1
    SERIES = 2
    IMAGE = 3


class Model(enum.Enum):
    PATIENT_ROOT = "patient-root"
    STUDY_ROOT = "study-root"


# What a key's values are compared as: it decides wildcard, range and case rules.
Kind = Literal["text", "name", "date", "time", "uid", "int", "count", "list"]

# The unique key of each level (PS3.4 C.6.1.1 / C.6.2.1).
UNIQUE_KEYS = {
    Level.PATIENT: "PatientID",
    Level.STUDY: "StudyInstanceUID",
    Level.SERIES: "SeriesInstanceUID",
    Level.IMAGE: "SOPInstanceUID",
}

Expr = SQLColumnExpression[Any]
AnySelect = Select[*tuple[Any, ...]]


@dataclass(frozen=True)
class Attribute:
    """One attribute the index can answer: where it lives and how it is matched."""

    keyword: str
    level: Level
    kind: Kind
    # The value returned; for computed attributes, built per dialect.
    value: Callable[[str], Expr]
    # What matching compares against, when it differs from the value (upper-cased names).
    match: Callable[[], Expr] | None = None


def _column(col: Any) -> Callable[[str], Expr]:
    return lambda _dialect: col


def _string_agg(col: Any, dialect: str) -> Expr:
    """Distinct values joined by ',' (the caller turns them into a DICOM multi-value)."""
    if dialect == "postgresql":
        return func.string_agg(col.distinct(), literal(","))
    return func.group_concat(col.distinct())


# Computed attributes are correlated subqueries over aliased tables. Building one (and SQLAlchemy
# adapting the alias's columns) took ~10 ms per C-FIND, as much as running it: each is built
# once per dialect and reused (SQL expressions are immutable; their cache keys are memoized).
@functools.cache
def _count_study_series(_dialect: str) -> Expr:
    s = aliased(Series)
    return select(func.count(s.id)).where(s.study_pk == Study.id).correlate(Study).scalar_subquery()


@functools.cache
def _count_study_instances(_dialect: str) -> Expr:
    s, i = aliased(Series), aliased(Instance)
    return (
        select(func.count(i.id)).join(s, i.series_pk == s.id)
        .where(s.study_pk == Study.id).correlate(Study).scalar_subquery()
    )


@functools.cache
def _count_series_instances(_dialect: str) -> Expr:
    i = aliased(Instance)
    return (
        select(func.count(i.id)).where(i.series_pk == Series.id).correlate(Series)
        .scalar_subquery()
    )


@functools.cache
def _count_patient_studies(_dialect: str) -> Expr:
    st = aliased(Study)
    return (
        select(func.count(st.id)).where(st.patient_pk == Patient.id).correlate(Patient)
        .scalar_subquery()
    )


@functools.cache
def _count_patient_series(_dialect: str) -> Expr:
    st, s = aliased(Study), aliased(Series)
    return (
        select(func.count(s.id)).join(st, s.study_pk == st.id)
        .where(st.patient_pk == Patient.id).correlate(Patient).scalar_subquery()
    )


@functools.cache
def _count_patient_instances(_dialect: str) -> Expr:
    st, s, i = aliased(Study), aliased(Series), aliased(Instance)
    return (
        select(func.count(i.id)).join(s, i.series_pk == s.id).join(st, s.study_pk == st.id)
        .where(st.patient_pk == Patient.id).correlate(Patient).scalar_subquery()
    )


@functools.cache
def _modalities_in_study(dialect: str) -> Expr:
    s = aliased(Series)
    return (
        select(_string_agg(s.modality, dialect)).where(s.study_pk == Study.id, s.modality != "")
        .correlate(Study).scalar_subquery()
    )


@functools.cache
def _sop_classes_in_study(dialect: str) -> Expr:
    s, i = aliased(Series), aliased(Instance)
    return (
        select(_string_agg(i.sop_class_uid, dialect)).join(s, i.series_pk == s.id)
        .where(s.study_pk == Study.id).correlate(Study).scalar_subquery()
    )


_ATTRIBUTES = [
    Attribute("PatientID", Level.PATIENT, "text", _column(Patient.patient_id)),
    Attribute("IssuerOfPatientID", Level.PATIENT, "text", _column(Patient.issuer)),
    Attribute("PatientName", Level.PATIENT, "name", _column(Patient.name),
              lambda: Patient.name_search),
    Attribute("PatientBirthDate", Level.PATIENT, "date", _column(Patient.birth_date)),
    Attribute("PatientSex", Level.PATIENT, "text", _column(Patient.sex)),
    Attribute("NumberOfPatientRelatedStudies", Level.PATIENT, "count", _count_patient_studies),
    Attribute("NumberOfPatientRelatedSeries", Level.PATIENT, "count", _count_patient_series),
    Attribute("NumberOfPatientRelatedInstances", Level.PATIENT, "count",
              _count_patient_instances),
    Attribute("StudyInstanceUID", Level.STUDY, "uid", _column(Study.study_uid)),
    Attribute("StudyDate", Level.STUDY, "date", _column(Study.study_date)),
    Attribute("StudyTime", Level.STUDY, "time", _column(Study.study_time)),
    Attribute("AccessionNumber", Level.STUDY, "text", _column(Study.accession_number)),
    Attribute("StudyID", Level.STUDY, "text", _column(Study.study_id)),
    Attribute("StudyDescription", Level.STUDY, "text", _column(Study.description)),
    Attribute("ReferringPhysicianName", Level.STUDY, "name", _column(Study.referring_physician),
              lambda: func.upper(Study.referring_physician)),
    Attribute("ModalitiesInStudy", Level.STUDY, "list", _modalities_in_study),
    Attribute("SOPClassesInStudy", Level.STUDY, "list", _sop_classes_in_study),
    Attribute("NumberOfStudyRelatedSeries", Level.STUDY, "count", _count_study_series),
    Attribute("NumberOfStudyRelatedInstances", Level.STUDY, "count", _count_study_instances),
    Attribute("SeriesInstanceUID", Level.SERIES, "uid", _column(Series.series_uid)),
    Attribute("Modality", Level.SERIES, "text", _column(Series.modality)),
    Attribute("SeriesNumber", Level.SERIES, "text", _column(Series.series_number)),
    Attribute("SeriesDescription", Level.SERIES, "text", _column(Series.description)),
    Attribute("BodyPartExamined", Level.SERIES, "text", _column(Series.body_part)),
    Attribute("NumberOfSeriesRelatedInstances", Level.SERIES, "count", _count_series_instances),
    Attribute("SOPInstanceUID", Level.IMAGE, "uid", _column(Instance.sop_uid)),
    Attribute("SOPClassUID", Level.IMAGE, "uid", _column(Instance.sop_class_uid)),
    Attribute("InstanceNumber", Level.IMAGE, "text", _column(Instance.instance_number)),
    Attribute("NumberOfFrames", Level.IMAGE, "int", _column(Instance.number_of_frames)),
    Attribute("ContainerIdentifier", Level.IMAGE, "text", _column(Instance.container_identifier)),
    Attribute("AvailableTransferSyntaxUID", Level.IMAGE, "uid", _column(Instance.transfer_syntax)),
]
ATTRIBUTES: Mapping[str, Attribute] = {a.keyword: a for a in _ATTRIBUTES}


@dataclass(frozen=True)
class FindRequest:
    """A C-FIND identifier reduced to what matching needs.

    `keys` maps each requested keyword to its values: () is universal matching, one value is
    single value / wildcard / range matching, several are list matching.
    """

    level: Level
    model: Model
    keys: Mapping[str, tuple[str, ...]]


@dataclass(frozen=True)
class FindMatch:
    """One response: keyword -> value (multi-values joined by backslash) and its character set."""

    values: dict[str, str]
    charset: str


@dataclass(frozen=True)
class StoredInstanceRef:
    """What a retrieval needs to send one instance as it is stored."""

    sop_class_uid: str
    sop_uid: str
    transfer_syntax: str
    path: str


def parse_level(value: str, model: Model) -> Level:
    """The Query/Retrieve Level of an identifier; InvalidInput when missing or not allowed."""
    text = value.strip().upper()
    if not text:
        raise InvalidInput("QueryRetrieveLevel is missing", field="QueryRetrieveLevel")
    try:
        level = Level[text]
    except KeyError:
        raise InvalidInput(f"unknown QueryRetrieveLevel {text!r}",
                           field="QueryRetrieveLevel") from None
    if model is Model.STUDY_ROOT and level is Level.PATIENT:
        raise InvalidInput("PATIENT level is not part of the Study Root model",
                           field="QueryRetrieveLevel")
    return level


def returned_keys(request: FindRequest) -> list[str]:
    """Keys whose values come back: every requested key the index knows at or above the
    query level, plus the unique keys of the level and the ones above it (within the model),
    and IssuerOfPatientID with PatientID: a patient is the pair, and PatientID alone could
    answer two patients of different issuers as two identical ones."""
    keys = [k for k in request.keys if k in ATTRIBUTES and ATTRIBUTES[k].level <= request.level]
    top = Level.PATIENT if request.model is Model.PATIENT_ROOT else Level.STUDY
    for level in Level:
        if top <= level <= request.level and UNIQUE_KEYS[level] not in keys:
            keys.append(UNIQUE_KEYS[level])
    if "PatientID" in keys and "IssuerOfPatientID" not in keys:
        keys.insert(keys.index("PatientID") + 1, "IssuerOfPatientID")
    return keys


def build_find(request: FindRequest, dialect: str,
               computed: Mapping[str, Expr] | None = None,
               scope: Scope | None = None) -> AnySelect:
    """The one SELECT answering a C-FIND; result columns are labelled by keyword. `computed`
    replaces the values of computed attributes (counts and lists within a Scope); `scope`:
    the lists of a study (ModalitiesInStudy, SOPClassesInStudy) are matched over what it
    shows, as their values are."""
    keys = returned_keys(request)
    replaced = computed or {}
    columns: list[Any] = [(replaced[k] if k in replaced else ATTRIBUTES[k].value(dialect))
                          .label(k) for k in keys]
    columns.append(_charset_column(request.level).label("_charset"))
    stmt = _from_level(select(*columns), request.level)
    return stmt.where(*_conditions(request.keys, request.level, scope))


@dataclass(frozen=True)
class Scope:
    """What a DICOMweb query may see and how much of it: the studies a viewer session is
    granted (None: all, for the API key), the patients a PatientID names for it, SOP classes
    it must not see, by UID prefix (documents hidden), and a page of the matches in a stable
    order."""

    studies: frozenset[str] | None = None
    # The index's patient rows a query may match (None: any).
    patients: frozenset[int] | None = None
    without_sop_class_prefixes: tuple[str, ...] = ()
    limit: int | None = None
    offset: int = 0
    # Instances of a hidden SOP class that stay visible all the same: those whose origin
    # starts with this (the measurements viewer sessions saved over STOW-RS are the readers'
    # annotations of the images, not documents). Empty: none.
    keep_origin_prefix: str = ""

    def hides(self, sop_class_uid: str, origin: str) -> bool:
        """Whether an instance of this class and origin is out of the scope's sight."""
        return sop_class_uid.startswith(self.without_sop_class_prefixes) and not (
            self.keep_origin_prefix and origin.startswith(self.keep_origin_prefix))


def build_scoped_find(request: FindRequest, dialect: str, scope: Scope) -> AnySelect:
    """build_find within a Scope (QIDO-RS): the same matching and values as C-FIND."""
    stmt = build_find(request, dialect, _scoped_computed(dialect, scope), scope)
    if scope.studies is not None:
        stmt = stmt.where(Study.study_uid.in_(sorted(scope.studies)))
    if scope.patients is not None:
        stmt = stmt.where(Study.patient_pk.in_(sorted(scope.patients)))
    if scope.without_sop_class_prefixes and request.level is Level.IMAGE:
        stmt = stmt.where(*shown_instances(Instance, scope))
    elif scope.without_sop_class_prefixes and request.level is Level.SERIES:
        shown = aliased(Instance)
        stmt = stmt.where(exists().where(shown.series_pk == Series.id,
                                         *shown_instances(shown, scope)))
    order = {Level.PATIENT: Patient.id, Level.STUDY: Study.id, Level.SERIES: Series.id,
             Level.IMAGE: Instance.id}[request.level]
    return stmt.order_by(order).limit(scope.limit).offset(scope.offset or None)


def _scoped_computed(dialect: str, scope: Scope) -> dict[str, Expr]:
    """The computed attributes of studies and series counted over what the scope shows, so
    that hidden documents are neither counted nor named by their modality or SOP class."""
    if not scope.without_sop_class_prefixes:
        return {}
    return _hidden_computed(dialect, scope.without_sop_class_prefixes, scope.keep_origin_prefix)


# Built once per dialect and hidden set, as the computed attributes above are.
@functools.cache
def _hidden_computed(dialect: str, prefixes: tuple[str, ...], keep_origin_prefix: str
                     ) -> dict[str, Expr]:
    scope = Scope(without_sop_class_prefixes=prefixes, keep_origin_prefix=keep_origin_prefix)
    s, i, shown = aliased(Series), aliased(Instance), aliased(Instance)
    series_shown = exists().where(shown.series_pk == s.id, *shown_instances(shown, scope))
    study_instances = (select(func.count(i.id)).join(s, i.series_pk == s.id)
                       .where(s.study_pk == Study.id, *shown_instances(i, scope)))
    series_instances = (select(func.count(i.id))
                        .where(i.series_pk == Series.id, *shown_instances(i, scope)))
    return {
        "ModalitiesInStudy": select(_string_agg(s.modality, dialect)).where(
            s.study_pk == Study.id, s.modality != "", series_shown
        ).correlate(Study).scalar_subquery(),
        "SOPClassesInStudy": select(_string_agg(i.sop_class_uid, dialect)).join(
            s, i.series_pk == s.id).where(s.study_pk == Study.id, *shown_instances(i, scope)
                                          ).correlate(Study).scalar_subquery(),
        "NumberOfStudyRelatedSeries": select(func.count(s.id)).where(
            s.study_pk == Study.id, series_shown).correlate(Study).scalar_subquery(),
        "NumberOfStudyRelatedInstances": study_instances.correlate(Study).scalar_subquery(),
        "NumberOfSeriesRelatedInstances": series_instances.correlate(Series).scalar_subquery(),
    }


def shown_instances(instance: Any, scope: Scope) -> list[Expr]:
    """Conditions on `instance` (the Instance model or an alias of it) that leave out what the
    scope hides (Scope.hides, in SQL)."""
    # UIDs hold digits and dots only: no LIKE wildcard to escape in a prefix.
    conditions = [instance.sop_class_uid.not_like(prefix + "%")
                  for prefix in scope.without_sop_class_prefixes]
    if scope.keep_origin_prefix and conditions:
        kept = instance.origin.startswith(scope.keep_origin_prefix, autoescape=True)
        return [or_(and_(*conditions), kept)]
    return conditions


async def scoped_find(sessions: async_sessionmaker[AsyncSession], request: FindRequest,
                      scope: Scope) -> list[FindMatch]:
    """The matches of a QIDO-RS query (one page of them, when the scope has a limit)."""
    async with sessions() as session:
        dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
        rows = (await session.execute(build_scoped_find(request, dialect, scope))).all()
    return [_match(row._mapping) for row in rows]


def build_retrieve(level: Level, keys: Mapping[str, tuple[str, ...]]) -> AnySelect:
    """The instances a C-MOVE/C-GET identifier names (same matching as C-FIND)."""
    stmt: AnySelect = select(Instance.sop_class_uid, Instance.sop_uid,
                               Instance.transfer_syntax, Instance.path)
    stmt = _from_level(stmt, Level.IMAGE)
    return stmt.where(*_conditions(keys, level)).order_by(Instance.series_pk, Instance.id)


def check_retrieve_keys(level: Level, keys: Mapping[str, tuple[str, ...]]) -> None:
    """A retrieval must name what it wants by the level's unique key: an empty one would move
    the whole archive."""
    unique = UNIQUE_KEYS[level]
    values = keys.get(unique, ())
    if not values or any(not v.strip() or "*" in v or "?" in v for v in values):
        raise InvalidInput(f"{unique} must hold one or more values at {level.name} level",
                           field=unique)


async def stream_find(
    sessions: async_sessionmaker[AsyncSession], request: FindRequest, batch_size: int = 256
) -> AsyncGenerator[list[FindMatch], None]:
    """The matches of a C-FIND, in batches, read from one streamed SELECT."""
    async with sessions() as session:
        dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
        result = await session.stream(build_find(request, dialect))
        async for partition in result.partitions(batch_size):
            yield [_match(row._mapping) for row in partition]


def find_in_thread(engine: Engine, request: FindRequest,
                   batch_size: int = 256) -> Generator[list[FindMatch], None, None]:
    """stream_find in the calling thread, on the SQLite file's thread reader
    (node/index/database.create_thread_reader)."""
    with engine.connect() as conn:
        result = conn.execute(build_find(request, engine.dialect.name))
        for partition in result.partitions(batch_size):
            yield [_match(row._mapping) for row in partition]


def _shared_patient_ids(level: Level, keys: Mapping[str, tuple[str, ...]]) -> AnySelect | None:
    """For a PATIENT level retrieval: the Patient IDs it names that several of the patients it
    matches share. A patient is (PatientID, issuer); a request whose IssuerOfPatientID is
    absent, empty or a wildcard matching several issuers names more than one, and is refused
    rather than moving two patients' images as one."""
    if level is not Level.PATIENT:
        return None
    return (select(Patient.patient_id).where(*_conditions(keys, Level.PATIENT))
            .group_by(Patient.patient_id).having(func.count(Patient.id) > 1))


def _refuse_shared(shared: Sequence[str]) -> None:
    if shared:
        raise InvalidInput("IssuerOfPatientID is needed: patients of several issuers have "
                           f"PatientID {', '.join(sorted(shared))}", field="IssuerOfPatientID")


async def find_instances(
    sessions: async_sessionmaker[AsyncSession], level: Level,
    keys: Mapping[str, tuple[str, ...]],
) -> list[StoredInstanceRef]:
    async with sessions() as session:
        shared = _shared_patient_ids(level, keys)
        if shared is not None:
            _refuse_shared((await session.scalars(shared)).all())
        rows = (await session.execute(build_retrieve(level, keys))).all()
    return [StoredInstanceRef(*row) for row in rows]


def find_instances_in_thread(engine: Engine, level: Level,
                             keys: Mapping[str, tuple[str, ...]]) -> list[StoredInstanceRef]:
    """find_instances in the calling thread, on the SQLite file's thread reader."""
    with engine.connect() as conn:
        shared = _shared_patient_ids(level, keys)
        if shared is not None:
            _refuse_shared(conn.scalars(shared).all())
        rows = conn.execute(build_retrieve(level, keys)).all()
    return [StoredInstanceRef(*row) for row in rows]


def _match(row: Mapping[Any, Any]) -> FindMatch:
    values: dict[str, str] = {}
    for key, value in row.items():
        if key == "_charset":
            continue
        kind = ATTRIBUTES[key].kind
        if value is None:
            values[key] = "0" if kind == "count" else ""
        elif kind == "list":
            values[key] = "\\".join(sorted(set(str(value).split(","))))
        else:
            values[key] = str(value)
    return FindMatch(values, str(row.get("_charset") or ""))


def _charset_column(level: Level) -> Expr:
    if level is Level.PATIENT:
        return Patient.charset
    if level is Level.IMAGE:
        return Instance.charset
    return Study.charset


def _from_level(stmt: AnySelect, level: Level) -> AnySelect:
    if level is Level.PATIENT:
        return stmt.select_from(Patient)
    if level is Level.STUDY:
        return stmt.select_from(Study).join(Patient, Study.patient_pk == Patient.id)
    if level is Level.SERIES:
        return (stmt.select_from(Series).join(Study, Series.study_pk == Study.id)
                .join(Patient, Study.patient_pk == Patient.id))
    return (stmt.select_from(Instance).join(Series, Instance.series_pk == Series.id)
            .join(Study, Series.study_pk == Study.id)
            .join(Patient, Study.patient_pk == Patient.id))


def _conditions(keys: Mapping[str, tuple[str, ...]], level: Level,
                scope: Scope | None = None) -> list[Expr]:
    """WHERE clauses for the matching keys; keys below the level or unknown are not matched."""
    conditions = []
    for keyword, values in keys.items():
        attribute = ATTRIBUTES.get(keyword)
        if attribute is None or attribute.level > level or attribute.kind == "count":
            continue
        condition = _key_condition(attribute, values, scope or Scope())
        if condition is not None:
            conditions.append(condition)
    return conditions


def _key_condition(attribute: Attribute, values: tuple[str, ...], scope: Scope
                   ) -> Expr | None:
    if attribute.kind == "list":
        if attribute.keyword == "ModalitiesInStudy":
            return _modalities_condition(values, scope)
        return _sop_classes_condition(values, scope)
    target = attribute.match() if attribute.match else attribute.value("")
    if attribute.kind == "uid":
        uids = [v.strip() for v in values if v.strip()]
        if not uids or any(v == "*" for v in uids):
            return None
        return target == uids[0] if len(uids) == 1 else target.in_(uids)
    return _any_of([_value_condition(attribute.kind, target, v) for v in values])


_LIST_SERIES = aliased(Series)
_LIST_INSTANCE = aliased(Instance)


def _modalities_condition(values: tuple[str, ...], scope: Scope) -> Expr | None:
    """A study matches ModalitiesInStudy when one of its series has one of the modalities
    (within a scope that hides documents: a series it shows, one of whose instances it
    shows)."""
    s, i = _LIST_SERIES, _LIST_INSTANCE
    condition = _any_of([_value_condition("text", s.modality, v) for v in values])
    if condition is None:
        return None
    if scope.without_sop_class_prefixes:
        condition = and_(condition, exists().where(i.series_pk == s.id,
                                                   *shown_instances(i, scope)))
    return exists().where(s.study_pk == Study.id, condition)


def _sop_classes_condition(values: tuple[str, ...], scope: Scope) -> Expr | None:
    """A study matches SOPClassesInStudy (list of UID matching) when one of its instances
    (that the scope shows) is of one of the classes."""
    s, i = _LIST_SERIES, _LIST_INSTANCE
    uids = sorted({v.strip() for v in values if v.strip()})
    if not uids or "*" in uids:
        return None
    return exists().where(i.series_pk == s.id, s.study_pk == Study.id,
                          i.sop_class_uid.in_(uids), *shown_instances(i, scope))


def _any_of(conditions: list[Expr | None]) -> Expr | None:
    """List matching: any value matches; one universal value makes the whole key universal."""
    if not conditions or any(c is None for c in conditions):
        return None
    present = [c for c in conditions if c is not None]
    return present[0] if len(present) == 1 else or_(*present)


def _value_condition(kind: Kind, target: Expr, raw: str) -> Expr | None:
    value = raw.strip()
    if kind == "name":
        value = value.upper()
    if not value or set(value) == {"*"}:
        return None
    if kind in ("date", "time"):
        if kind == "date":
            value = value.replace(".", "")
        if "-" in value:
            return _range_condition(kind, target, value)
    if kind == "int":
        return target == int(value) if value.isdigit() else literal(False)
    condition = _text_condition(target, value)
    if kind == "name" and "=" not in value and not value.endswith("*"):
        # A name given in one component group also matches a stored name that carries
        # ideographic/phonetic groups after '=' (the alphabetic group comes first).
        return or_(condition, _wildcard_condition(target, value + "=*"))
    return condition


def _text_condition(target: Expr, value: str) -> Expr:
    if "*" in value or "?" in value:
        return _wildcard_condition(target, value)
    return target == value


def _range_condition(kind: Kind, target: Expr, value: str) -> Expr:
    low, _, high = (part.strip() for part in value.partition("-"))
    # A range never matches an empty value (PS3.4 C.2.2.2.5).
    conditions = [target != ""]
    if low:
        conditions.append(target >= low)
    if high:
        # "1015" must include 10:15:59.999: compare times against the bound followed by a
        # character above every digit and '.'.
        conditions.append(target <= (high + "~" if kind == "time" else high))
    return and_(*conditions)


def _wildcard_condition(target: Expr, value: str) -> Expr:
    """`*` and `?` matching, case-sensitive on every database (node/index/wildcard_match.py);
    the literal prefix also becomes a range, so that an index on the column is used."""
    condition = WildcardMatch(target, value)
    prefix = value[: min(i for i in (value.find("*"), value.find("?"), len(value)) if i >= 0)]
    if not prefix:
        return condition
    upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    return and_(target >= prefix, target < upper, condition)



async def stored_syntaxes_since(
    sessions: async_sessionmaker[AsyncSession], after_id: int
) -> list[tuple[str, str, int]]:
    """The (SOP Class UID, transfer syntax) pairs of instances indexed after row `after_id`,
    each with the highest row id seen: a cheap, incremental way to know what is stored."""
    stmt = (
        select(Instance.sop_class_uid, Instance.transfer_syntax, func.max(Instance.id))
        .where(Instance.id > after_id)
        .group_by(Instance.sop_class_uid, Instance.transfer_syntax)
    )
    async with sessions() as session:
        rows = await session.execute(stmt)
        return [(str(a), str(b), int(c)) for a, b, c in rows]
