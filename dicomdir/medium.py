"""Laying out a medium from a selection of studies: DICOM files, DICOMDIR, PDI pages, viewer.

Linear in the number of instances: each instance's header is read once (without pixel data),
its leaf record built and its file placed; the DICOMDIR is encoded once at the end.

Choices that make the same content give the same medium:
- patients are grouped by (Patient ID, issuer); a study without a Patient ID is a patient of its
  own, never joined to another by a name and birth date they share, with an ID generated from
  its Study Instance UID (records.generated_patient_id);
- the PATIENT, STUDY, SERIES and IMAGE keys come from the index (no file is opened for them);
  when instances of one Patient ID and issuer carry different names, the index keeps the first
  name stored, and so does the PATIENT record; other records (SR DOCUMENT, ENCAP DOC,
  PRESENTATION, ...) are built from their instance's header;
- studies are ordered by date, time and UID; series by number then UID; instances by number
  then UID; File IDs number them in that order;
- empty Series/Instance Numbers get the next numbers after the largest one in use among their
  siblings; an empty Study ID gets one derived from the Study Instance UID (the same on every
  medium); other empty Type 1 keys are derived by records.fallback_value.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from dicomdir.content import BytesContent, MediumFile
from dicomdir.dicomdir_encoding import DirectoryRecord, encode_dicomdir
from dicomdir.file_ids import instance_file_id, numbered
from dicomdir.iso_image import IsoImage, build_iso
from dicomdir.media_viewer import VIEWER_FOLDER, ViewerSpec, autorun_inf, launchers, viewer_files
from dicomdir.pdi import (
    PDI_FOLDER,
    MediumSummary,
    PatientSummary,
    SeriesSummary,
    StudySummary,
    ViewerSummary,
    index_page,
    readme,
    study_page,
)
from dicomdir.preview import render_preview
from dicomdir.profiles import AUTO, MediaProfile, select_profile
from dicomdir.records import (
    PATIENT_KEYS,
    SERIES_KEYS,
    STUDY_KEYS,
    copy_keys,
    dataset_of,
    generated_study_id,
    leaf_keys,
    leaf_record_type,
    missing_type1,
    set_charset,
    stored_charset,
)
from dicomdir.selection import SelectedInstance, SelectedSeries, SelectedStudy, Selection
from dicomdir.transcode import medium_content
from node.config import Config

log = logging.getLogger(__name__)

# Values above this many bytes stay in the file until asked for: an encapsulated document or a
# waveform is not read just to build a directory record.
_DEFER_SIZE = 64 * 1024


@dataclass(frozen=True)
class MediumOptions:
    profile: str = "auto"
    creator: str = "VIEWNODE"
    viewer: ViewerSpec | None = None
    previews: bool = True


@dataclass
class Medium:
    """A laid-out medium; `close()` removes the work folder of decoded copies, if any."""

    file_set_id: str
    profile: MediaProfile
    files: list[MediumFile]
    image: IsoImage
    summary: MediumSummary
    work_dir: tempfile.TemporaryDirectory[str] | None = None

    def close(self) -> None:
        if self.work_dir is not None:
            self.work_dir.cleanup()
            self.work_dir = None

    def __enter__(self) -> Medium:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def medium_options(config: Config, profile: str = "auto") -> MediumOptions:
    """The options node.toml's [media] section gives a medium."""
    viewer = None
    if config.media.viewer_dir:
        viewer = ViewerSpec(
            folder=(config.base_dir / config.media.viewer_dir).resolve(),
            windows=config.media.viewer_windows,
            macos=config.media.viewer_macos,
            linux=config.media.viewer_linux,
            arguments=config.media.viewer_arguments,
        )
    return MediumOptions(profile=profile, creator=config.node.ae_title, viewer=viewer)


def file_set_id(study_uids: Iterable[str]) -> str:
    """DICOM_ and 10 hex digits of the studies' UIDs: 16 characters, valid as File-set ID
    (CS) and ISO 9660 volume identifier, without patient data in a label others can see."""
    digest = hashlib.sha1("\\".join(sorted(study_uids)).encode("ascii"), usedforsecurity=False)
    return "DICOM_" + digest.hexdigest()[:10].upper()


def _number(value: str) -> int | None:
    try:
        return int(float(value.strip()))
    except (ValueError, AttributeError):
        return None


def _numbering(values: Sequence[str]) -> list[str]:
    """Each number as an integer string, the empty (or unparseable) ones numbered after the
    largest in use."""
    parsed = [_number(v) for v in values]
    following = itertools.count(max((n for n in parsed if n is not None), default=0) + 1)
    return [str(n) if n is not None else str(next(following)) for n in parsed]


def _sort_key_number(value: str) -> tuple[int, int]:
    n = _number(value)
    return (0, n) if n is not None else (1, 0)


def _charset(ds: Dataset) -> str | list[str] | None:
    value = ds.get("SpecificCharacterSet")
    if not value:
        return None
    return value if isinstance(value, str) else list(value)


def _patient_key(study: SelectedStudy) -> tuple[str, ...]:
    if study.patient_id:
        return (study.patient_id, study.issuer)
    return ("", study.issuer, study.study_uid)


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    return "" if value is None else str(value)


@dataclass
class _Builder:
    profile: MediaProfile
    options: MediumOptions
    work_dir: tempfile.TemporaryDirectory[str] | None = None
    dicom_files: list[MediumFile] = field(default_factory=list)
    pdi_files: list[MediumFile] = field(default_factory=list)
    sop_uids: list[str] = field(default_factory=list)
    reencoded: int = 0
    outside_profile: int = 0
    studies: int = 0
    previews: int = 0

    def work_file(self) -> Path:
        if self.work_dir is None:
            self.work_dir = tempfile.TemporaryDirectory(prefix="medium-")
        return Path(tempfile.mkstemp(suffix=".dcm", dir=self.work_dir.name)[1])

    def header(self, instance: SelectedInstance) -> Dataset:
        return dcmread(instance.path, stop_before_pixels=True, defer_size=_DEFER_SIZE)

    def patient(self, number: int, studies: list[SelectedStudy]
                ) -> tuple[DirectoryRecord, PatientSummary]:
        studies = sorted(studies, key=lambda s: (s.study_date, s.study_time, s.study_uid))
        records = []
        summaries = []
        for index, study in enumerate(studies):
            record, study_summary = self.study(number, index + 1, study)
            records.append(record)
            summaries.append(study_summary)
        keys = self.patient_keys(studies)
        summary = PatientSummary(
            name=_text(keys, "PatientName"), patient_id=_text(keys, "PatientID"),
            birth_date=_text(keys, "PatientBirthDate"), sex=_text(keys, "PatientSex"),
            studies=tuple(summaries),
        )
        return DirectoryRecord("PATIENT", keys, records), summary

    def patient_keys(self, studies: list[SelectedStudy]) -> Dataset:
        """From the index (one row per Patient ID and issuer, its values those first stored);
        patients without an ID share that row, so theirs come from a header of their latest
        study."""
        latest = studies[-1]
        if latest.patient_id:
            source = dataset_of({
                "PatientName": latest.patient_name, "PatientID": latest.patient_id,
                "IssuerOfPatientID": latest.issuer, "PatientBirthDate": latest.birth_date,
                "PatientSex": latest.sex})
            charset = stored_charset(latest.patient_charset)
        else:
            source = self.header(latest.series[0].instances[0])
            charset = _charset(source)
        keys, _ = copy_keys(source, PATIENT_KEYS)
        set_charset(keys, charset)
        return keys

    def study(self, patient: int, number: int, study: SelectedStudy
              ) -> tuple[DirectoryRecord, StudySummary]:
        ordered = sorted(study.series,
                         key=lambda s: (*_sort_key_number(s.series_number), s.series_uid))
        series_numbers = _numbering([s.series_number for s in ordered])
        records = []
        summaries = []
        for index, (series, series_number) in enumerate(zip(ordered, series_numbers,
                                                            strict=True)):
            record, series_summary = self.series(
                (patient, number, index + 1), series, series_number, study.charset)
            records.append(record)
            summaries.append(series_summary)
        keys = self.study_keys(study, ordered[0].instances[0])
        self.studies += 1
        page = numbered("STU", self.studies) + ".HTM"
        summary = StudySummary(
            page=page, date=_text(keys, "StudyDate"), time=_text(keys, "StudyTime"),
            description=_text(keys, "StudyDescription"),
            accession=_text(keys, "AccessionNumber"),
            study_id=_text(keys, "StudyID"), series=tuple(summaries),
        )
        return DirectoryRecord("STUDY", keys, records), summary

    def study_keys(self, study: SelectedStudy, first: SelectedInstance) -> Dataset:
        generated = {"StudyID": study.study_id or generated_study_id(study.study_uid)}
        source = dataset_of({
            "StudyDate": study.study_date, "StudyTime": study.study_time,
            "StudyDescription": study.description, "StudyInstanceUID": study.study_uid,
            "StudyID": study.study_id, "AccessionNumber": study.accession})
        charset = stored_charset(study.charset)
        if missing_type1(source, STUDY_KEYS, generated):
            # A missing date or time is looked for in the instance's other dates.
            source = self.header(first)
            charset = _charset(source)
        keys, _ = copy_keys(source, STUDY_KEYS, generated)
        set_charset(keys, charset)
        return keys

    def series(self, numbers: tuple[int, int, int], series: SelectedSeries, series_number: str,
               charset: str) -> tuple[DirectoryRecord, SeriesSummary]:
        ordered = sorted(series.instances,
                         key=lambda i: (*_sort_key_number(i.instance_number), i.sop_uid))
        instance_numbers = _numbering([i.instance_number for i in ordered])
        keys, _ = copy_keys(dataset_of({
            "Modality": series.modality, "SeriesInstanceUID": series.series_uid,
            "SeriesNumber": series_number, "SeriesDescription": series.description,
        }), SERIES_KEYS)
        set_charset(keys, stored_charset(charset))
        leaves = [
            self.leaf(instance_file_id(*numbers, index + 1), instance, number)
            for index, (instance, number) in enumerate(zip(ordered, instance_numbers,
                                                           strict=True))
        ]
        record_types = tuple(dict.fromkeys(leaf.record_type for leaf in leaves))
        preview = self.preview(ordered, leaves)
        summary = SeriesSummary(
            number=_text(keys, "SeriesNumber"), modality=_text(keys, "Modality"),
            description=_text(keys, "SeriesDescription"), instances=len(leaves),
            record_types=record_types, preview=preview,
        )
        return DirectoryRecord("SERIES", keys, leaves), summary

    def leaf(self, file_id: tuple[str, ...], instance: SelectedInstance,
             instance_number: str) -> DirectoryRecord:
        """An IMAGE record needs only the Instance Number, which the index has; other records
        take their keys from the instance's header."""
        record_type = leaf_record_type(instance.sop_class_uid)
        if record_type == "IMAGE":
            keys = Dataset()
            keys.InstanceNumber = instance_number
        else:
            header = self.header(instance)
            keys = leaf_keys(header, record_type, instance_number)
            set_charset(keys, _charset(header))
        content, syntax = medium_content(
            instance.path, instance.sop_uid, instance.transfer_syntax, self.profile,
            self.work_file, strict=self.options.profile.lower() != AUTO)
        if syntax != instance.transfer_syntax:
            self.reencoded += 1
        elif syntax not in self.profile.transfer_syntaxes:
            self.outside_profile += 1
        self.sop_uids.append(instance.sop_uid)
        self.dicom_files.append(MediumFile(file_id, content))
        return DirectoryRecord(record_type, keys, file_id=file_id,
                               sop_class_uid=instance.sop_class_uid,
                               sop_instance_uid=instance.sop_uid, transfer_syntax_uid=syntax)

    def preview(self, ordered: Sequence[SelectedInstance],
                leaves: Sequence[DirectoryRecord]) -> str | None:
        if not self.options.previews:
            return None
        images = [i for i, leaf in zip(ordered, leaves, strict=True)
                  if leaf.record_type == "IMAGE"]
        if not images:
            return None
        jpeg = render_preview(images[len(images) // 2].path)
        if jpeg is None:
            return None
        self.previews += 1
        name = numbered("SER", self.previews) + ".JPG"
        self.pdi_files.append(MediumFile((PDI_FOLDER, name), BytesContent(jpeg)))
        return name


def build_medium(selection: Selection, options: MediumOptions) -> Medium:
    """Lay out the medium of `selection` (blocking: run it in a worker thread)."""
    if not selection.studies:
        raise ValueError("a medium needs at least one study")
    profile = select_profile(
        options.profile,
        (i.transfer_syntax for st in selection.studies for s in st.series for i in s.instances),
        selection.stored_size,
    )
    builder = _Builder(profile, options)
    try:
        return _build(selection, options, profile, builder)
    except BaseException:
        if builder.work_dir is not None:
            builder.work_dir.cleanup()
        raise


def _build(selection: Selection, options: MediumOptions, profile: MediaProfile,
           builder: _Builder) -> Medium:
    groups: dict[tuple[str, ...], list[SelectedStudy]] = {}
    for study in selection.studies:
        groups.setdefault(_patient_key(study), []).append(study)
    roots = []
    patients = []
    for number, key in enumerate(sorted(groups), start=1):
        record, patient_summary = builder.patient(number, groups[key])
        roots.append(record)
        patients.append(patient_summary)
    fs_id = file_set_id(s.study_uid for s in selection.studies)
    dicomdir_uid = generate_uid(entropy_srcs=[fs_id, *sorted(builder.sop_uids)])
    dicomdir = encode_dicomdir(roots, fs_id, dicomdir_uid)

    extra: list[MediumFile] = []
    viewer_summary = None
    if options.viewer is not None:
        launch = launchers(options.viewer)
        extra.append(autorun_inf(fs_id, any(p == "Windows" for p, _ in launch)))
        extra += [f for _, f in launch]
        extra += viewer_files(options.viewer)
        viewer_summary = ViewerSummary(VIEWER_FOLDER, tuple((p, f.path[-1]) for p, f in launch))
    summary = MediumSummary(
        file_set_id=fs_id, profile=profile, created=datetime.now().astimezone(),
        creator=options.creator, patients=tuple(patients), instances=len(builder.sop_uids),
        reencoded=builder.reencoded, outside_profile=builder.outside_profile,
        viewer=viewer_summary,
    )
    pages = [
        MediumFile((PDI_FOLDER, study.page), BytesContent(study_page(patient, study)))
        for patient in patients for study in patient.studies
    ]
    files = [
        MediumFile(("DICOMDIR",), BytesContent(dicomdir)),
        MediumFile(("README.TXT",), BytesContent(readme(summary))),
        MediumFile(("INDEX.HTM",), BytesContent(index_page(summary))),
        *[f for f in extra if len(f.path) == 1],
        *pages,
        *builder.pdi_files,
        *builder.dicom_files,
        *[f for f in extra if len(f.path) > 1],
    ]
    image = build_iso(files, fs_id)
    log.info("medium %s: %d instances, profile %s, %d bytes", fs_id, len(builder.sop_uids),
             profile.name, image.size)
    return Medium(fs_id, profile, files, image, summary, builder.work_dir)

