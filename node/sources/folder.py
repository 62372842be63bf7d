"""A folder: every DICOM file under it, recursively; patient and study data from the files.

Files that are not DICOM Part 10 (no "DICM" at byte 128) are skipped and counted, not failed:
folders from modalities and CDs carry DICOMDIRs, readme files and viewers beside the images.
"""

from __future__ import annotations

import asyncio
import shutil
from typing import BinaryIO

from node.errors import InvalidInput
from node.sources.base import Source, SourceError, SourceObject
from node.sources.storage_mapping import ResolvedPath, files_beneath, open_beneath

DICM_OFFSET = 128


class FolderSource(Source):
    label = "folder"

    def __init__(self, location: ResolvedPath) -> None:
        self.location = location
        self.skipped = 0
        self._files: dict[str, ResolvedPath] = {}

    async def list_objects(self) -> list[SourceObject]:
        return await asyncio.to_thread(self._list)

    def _list(self) -> list[SourceObject]:
        items = []
        for location in files_beneath(self.location):
            if not _is_dicom(location):
                self.skipped += 1
                continue
            self._files[location.host_path] = location
            items.append(SourceObject(location.host_path, location.host_path))
        return items

    async def fetch(self, item: SourceObject, out: BinaryIO) -> None:
        await asyncio.to_thread(_copy, self._files[item.key], out)


def _is_dicom(location: ResolvedPath) -> bool:
    try:
        with open_beneath(location) as stream:
            return stream.read(DICM_OFFSET + 4)[DICM_OFFSET:] == b"DICM"
    except (OSError, InvalidInput):
        return False


def _copy(location: ResolvedPath, out: BinaryIO) -> None:
    try:
        with open_beneath(location) as source:
            shutil.copyfileobj(source, out, 1 << 20)
    except OSError as exc:
        raise SourceError(f"{location.host_path}: cannot be read ({exc.strerror})") from exc
