"""Local files named one by one in the request (studies without `storage`).

Every path was checked against the storage mappings before the token was issued; here they are
only opened, through `open_beneath`. A DICOM whole-slide instance brings the other instances of
its series found beside it (the spec: "specify one instance of the series to open the slide").
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from typing import BinaryIO

from pydicom import dcmread
from pydicom.errors import InvalidDicomError
from pydicom.uid import VLWholeSlideMicroscopyImageStorage

from node.errors import InvalidInput
from node.sources.base import Source, SourceError, SourceObject
from node.sources.request import StudyEntry
from node.sources.storage_mapping import ResolvedPath, open_beneath

DICM_OFFSET = 128


class LocalFiles(Source):
    label = "files"

    def __init__(self, study: StudyEntry, locations: dict[str, ResolvedPath]) -> None:
        """`locations`: each instance's checked path, by the instance's field path."""
        self.study = study
        self._locations = dict(locations)

    async def list_objects(self) -> list[SourceObject]:
        return await asyncio.to_thread(self._list)

    def _list(self) -> list[SourceObject]:
        items: list[SourceObject] = []
        named = {loc.relative for loc in self._locations.values()}
        for series in self.study.series:
            for instance in series.instances:
                where = f"{instance.where}.file"
                location = self._locations[where]
                items.append(SourceObject(location.host_path, where, instance.kind, self.study,
                                          series, instance))
                if instance.kind == "dicom":
                    for sibling in self._slide_siblings(location, named):
                        # Keyed by host path (field paths never start with "/").
                        named.add(sibling.relative)
                        self._locations[sibling.host_path] = sibling
                        items.append(SourceObject(sibling.host_path, sibling.host_path, "dicom",
                                                  self.study, series, instance, sibling=True))
        return items

    def _slide_siblings(self, location: ResolvedPath, named: set[str]) -> list[ResolvedPath]:
        """The other files of a DICOM whole-slide series in the same folder."""
        header = _header(location)
        if header is None or header[0] != VLWholeSlideMicroscopyImageStorage:
            return []
        folder = os.path.dirname(location.relative)
        found = []
        with os.scandir(location.root / folder) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                if not entry.is_file(follow_symlinks=False):
                    continue
                relative = os.path.join(folder, entry.name)
                if relative in named:
                    continue
                candidate = ResolvedPath(
                    os.path.join(os.path.dirname(location.host_path), entry.name),
                    location.root, relative)
                other = _header(candidate)
                if other is not None and other[1] == header[1]:
                    found.append(candidate)
        return found

    async def fetch(self, item: SourceObject, out: BinaryIO) -> None:
        await asyncio.to_thread(_copy, self._locations[item.where], out)

    def local_path(self, item: SourceObject) -> Path | None:
        return self._locations[item.where].absolute


def _copy(location: ResolvedPath, out: BinaryIO) -> None:
    try:
        with open_beneath(location) as source:
            shutil.copyfileobj(source, out, 1 << 20)
    except OSError as exc:
        raise SourceError(f"{location.host_path}: cannot be read ({exc.strerror})") from exc


def _header(location: ResolvedPath) -> tuple[str, str] | None:
    """(SOP Class UID, Series Instance UID) of a DICOM file, None for anything else."""
    try:
        with open_beneath(location) as stream:
            preamble = stream.read(DICM_OFFSET + 4)
            if preamble[DICM_OFFSET:] != b"DICM":
                return None
            stream.seek(0)
            ds = dcmread(stream, stop_before_pixels=True,
                         specific_tags=["SOPClassUID", "SeriesInstanceUID"])
    except (InvalidDicomError, InvalidInput, OSError, ValueError, EOFError, KeyError,
            TypeError):
        return None  # unreadable or not DICOM: simply not a sibling
    return str(ds.get("SOPClassUID", "")), str(ds.get("SeriesInstanceUID", ""))
