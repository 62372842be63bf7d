"""The IHE PDI web content and README.TXT: a medium that is usable with no viewer at all.

INDEX.HTM in the root links one XHTML page per study in IHE_PDI/, each showing its series with
a JPEG preview. Names follow ISO 9660 level 1 (8.3, upper case) like the rest of the medium.
README.TXT is plain ASCII (names transliterated), as IHE PDI asks.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape

from dicomdir.profiles import MediaProfile

PDI_FOLDER = "IHE_PDI"
SOFTWARE = "viewnode 0.1.0"


@dataclass(frozen=True)
class SeriesSummary:
    number: str
    modality: str
    description: str
    instances: int
    record_types: tuple[str, ...]
    preview: str | None  # file name in IHE_PDI/


@dataclass(frozen=True)
class StudySummary:
    page: str  # file name in IHE_PDI/
    date: str
    time: str
    description: str
    accession: str
    study_id: str
    series: tuple[SeriesSummary, ...]


@dataclass(frozen=True)
class PatientSummary:
    name: str
    patient_id: str
    birth_date: str
    sex: str
    studies: tuple[StudySummary, ...]


@dataclass(frozen=True)
class ViewerSummary:
    """The viewer copied to the medium, and the launch files in the root."""

    folder: str
    launchers: tuple[tuple[str, str], ...]  # (platform, file name in the root)


@dataclass(frozen=True)
class MediumSummary:
    file_set_id: str
    profile: MediaProfile
    created: datetime
    creator: str
    patients: tuple[PatientSummary, ...]
    instances: int
    reencoded: int
    outside_profile: int
    viewer: ViewerSummary | None


def person_name(value: str) -> str:
    """A DICOM person name for people: "DOE^JANE" -> "DOE, JANE"; ideographic groups kept."""
    groups = value.split("=")
    shown = []
    for group in groups:
        parts = [p for p in group.split("^") if p]
        if parts:
            shown.append(", ".join(parts[:2]) + (" " + " ".join(parts[2:]) if parts[2:] else ""))
    return " = ".join(shown) if shown else "(no name)"


def dicom_date(value: str) -> str:
    if len(value) == 8 and value.isdigit():
        return f"{value[:4]}-{value[4:6]}-{value[6:]}"
    return value


def ascii_text(value: str) -> str:
    decomposed = unicodedata.normalize("NFKD", value)
    return decomposed.encode("ascii", "ignore").decode("ascii")


_XHTML_HEAD = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" '
    '"http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">\n'
    '<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en" lang="en">\n<head>\n'
    '<meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />\n'
    "<title>{title}</title>\n"
    '<style type="text/css">body{{font-family:sans-serif;margin:1em 2em}}'
    "table{{border-collapse:collapse}}td,th{{border:1px solid #999;padding:4px 8px;"
    "text-align:left;vertical-align:top}}img{{max-width:256px}}</style>\n"
    "</head>\n<body>\n"
)


def _page(title: str, body: str) -> bytes:
    return (_XHTML_HEAD.format(title=escape(title)) + body + "</body>\n</html>\n").encode("utf-8")


def index_page(summary: MediumSummary) -> bytes:
    """INDEX.HTM: the patients and studies on the medium, linking the study pages."""
    lines = [f"<h1>DICOM images: {escape(summary.file_set_id)}</h1>"]
    for patient in summary.patients:
        lines.append(
            f"<h2>{escape(person_name(patient.name))}</h2>\n<p>Patient ID "
            f"{escape(patient.patient_id)}; born {escape(dicom_date(patient.birth_date)) or '-'}"
            f"; sex {escape(patient.sex) or '-'}</p>"
        )
        lines.append("<table>\n<tr><th>Date</th><th>Study</th><th>Accession</th>"
                     "<th>Series</th></tr>")
        for study in patient.studies:
            lines.append(
                f"<tr><td>{escape(dicom_date(study.date))}</td><td><a href=\"{PDI_FOLDER}/"
                f"{study.page}\">{escape(study.description or 'Study ' + study.study_id)}</a>"
                f"</td><td>{escape(study.accession)}</td><td>{len(study.series)}</td></tr>"
            )
        lines.append("</table>")
    lines.append(_viewer_paragraph(summary))
    lines.append('<p><a href="README.TXT">About this medium (README.TXT)</a></p>')
    return _page(f"DICOM images {summary.file_set_id}", "\n".join(lines) + "\n")


def _viewer_paragraph(summary: MediumSummary) -> str:
    if summary.viewer is None:
        return ("<p>These pages show a preview of each series. To look at the images "
                "themselves, open the file DICOMDIR with any DICOM viewer.</p>")
    launchers = ", ".join(f"{escape(name)} ({escape(platform)})"
                          for platform, name in summary.viewer.launchers)
    return (f"<p>A DICOM viewer is on this medium in the folder "
            f"{escape(summary.viewer.folder)}; start it with {launchers}.</p>")


def study_page(patient: PatientSummary, study: StudySummary) -> bytes:
    """IHE_PDI/STUnnnnn.HTM: the series of one study, each with its preview."""
    title = f"{person_name(patient.name)}: {study.description or 'Study ' + study.study_id}"
    lines = [
        f"<h1>{escape(title)}</h1>",
        f"<p>Study date {escape(dicom_date(study.date))}; accession "
        f"{escape(study.accession) or '-'}; study ID {escape(study.study_id)}</p>",
        "<table>\n<tr><th>Series</th><th>Modality</th><th>Description</th><th>Objects</th>"
        "<th>Preview</th></tr>",
    ]
    for series in study.series:
        preview = (f'<img src="{series.preview}" alt="Series {escape(series.number)}" />'
                   if series.preview else escape(_no_preview(series.record_types)))
        lines.append(
            f"<tr><td>{escape(series.number)}</td><td>{escape(series.modality)}</td>"
            f"<td>{escape(series.description)}</td><td>{series.instances}</td>"
            f"<td>{preview}</td></tr>"
        )
    lines.append('</table>\n<p><a href="../INDEX.HTM">Back to the index</a></p>')
    return _page(title, "\n".join(lines) + "\n")


def _no_preview(record_types: Sequence[str]) -> str:
    if any(t in ("SR DOCUMENT", "KEY OBJECT DOC") for t in record_types):
        return "report (no preview)"
    if "ENCAP DOC" in record_types:
        return "document (no preview)"
    return "no preview"


def readme(summary: MediumSummary) -> bytes:
    """README.TXT: who made the medium, when, what is on it, and how to view it."""
    lines = [
        "DICOM MEDIUM",
        "============",
        "",
        f"File-set ID:        {summary.file_set_id}",
        f"Created:            {summary.created.strftime('%Y-%m-%d %H:%M')}",
        f"Created by:         {ascii_text(summary.creator)} ({SOFTWARE})",
        f"Media profile:      {summary.profile.name} ({summary.profile.description})",
        f"DICOM objects:      {summary.instances}",
        "",
        "CONTENT",
        "-------",
    ]
    for patient in summary.patients:
        lines.append(f"Patient {ascii_text(person_name(patient.name))}, "
                     f"ID {ascii_text(patient.patient_id)}")
        for study in patient.studies:
            objects = sum(s.instances for s in study.series)
            lines.append(f"  {dicom_date(study.date)}  {ascii_text(study.description)}  "
                         f"({len(study.series)} series, {objects} objects)")
    lines += [
        "",
        "LAYOUT",
        "------",
        "DICOMDIR           the DICOM directory of every object on this medium (PS3.10)",
        "DICOM/             the DICOM files, named P*/S*/SE*/I* (patient/study/series/object)",
        "INDEX.HTM          open in a web browser: the studies with a preview of each series",
        f"{PDI_FOLDER}/           the pages and previews INDEX.HTM links to",
    ]
    if summary.reencoded:
        lines.append("")
        lines.append(
            f"{summary.reencoded} object(s) were rewritten in Explicit VR Little Endian for the "
            "media profile; no image was compressed or recompressed."
        )
    if summary.outside_profile:
        lines.append("")
        lines.append(
            f"{summary.outside_profile} object(s) are in a transfer syntax the media profile "
            "does not list and that could not be decoded here; they are as stored, and some "
            "viewers may not open them."
        )
    lines += ["", "VIEWING", "-------"]
    if summary.viewer is None:
        lines += [
            "No viewer is included. Open INDEX.HTM in any web browser for previews, or open",
            "DICOMDIR with any DICOM viewer (the medium follows DICOM PS3.10/3.11/3.12 and",
            "IHE PDI).",
        ]
    else:
        lines.append(f"A viewer is included in the folder {summary.viewer.folder}/.")
        for platform, name in summary.viewer.launchers:
            lines.append(f"  {platform}: run {name}")
        lines += [
            "The viewer may need a recent operating system (and, for Java viewers, a Java",
            "runtime if the folder does not bundle one). Any other DICOM viewer can open",
            "DICOMDIR too.",
        ]
    return ("\r\n".join(lines) + "\r\n").encode("ascii", "replace")
