"""A searching viewer session's study search reaches the source nodes too.

A hospital user searching OHIF's study list expects the PACS's studies beside the node's. So
a study-level QIDO-RS of a session whose grant allows search (the role's permission, the token
not hiding it, never anonymized) asks the configured source nodes as well: C-FIND at STUDY
level with the same matching keys (QIDO-RS and C-FIND share their matching: wildcards, ranges,
UID lists), all nodes at once, each bounded by `[dicomweb] source_search_timeout`. A node that
fails or does not answer in time is named in a Warning header; the local matches are answered
all the same. Results are merged by StudyInstanceUID: a study the index holds is answered from
the index (local wins), whether or not the source's copy matched.

The sources are asked only when they can add something:
- the first page only (`offset` 0): a source node has no paging;
- a query with at least one matching value: an empty query would list the whole archive;
- not the study browser's "this patient's studies" (one exact PatientID, no issuer): a
  window's history is the grant's, and the study browser cannot open a study still elsewhere;
- for StudyInstanceUIDs, only those the index does not hold (OHIF asks for the study it
  opens: that one is local);
- every matching key is one a source node can match at STUDY level; otherwise the sources
  are not asked (an answer without that key would list studies that do not match), and a
  Warning says so.

A source's match carries InstanceAvailability NEARLINE and its RetrieveAETitle, and no
RetrieveURL: the node retrieves it when the session opens it (rest/ohif/found_opening.py).
The API key's reader (a hospital system) is never answered from the sources.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from node.dimse import scu
from node.services import NodeServices
from node.viewing.found_studies import local_studies
from rest.dicomweb.dicom_json import dataset_json, element
from rest.dicomweb.patient_scope import one_patient_id
from rest.dicomweb.readers import Reader

# Study-level keys a Study Root C-FIND SCP matches on (PS3.4 C.6.2.1.2, and the patient's
# keys Study Root carries at STUDY level).
SOURCE_KEYS = frozenset(scu.RETURN_KEYS["STUDY"]) - {
    "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances"}


@dataclass
class SourceAnswer:
    """What the source nodes added: their matches as QIDO-RS results, and the warnings."""

    results: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def asks_sources(who: Reader, offset: int, keys: Mapping[str, tuple[str, ...]]) -> bool:
    """Whether this study search is one to ask the source nodes (see the module's doc)."""
    return (who.grant is not None and bool(who.grant.features.get("search"))
            and offset == 0 and any(_matches_something(values) for values in keys.values())
            and one_patient_id(keys) is None)


def _matches_something(values: tuple[str, ...]) -> bool:
    """A key with a value other than universal matching ("" or "*")."""
    return any(value.strip().strip("*") for value in values)


def source_query(keys: Mapping[str, tuple[str, ...]], local_uids: set[str]
                 ) -> dict[str, str] | str | None:
    """The C-FIND keys for the search; a reason (str) when the sources cannot be asked it;
    None when they have nothing to add (every StudyInstanceUID asked is local)."""
    query: dict[str, str] = {}
    for keyword, values in keys.items():
        given = [v for v in values if v.strip()]
        if not given:
            continue
        if keyword not in SOURCE_KEYS:
            return f"{keyword} cannot be matched on the source nodes"
        if keyword == "StudyInstanceUID":
            given = [uid for uid in given if uid not in local_uids]
            if not given:
                return None
        query[keyword] = "\\".join(given)
    return query


async def search_sources(services: NodeServices, who: Reader,
                         keys: Mapping[str, tuple[str, ...]], returned: Sequence[str],
                         local_uids: set[str], room: int) -> SourceAnswer:
    """The sources' matches that the index does not hold (`local_uids`: the local matches),
    at most `room` of them, as QIDO-RS results with the `returned` attributes; warnings for
    the nodes that did not answer."""
    answer = SourceAnswer()
    config = services.config
    if not config.source_nodes or room <= 0:
        return answer
    query = source_query(keys, local_uids)
    if query is None:
        return answer
    if isinstance(query, str):
        answer.warnings.append(f'299 VIEWNODE "The source nodes were not asked: {query}"')
        return answer
    found = await scu.find(config, config.source_nodes, "STUDY", query,
                           timeout=config.dicomweb.source_search_timeout)
    answer.warnings += [_failure_warning(f) for f in found.failed]
    by_uid: dict[str, tuple[str, Dataset]] = {}
    for ae_title, ds in found.matches:
        uid = str(ds.get("StudyInstanceUID", ""))
        if uid and uid not in local_uids:
            by_uid.setdefault(uid, (ae_title, ds))
    # A study the index holds is the index's, even where its copy did not match locally.
    held = await local_studies(services, list(by_uid))
    for uid, (ae_title, ds) in by_uid.items():
        if uid in held:
            continue
        answer.results.append(_result(_values(ds, returned), ae_title, who))
        if len(answer.results) >= room:
            break
    return answer


def _values(ds: Dataset, returned: Sequence[str]) -> dict[str, str]:
    """A C-FIND match as the index answers one: text per keyword, multi-values joined by a
    backslash (pydicom decoded them with the match's character set)."""
    values: dict[str, str] = {}
    for keyword in returned:
        if keyword not in ds:
            continue
        item = ds.data_element(keyword)
        value = None if item is None else item.value
        if value is None:
            values[keyword] = ""
        elif isinstance(value, MultiValue | list):
            values[keyword] = "\\".join(str(v) for v in value)
        else:
            values[keyword] = str(value)
    return values


def _result(values: Mapping[str, str], ae_title: str, who: Reader) -> dict[str, Any]:
    extra = [element("InstanceAvailability", "NEARLINE"), element("RetrieveAETitle", ae_title)]
    return dataset_json(values, who.anonymize, extra)


def _failure_warning(failure: scu.NodeFailure) -> str:
    """The Warning naming a source node that did not answer: its AE title and what kind of
    failure, not the message itself (which names the node's host and port, for the log)."""
    if "timed out" in failure.message:
        what = "did not answer in time"
    elif "refused or unreachable" in failure.message:
        what = "is unreachable"
    else:
        what = "failed (see the node's log)"
    return f'299 VIEWNODE "Source node {failure.ae_title} {what}"'
