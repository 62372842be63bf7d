"""Which local studies a viewing request names: by Study Instance UID, by accession number,
by Patient ID; each match is (Study UID, PatientID, issuer, accession number, study date,
description, source), and the last two questions answer newest first.

`source` is "" for a study the index holds whole, as far as the node knows; for one whose last
retrieval from a source node failed (the index may hold part of it only), that node's AE title:
the viewing request then retrieves it again (node/viewing/issue.py) instead of showing a part
of the study as the whole of it.

Two versions side by side, asked the same questions: `StudyLookup` on an async SQLAlchemy
connection (any database), and `SqliteStudyLookup` on a sqlite3 connection of the thread that
owns a SQLite file's token work (node/viewing/store.py), where the study UIDs of a whole batch
of requests are looked up in one query.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

from sqlalchemy import and_, bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from node.index.dicom_models import Patient, Study
from node.index.job_models import Job

StudyMatch = tuple[str, str, str, str, str, str, str]

# The study's retrieval job ((kind, key) is unique), when it ended failed.
_FAILED_RETRIEVAL = and_(Job.kind == "retrieve", Job.key == Study.study_uid,
                         Job.state == "failed")
_COLUMNS = (Study.study_uid, Patient.patient_id, Patient.issuer, Study.accession_number,
            Study.study_date, Study.description,
            func.coalesce(Job.payload["source"].as_string(), ""))
_BASE = (select(*_COLUMNS).join(Patient, Study.patient_pk == Patient.id)
         .outerjoin(Job, _FAILED_RETRIEVAL))
_NEWEST_FIRST = (Study.study_date.desc(), Study.study_uid)
# Built once: constructing a statement per request cost more than running it.
_BY_UIDS = _BASE.where(Study.study_uid.in_(bindparam("uids", expanding=True)))
_BY_ACCESSION = _BASE.where(Study.accession_number == bindparam("accession")).order_by(
    *_NEWEST_FIRST)
_BY_PATIENT = _BASE.where(Patient.patient_id == bindparam("patient_id")).order_by(
    *_NEWEST_FIRST)

# The same three queries for sqlite3, each answering with one row holding every match as
# JSON: the sqlite3 module lets go of the GIL around each row it steps to, and the reader
# thread then waits for the event loop's thread to offer the GIL back (up to the 5 ms switch
# interval) once per row; one row is one wait.
_SQLITE_MATCHES = ("SELECT json_group_array(json_array(s.study_uid, p.patient_id, p.issuer, "
                   "s.accession_number, s.study_date, s.description, "
                   "coalesce(json_extract(j.payload, '$.source'), ''))) "
                   "FROM studies s JOIN patients p ON s.patient_pk = p.id "
                   "LEFT JOIN jobs j ON j.kind = 'retrieve' AND j.key = s.study_uid "
                   "AND j.state = 'failed'")
_SQLITE_BY_UIDS = f"{_SQLITE_MATCHES} WHERE s.study_uid IN (SELECT value FROM json_each(?))"
_SQLITE_BY_ACCESSION = f"{_SQLITE_MATCHES} WHERE s.accession_number = ?"
_SQLITE_BY_PATIENT = f"{_SQLITE_MATCHES} WHERE p.patient_id = ?"


def _match(row: Sequence[str]) -> StudyMatch:
    return (row[0], row[1], row[2], row[3], row[4], row[5], row[6])


class StudyLookup:
    """The three questions on an async connection or session (any database)."""

    def __init__(self, db: AsyncConnection | AsyncSession) -> None:
        self._db = db

    async def by_uids(self, uids: Sequence[str]) -> list[StudyMatch]:
        rows = await self._db.execute(_BY_UIDS, {"uids": list(uids)})
        return [_match(row) for row in rows.all()]

    async def by_accession(self, accession: str) -> list[StudyMatch]:
        rows = await self._db.execute(_BY_ACCESSION, {"accession": accession})
        return [_match(row) for row in rows.all()]

    async def by_patient_id(self, patient_id: str) -> list[StudyMatch]:
        rows = await self._db.execute(_BY_PATIENT, {"patient_id": patient_id})
        return [_match(row) for row in rows.all()]


class SqliteStudyLookup:
    """The same three questions on a sqlite3 connection, in the same order."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    def by_uids(self, uids: Sequence[str]) -> list[StudyMatch]:
        return self._matches(_SQLITE_BY_UIDS, json.dumps(list(uids))) if uids else []

    def by_accession(self, accession: str) -> list[StudyMatch]:
        return _newest_first(self._matches(_SQLITE_BY_ACCESSION, accession))

    def by_patient_id(self, patient_id: str) -> list[StudyMatch]:
        return _newest_first(self._matches(_SQLITE_BY_PATIENT, patient_id))

    def _matches(self, sql: str, value: str) -> list[StudyMatch]:
        (text,) = self._connection.execute(sql, (value,)).fetchone()
        return [_match(row) for row in json.loads(text)]


def _newest_first(studies: list[StudyMatch]) -> list[StudyMatch]:
    studies.sort(key=lambda s: s[0])
    studies.sort(key=lambda s: s[4], reverse=True)  # stable: UIDs stay ascending
    return studies
