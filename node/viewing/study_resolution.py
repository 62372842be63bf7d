"""Study resolution: which studies a viewing request names, and where each of them is.

The local index answers first. What it cannot answer is asked of the source nodes with C-FIND,
all queries at once and each bounded by the query timeout, so a dead node costs at most that
timeout and is reported rather than fatal. Remote queries are made only when they can add
something: for study UIDs, only the UIDs missing locally; for an accession number or a patient,
only when the index has no match, unless the request named its source nodes explicitly (then
those nodes are always asked, which is how a caller asks for a complete history).
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from pydicom.dataset import Dataset
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from node.config import Config, RemoteNode
from node.dimse import scu
from node.errors import Conflict, InvalidInput
from node.index.study_lookup import SqliteStudyLookup, StudyLookup
from node.services import NodeServices
from node.viewing.found_studies import local_studies


@dataclass(frozen=True)
class StudyRequest:
    """What a viewing request names; empty fields were not given."""

    study_uids: tuple[str, ...] = ()
    accession: str = ""
    # With a patient ID too: True looks the accession number up across all patients (the
    # multimonitor API), False among that patient's studies only (the obscurl API).
    accession_any_patient: bool = True
    patient_id: str = ""
    # Issuer of Patient ID: a patient is (PatientID, issuer); see patient_studies.
    issuer: str = ""
    history_list: tuple[str, ...] = ()
    preload: tuple[str, ...] = ()

    @functools.cached_property
    def all_uids(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.study_uids + self.history_list + self.preload))

    @property
    def issuer_value(self) -> str:
        """The IssuerOfPatientID the request means: "NONE" is the spec's word for none."""
        return "" if self.issuer.upper() == "NONE" else self.issuer

    @property
    def accession_across_patients(self) -> bool:
        return bool(self.accession) and (self.accession_any_patient or not self.patient_id)


@dataclass(frozen=True)
class FoundStudy:
    study_uid: str
    patient_id: str
    issuer: str
    accession: str
    study_date: str
    description: str
    # "" when the local index holds the study, else the AE title it is to be retrieved from:
    # a source node's match, or a local study whose last retrieval from there failed (the
    # index may hold part of it: node/index/study_lookup.py).
    source: str = ""


@dataclass(frozen=True)
class SourceFailure:
    ae_title: str
    message: str


@dataclass
class Findings:
    """Everything resolution learnt, before it is arranged into what each monitor opens."""

    by_uid: dict[str, FoundStudy] = field(default_factory=dict)
    by_accession: list[FoundStudy] = field(default_factory=list)
    history: list[FoundStudy] = field(default_factory=list)
    asked: list[str] = field(default_factory=list)
    answered: list[str] = field(default_factory=list)
    failed: list[SourceFailure] = field(default_factory=list)
    # Why the request cannot be answered (a Patient ID of several patients); raised by whoever
    # arranges the findings, so that one request's refusal never fails a batch of others.
    refusal: Conflict | None = None

    def set_history(self, request: StudyRequest, studies: Iterable[FoundStudy]) -> None:
        """The patient's studies (patient_studies), or the refusal of an ambiguous request."""
        try:
            self.history = patient_studies(request, studies)
        except Conflict as exc:
            self.history, self.refusal = [], exc

    def sources_json(self) -> dict[str, object]:
        return {"asked": self.asked, "answered": self.answered,
                "failed": [{"aeTitle": f.ae_title, "message": f.message} for f in self.failed]}


def select_sources(config: Config, names: Sequence[str]) -> tuple[RemoteNode, ...]:
    """The source nodes a request names (all configured ones when it names none); an AE title
    that is not configured is the caller's mistake."""
    if not names:
        return config.source_nodes
    known = {remote.ae_title: remote for remote in config.source_nodes}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise InvalidInput(f"sourceNodes: not a configured source node: {', '.join(unknown)}",
                           field="sourceNodes")
    return tuple(known[name] for name in dict.fromkeys(names))


def patient_studies(request: StudyRequest, studies: Iterable[FoundStudy]) -> list[FoundStudy]:
    """The studies of the one patient the request names: its PatientID with its issuer.

    A patient is (PatientID, IssuerOfPatientID): PIDA of one hospital is not PIDA of another,
    and a study whose issuer is unknown is not taken for one whose issuer is known
    (`idIssuer=NONE`, the spec's example, names the patient whose ID has no issuer). A request
    without idIssuer names the PatientID's only patient; when patients of several issuers
    share it, the request is ambiguous and refused (Conflict, naming idIssuer) rather than
    opening two patients under one token.
    """
    candidates = [s for s in studies if s.patient_id == request.patient_id]
    if request.issuer:
        return [s for s in candidates if s.issuer == request.issuer_value]
    issuers = sorted({s.issuer for s in candidates})
    if len(issuers) > 1:
        named = ", ".join(repr(i) if i else "none" for i in issuers)
        raise Conflict(f"idIssuer: patients of several issuers ({named}) have this Patient ID;"
                       " give idIssuer")
    return candidates


def another_patients_study(request: StudyRequest, findings: Findings) -> Conflict | None:
    """The refusal of a request naming a patient and a study that is another patient's.

    A caller (RIS, order entry) that names patientID with studyUID, historyList or
    fullPreloadStudy means that patient's studies; a study the node or a source node holds for
    another patient (another PatientID, or of another issuer when idIssuer is given) is a
    mismatch on the caller's side, the classic wrong-patient error. Opening it would show
    another patient's images where the reader expects this patient's, so the whole request is
    refused, naming the field and the study, and nothing of that patient is said.
    """
    if not request.patient_id:
        return None
    for name, uids in (("studyUID", request.study_uids), ("historyList", request.history_list),
                       ("fullPreloadStudy", request.preload)):
        for uid in uids:
            study = findings.by_uid.get(uid)
            if study is None:
                continue
            if study.patient_id != request.patient_id or (
                    request.issuer and study.issuer != request.issuer_value):
                return Conflict(f"{name}: study {uid} is another patient's than patientID"
                                f"{' with idIssuer' if request.issuer else ''}")
    return None


async def find_local(db: AsyncConnection | AsyncSession, request: StudyRequest) -> Findings:
    """The local index's answer: one query per kind of key the request holds."""
    findings = Findings()
    lookup = StudyLookup(db)
    uids = request.all_uids
    if uids:
        for row in await lookup.by_uids(uids):
            findings.by_uid[row[0]] = FoundStudy(*row)
    if request.accession_across_patients:
        findings.by_accession = [FoundStudy(*row)
                                 for row in await lookup.by_accession(request.accession)]
    if request.patient_id:
        findings.set_history(request, (FoundStudy(*row) for row
                                       in await lookup.by_patient_id(request.patient_id)))
    return findings


def find_local_sqlite(connection: sqlite3.Connection,
                      requests: list[StudyRequest]) -> list[Findings]:
    """find_local for many requests at once on a sqlite3 connection (node/viewing/store.py):
    the study UIDs of all of them in one query."""
    lookup = SqliteStudyLookup(connection)
    wanted = list(dict.fromkeys(uid for request in requests for uid in request.all_uids))
    found = {row[0]: FoundStudy(*row) for row in lookup.by_uids(wanted)}
    results = []
    for request in requests:
        findings = Findings(by_uid={uid: found[uid] for uid in request.all_uids if uid in found})
        if request.accession_across_patients:
            findings.by_accession = [FoundStudy(*row)
                                     for row in lookup.by_accession(request.accession)]
        if request.patient_id:
            findings.set_history(request, [FoundStudy(*row) for row
                                           in lookup.by_patient_id(request.patient_id)])
        results.append(findings)
    return results


def remote_queries(findings: Findings, request: StudyRequest,
                   explicit: bool) -> list[tuple[str, dict[str, str]]]:
    """The C-FIND queries (kind, keys) the source nodes would be asked, given what the index
    found; none when the index answered the whole request."""
    queries: list[tuple[str, dict[str, str]]] = []
    missing = [uid for uid in request.all_uids if uid not in findings.by_uid]
    if missing:
        queries.append(("uids", {"StudyInstanceUID": "\\".join(missing)}))
    if request.accession_across_patients and (explicit or not findings.by_accession):
        queries.append(("accession", {"AccessionNumber": request.accession}))
    # The patient's query also answers "which of their studies has this accession number".
    if request.patient_id and (explicit or not findings.history or (
            request.accession and not request.accession_across_patients
            and not any(s.accession == request.accession for s in findings.history))):
        keys = {"PatientID": request.patient_id, "IssuerOfPatientID": request.issuer_value}
        queries.append(("patient", keys))
    return queries


async def find_remote(
    services: NodeServices, findings: Findings, request: StudyRequest,
    sources: Sequence[RemoteNode], explicit: bool,
) -> None:
    """Complete `findings` from the source nodes, in place.

    A study a source node names for the patient or the accession number that the index holds
    already is the index's (whose copy the viewer shows and serves): when the index found it
    for the request, it is there already; when it did not, the index holds it for another
    patient or order (a PACS that corrected the patient after the node had stored the study),
    and taking the source's word would grant and open that other patient's images."""
    if not sources:
        return
    config = services.config
    queries = remote_queries(findings, request, explicit)
    if not queries:
        return
    missing = [uid for uid in request.all_uids if uid not in findings.by_uid]
    findings.asked = [remote.ae_title for remote in sources]
    order = {remote.ae_title: i for i, remote in enumerate(sources)}
    results = await asyncio.gather(*(
        scu.find(config, sources, "STUDY", keys, config.dicom.query_timeout)
        for _, keys in queries
    ))
    answered: set[str] = set()
    failures: dict[str, str] = {}
    found = [(kind, _studies(result.matches, order)) for (kind, _), result in zip(
        queries, results, strict=True)]
    held = await local_studies(services, list(dict.fromkeys(
        study.study_uid for kind, studies in found if kind != "uids" for study in studies)))
    for (kind, remote), result in zip(found, results, strict=True):
        answered.update(result.answered)
        for failure in result.failed:
            failures.setdefault(failure.ae_title, failure.message)
        if kind != "uids":
            remote = [study for study in remote if study.study_uid not in held]
        if kind == "uids":
            for study in remote:
                if study.study_uid in missing:
                    findings.by_uid.setdefault(study.study_uid, study)
        elif kind == "accession":
            findings.by_accession = _merge(findings.by_accession, (
                s for s in remote if s.accession == request.accession))
        else:
            findings.set_history(request, _merge(findings.history, remote))
    findings.answered = [ae for ae in findings.asked if ae in answered and ae not in failures]
    findings.failed = [SourceFailure(ae, msg) for ae, msg in failures.items()]


def _studies(matches: Sequence[tuple[str, Dataset]], order: dict[str, int]) -> list[FoundStudy]:
    """Remote matches as studies, one per UID, from the first source node in request order."""
    best: dict[str, tuple[int, FoundStudy]] = {}
    for ae_title, ds in matches:
        uid = _text(ds, "StudyInstanceUID")
        if not uid:
            continue
        rank = order.get(ae_title, len(order))
        if uid in best and best[uid][0] <= rank:
            continue
        best[uid] = (rank, FoundStudy(
            uid, _text(ds, "PatientID"), _text(ds, "IssuerOfPatientID"),
            _text(ds, "AccessionNumber"), _text(ds, "StudyDate"), _text(ds, "StudyDescription"),
            source=ae_title))
    return [study for _, study in best.values()]


def _merge(local: list[FoundStudy], remote: Iterable[FoundStudy]) -> list[FoundStudy]:
    """Local studies win over remote copies of the same UID; newest first."""
    known = {study.study_uid for study in local}
    merged = local + [study for study in remote if study.study_uid not in known]
    return sorted(merged, key=lambda s: (s.study_date, s.study_uid), reverse=True)


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword, "")
    return str(value).strip() if value is not None else ""
