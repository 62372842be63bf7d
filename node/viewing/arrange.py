"""Arranging what resolution found into what each monitor opens, per the spec's rules."""

from __future__ import annotations

from dataclasses import dataclass, field

from node.viewing.study_resolution import Findings, FoundStudy, StudyRequest

# Order in which remote studies are retrieved: what the user sees first comes first.
PURPOSE_PRIORITY = {"open": 0, "preload": 1, "prior": 2, "history": 3}


@dataclass(frozen=True)
class Entry:
    study_uid: str
    purpose: str
    # None: found neither in the index nor on any source node asked.
    study: FoundStudy | None
    preload: bool = False


@dataclass
class Arrangement:
    # "studies": open the entries whose purpose is "open"; "history": the user picks.
    display: str
    entries: list[Entry] = field(default_factory=list)
    # The entries' study UIDs: a study is listed once, under the first purpose it was added for.
    _uids: set[str] = field(default_factory=set, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._uids.update(entry.study_uid for entry in self.entries)

    def add(self, uid: str, purpose: str, study: FoundStudy | None) -> None:
        if uid not in self._uids:
            self._uids.add(uid)
            self.entries.append(Entry(uid, purpose, study))

    def add_history(self, history: list[FoundStudy]) -> None:
        for study in history:
            self.add(study.study_uid, "history", study)

    def mark_preload(self, uids: tuple[str, ...], findings: Findings) -> None:
        if not uids:
            return
        for uid in uids:
            self.add(uid, "preload", findings.by_uid.get(uid))
        wanted = set(uids)
        self.entries = [
            Entry(e.study_uid, e.purpose, e.study, e.study_uid in wanted) for e in self.entries
        ]


def single(request: StudyRequest, findings: Findings) -> Arrangement:
    """The obscurl API: studyUID, else patientID + accNum, else accNum, else patientID."""
    if request.study_uids:
        arrangement = Arrangement("studies")
        for uid in request.study_uids:
            arrangement.add(uid, "open", findings.by_uid.get(uid))
    elif request.accession and request.patient_id:
        matched = [s for s in findings.history if s.accession == request.accession]
        arrangement = Arrangement("studies" if matched else "history")
        for study in matched:
            arrangement.add(study.study_uid, "open", study)
    elif request.accession:
        arrangement = Arrangement("studies")
        for study in findings.by_accession:
            arrangement.add(study.study_uid, "open", study)
    else:
        arrangement = Arrangement("history")
    arrangement.add_history(findings.history)
    for uid in request.history_list:
        arrangement.add(uid, "history", findings.by_uid.get(uid))
    arrangement.mark_preload(request.preload, findings)
    return arrangement


def primary(request: StudyRequest, findings: Findings) -> Arrangement:
    """The multimonitor API's first monitor: the requested studies, or the patient's history
    when none of them exists."""
    if request.study_uids:
        requested = [findings.by_uid[u] for u in request.study_uids if u in findings.by_uid]
    else:
        requested = list(findings.by_accession)
    arrangement = Arrangement("studies" if requested else "history")
    if requested:
        for uid in request.study_uids:
            # A requested study that exists nowhere is still listed, so the viewer can say so.
            arrangement.add(uid, "open", findings.by_uid.get(uid))
        for study in requested:
            arrangement.add(study.study_uid, "open", study)
    arrangement.add_history(findings.history)
    arrangement.mark_preload(request.preload, findings)
    return arrangement


def secondary(first: Arrangement, findings: Findings) -> Arrangement:
    """The second monitor: the patient's prior studies for comparison, i.e. the history minus
    what the first monitor opens, and no later than the newest study it opens."""
    opened = [e.study for e in first.entries if e.purpose == "open" and e.study is not None]
    newest = max((s.study_date for s in opened if s.study_date), default="")
    opened_uids = {s.study_uid for s in opened}
    arrangement = Arrangement("studies")
    for study in findings.history:
        if study.study_uid in opened_uids:
            continue
        if newest and study.study_date and study.study_date > newest:
            continue
        arrangement.add(study.study_uid, "prior", study)
    return arrangement
