"""DICOM JSON metadata of a series' instances, read from their headers once and kept on disk.

Viewers ask for a series' metadata before anything else, and a series may hold thousands of
instances: answering from the files each time costs one header parse per instance (the slow
spot users report of other archives: seconds per series). Here the DICOM JSON of every instance
of a series is computed once, written to `data_dir/dicomweb-metadata/` as one file, and read
back whole while the series' stamp (instance count, newest row, newest receipt) is unchanged; a
new or replaced instance changes the stamp and the file is made again.

Bulk data (pixel data and other binary values over INLINE_LIMIT bytes) is left in the files:
the JSON carries a BulkDataURI relative to the DICOMweb root, which the route completes with
the origin the client used. Pixel data is never read here.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from pydicom import dcmread
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset

from node.index.instance_queries import SeriesStamp, StoredInstanceRow, series_stamp
from node.services import NodeServices

log = logging.getLogger(__name__)

# Values of binary VRs larger than this are bulk data (a BulkDataURI), smaller ones inline.
INLINE_LIMIT = 64
# Values larger than this are not read while parsing a header (pixel data above all).
DEFER_BYTES = 4096
BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
PIXEL_DATA_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})
UNDEFINED_LENGTH = 0xFFFFFFFF
# Series kept parsed in memory per process, beside the files on disk.
REMEMBERED_SERIES = 64
FORMAT_VERSION = 1


@dataclass(frozen=True)
class InstanceMetadata:
    sop_uid: str
    sop_class_uid: str
    # DICOM JSON of the instance, BulkDataURIs relative to the DICOMweb root.
    json: dict[str, Any]


def bulk_uri(row: StoredInstanceRow, tag: int) -> str:
    return (f"studies/{row.study_uid}/series/{row.series_uid}/instances/{row.sop_uid}"
            f"/bulkdata/{tag:08X}")


def instance_json(path: Path, row: StoredInstanceRow) -> dict[str, Any]:
    """One instance's DICOM JSON from its header; its pixel data is never read."""
    ds = dcmread(path, defer_size=DEFER_BYTES, force=True)
    return dataset_json(ds, row)


def dataset_json(ds: Dataset, row: StoredInstanceRow) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for tag in sorted(ds.keys()):
        key = f"{int(tag):08X}"
        element = ds.get_item(tag)
        if isinstance(element, RawDataElement):
            vr = element.VR or _dictionary_vr(int(tag))
            length = element.length
        else:
            vr = element.VR
            length = len(element.value) if isinstance(element.value, bytes) else 0
        if int(tag) in PIXEL_DATA_TAGS or (vr in BINARY_VRS and (
                length > INLINE_LIMIT or length == UNDEFINED_LENGTH)):
            out[key] = {"vr": vr if vr in BINARY_VRS else "OB",
                        "BulkDataURI": bulk_uri(row, int(tag))}
            continue
        try:
            out[key] = ds[tag].to_json_dict(None, DEFER_BYTES * 16)
        except Exception:  # a malformed value: the element is left out, the rest served
            log.debug("instance %s: element %s left out of its metadata", row.sop_uid, key)
    return out


def _dictionary_vr(tag: int) -> str:
    try:
        return str(dictionary_VR(tag)).split(" or ")[0]
    except KeyError:
        return "UN"


class SeriesMetadata:
    """The metadata of whole series, computed once and kept in `folder`."""

    def __init__(self, services: NodeServices, folder: Path,
                 remembered: int = REMEMBERED_SERIES) -> None:
        self._services = services
        self._folder = folder
        self._remembered = remembered
        self._memory: OrderedDict[str, tuple[list[object], list[InstanceMetadata]]] = (
            OrderedDict())
        self._building: dict[str, asyncio.Lock] = {}
        folder.mkdir(parents=True, exist_ok=True)

    def _file(self, series_uid: str) -> Path:
        return self._folder / series_uid[-2:] / f"{series_uid}.json"

    async def series(self, series_uid: str, rows: Sequence[StoredInstanceRow]
                     ) -> list[InstanceMetadata]:
        """Every instance of the series (`rows`: the series' instances, all of them), from
        memory, from the file, or read from the instances' headers, whichever is current."""
        stamp = await series_stamp(self._services.sessions, series_uid)
        if stamp is None:
            return []
        wanted = stamp.as_list()
        remembered = self._memory.get(series_uid)
        if remembered is not None and remembered[0] == wanted:
            self._memory.move_to_end(series_uid)
            return remembered[1]
        lock = self._building.setdefault(series_uid, asyncio.Lock())
        async with lock:
            found = await asyncio.to_thread(self._read, series_uid, wanted)
            if found is None:
                found = await self._build(series_uid, stamp, rows)
        self._building.pop(series_uid, None)
        self._memory[series_uid] = (wanted, found)
        while len(self._memory) > self._remembered:
            self._memory.popitem(last=False)
        return found

    def _read(self, series_uid: str, wanted: list[object]) -> list[InstanceMetadata] | None:
        try:
            saved = orjson.loads(self._file(series_uid).read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return None
        if saved.get("version") != FORMAT_VERSION or saved.get("stamp") != wanted:
            return None
        return [InstanceMetadata(sop, sop_class, json)
                for sop, sop_class, json in saved["instances"]]

    async def _build(self, series_uid: str, stamp: SeriesStamp,
                     rows: Sequence[StoredInstanceRow]) -> list[InstanceMetadata]:
        paths = await self._services.storage.local_paths_async([r.path for r in rows])
        built = await asyncio.to_thread(self._parse_all, list(zip(paths, rows, strict=True)))
        # Another request may have added an instance meanwhile: the file is written under the
        # stamp read before the rows, so that it is made again on the next request if so.
        await asyncio.to_thread(self._write, series_uid, stamp, built)
        return built

    @staticmethod
    def _parse_all(items: list[tuple[Path, StoredInstanceRow]]) -> list[InstanceMetadata]:
        built = []
        for path, row in items:
            try:
                json = instance_json(path, row)
            except Exception:
                log.warning("instance %s: its header could not be read for metadata",
                            row.sop_uid)
                continue
            built.append(InstanceMetadata(row.sop_uid, row.sop_class_uid, json))
        return built

    def _write(self, series_uid: str, stamp: SeriesStamp,
               built: list[InstanceMetadata]) -> None:
        target = self._file(series_uid)
        target.parent.mkdir(parents=True, exist_ok=True)
        body = orjson.dumps({"version": FORMAT_VERSION, "stamp": stamp.as_list(),
                             "instances": [[m.sop_uid, m.sop_class_uid, m.json]
                                           for m in built]})
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".metadata-")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(body)
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
