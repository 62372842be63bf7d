"""`find NODE[,NODE...] key=value... [--level STUDY]`: C-FIND on configured source nodes.

The matches are printed for the operator (patient names included: this is their terminal, not a
log); the nodes that failed are named on stderr, and make the exit code 1.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from node.commands import add_config_argument, load_dicom_config
from node.dimse import scu
from node.errors import InvalidInput

# The columns shown per level: (heading, DICOM keyword).
COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "PATIENT": (("Patient ID", "PatientID"), ("Name", "PatientName"),
                ("Birth date", "PatientBirthDate"), ("Sex", "PatientSex"),
                ("Studies", "NumberOfPatientRelatedStudies")),
    "STUDY": (("Patient ID", "PatientID"), ("Name", "PatientName"), ("Date", "StudyDate"),
              ("Accession", "AccessionNumber"), ("Modalities", "ModalitiesInStudy"),
              ("Description", "StudyDescription"),
              ("Instances", "NumberOfStudyRelatedInstances"),
              ("Study Instance UID", "StudyInstanceUID")),
    "SERIES": (("Modality", "Modality"), ("Number", "SeriesNumber"),
               ("Description", "SeriesDescription"),
               ("Instances", "NumberOfSeriesRelatedInstances"),
               ("Series Instance UID", "SeriesInstanceUID")),
    "IMAGE": (("Number", "InstanceNumber"), ("Frames", "NumberOfFrames"),
              ("SOP Class UID", "SOPClassUID"), ("SOP Instance UID", "SOPInstanceUID")),
}


def register(sub: Any) -> None:
    parser = sub.add_parser("find", help="C-FIND on configured source nodes")
    parser.add_argument("node", metavar="NODE",
                        help="AE title of a configured source node (several: comma-separated)")
    parser.add_argument("keys", metavar="KEY=VALUE", nargs="*",
                        help="query keys as DICOM keywords, e.g. PatientID=123 StudyDate=2024-")
    parser.add_argument("--level", default="STUDY", type=str.upper, choices=scu.LEVELS,
                        help="query level (default: STUDY)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds per node (default: dicom.query_timeout)")
    add_config_argument(parser)
    parser.set_defaults(func=run)


def parse_keys(pairs: list[str]) -> dict[str, str]:
    query: dict[str, str] = {}
    for pair in pairs:
        keyword, sep, value = pair.partition("=")
        if not sep or not keyword:
            raise InvalidInput(f"query key {pair!r} is not of the form Keyword=value")
        query[keyword] = value
    return query


def text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, MultiValue | list):
        return "\\".join(str(v) for v in value)
    return str(value)


def table(level: str, matches: list[tuple[str, Dataset]]) -> list[str]:
    columns = (("Node", ""), *COLUMNS[level])
    rows = [[ae, *(text(ds.get(kw)) for _, kw in COLUMNS[level])] for ae, ds in matches]
    widths = [max([len(heading), *(len(row[i]) for row in rows)])
              for i, (heading, _) in enumerate(columns)]
    lines = ["  ".join(h.ljust(w) for (h, _), w in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
              for row in rows]
    return lines


def run(args: argparse.Namespace) -> int:
    config = load_dicom_config(args.config)
    remotes = [config.source_node(ae.strip()) for ae in args.node.split(",") if ae.strip()]
    query = parse_keys(args.keys)
    result = asyncio.run(scu.find(config, remotes, args.level, query, args.timeout))
    for line in table(args.level, result.matches):
        print(line)
    answered = ", ".join(result.answered) or "none"
    print(f"{len(result.matches)} match(es) at {args.level} level; answered: {answered}")
    for failure in result.failed:
        print(f"{failure.ae_title}: failed: {failure.message}", file=sys.stderr)
    return 1 if result.failed else 0
