"""A Structured Report as lines a person reads: headings for containers, "concept: value" for
the rest, nested as in the content tree.

Patient-level header values are never part of it (the banner has them); in an anonymized
session person names inside the content are replaced too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset

MAX_LINES = 5000
HIDDEN = "(hidden)"


@dataclass(frozen=True)
class ReportLine:
    level: int
    label: str
    value: str
    heading: bool = False

    def as_json(self) -> dict[str, Any]:
        return {"level": self.level, "label": self.label, "value": self.value,
                "heading": self.heading}


def _meaning(item: Dataset, keyword: str = "ConceptNameCodeSequence") -> str:
    codes = item.get(keyword)
    if not codes:
        return ""
    code = codes[0]
    return str(code.get("CodeMeaning") or code.get("CodeValue") or "")


def _value(item: Dataset, anonymize: bool) -> str:
    kind = str(item.get("ValueType", ""))
    if kind == "TEXT":
        return str(item.get("TextValue", ""))
    if kind == "CODE":
        return _meaning(item, "ConceptCodeSequence")
    if kind == "NUM":
        measured = item.get("MeasuredValueSequence")
        if not measured:
            return ""
        value = measured[0]
        unit = _meaning(value, "MeasurementUnitsCodeSequence")
        return f"{value.get('NumericValue', '')} {unit}".strip()
    if kind == "PNAME":
        return HIDDEN if anonymize else str(item.get("PersonName", "")).replace("^", " ").strip()
    if kind == "DATE":
        return str(item.get("Date", ""))
    if kind == "TIME":
        return str(item.get("Time", ""))
    if kind == "DATETIME":
        return str(item.get("DateTime", ""))
    if kind == "UIDREF":
        return str(item.get("UID", ""))
    if kind in ("IMAGE", "COMPOSITE", "WAVEFORM"):
        refs = item.get("ReferencedSOPSequence")
        return f"reference to {len(refs)} object(s)" if refs else "reference"
    if kind in ("SCOORD", "SCOORD3D", "TCOORD"):
        return f"{kind.lower()} {item.get('GraphicType', '')}".strip()
    return ""


def report_lines(ds: Dataset, anonymize: bool) -> tuple[str, list[ReportLine]]:
    title = _meaning(ds) or str(ds.get("SeriesDescription") or "Report")
    lines: list[ReportLine] = []
    for keyword, label in (("CompletionFlag", "Completion"),
                           ("VerificationFlag", "Verification"),
                           ("ContentDate", "Content date")):
        if ds.get(keyword):
            lines.append(ReportLine(0, label, str(ds.get(keyword))))
    _walk(ds.get("ContentSequence") or [], 0, anonymize, lines)
    return title, lines[:MAX_LINES]


def _walk(items: Any, level: int, anonymize: bool, lines: list[ReportLine]) -> None:
    for item in items:
        if len(lines) >= MAX_LINES:
            return
        label = _meaning(item)
        if str(item.get("ValueType", "")) == "CONTAINER":
            lines.append(ReportLine(level, label, "", heading=True))
        else:
            lines.append(ReportLine(level, label, _value(item, anonymize)))
        children = item.get("ContentSequence")
        if children:
            _walk(children, level + 1, anonymize, lines)
