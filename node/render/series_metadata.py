"""DICOM JSON metadata of a series' instances, read from their headers once and kept on disk.

Viewers ask for a series' metadata before anything else, and a series may hold thousands of
instances: answering from the files each time costs one header parse per instance (the slow
spot users report of other archives: seconds per series). Here the DICOM JSON of every instance
of a series is computed once, written to `data_dir/dicomweb-metadata/` as one file, and read
back whole while the series' stamp (instance count, newest row, newest receipt) is unchanged; a
new or replaced instance changes the stamp and the file is made again, from the headers of the
new or replaced instances only (a series still arriving is not read again from its first
instance each time it is asked for).

Bulk data (pixel data and other binary values over INLINE_LIMIT bytes) is left in the files:
the JSON carries a BulkDataURI relative to the DICOMweb root, which the route completes with
the origin the client used. Pixel data is never read here.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from pydicom import dcmread
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset

from node.index.instance_queries import (
    SeriesStamp,
    StoredInstanceRow,
    series_stamp,
    stored_instances,
)
from node.index.query import Scope
from node.ingest.instance_record import InstanceRecord
from node.services import NodeServices
from node.storage.incoming_activity import seconds_since_incoming

log = logging.getLogger(__name__)

# Values of binary VRs larger than this are bulk data (a BulkDataURI), smaller ones inline.
INLINE_LIMIT = 64
# Values larger than this are not read while parsing a header (pixel data above all).
DEFER_BYTES = 4096
BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
PIXEL_DATA_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})
UNDEFINED_LENGTH = 0xFFFFFFFF
# The warmer makes metadata once nothing was received for this long, looking this often; a
# series waiting longer than MAX_WAIT_SECONDS is made even while instances keep arriving (a
# node that never goes quiet still has every series' metadata ready within about that long).
IDLE_SECONDS = 2.0
POLL_SECONDS = 1.0
MAX_WAIT_SECONDS = 30.0
# JSON kept in memory per process (the most recently used series), beside the files on disk.
REMEMBERED_BYTES = 256 * 1024**2
# The folder under data_dir the metadata files are kept in.
FOLDER = "dicomweb-metadata"
# 2: Available Transfer Syntax UID added. 3: each instance's receipt (what was reused).
# 4: document MIME types outside SHOWN_DOCUMENT_TYPES given as octets.
FORMAT_VERSION = 4
AVAILABLE_TRANSFER_SYNTAX = "00083002"
MIME_TYPE_OF_ENCAPSULATED_DOCUMENT = "00420012"
# Document types a viewer may be told as they are: none of them runs script in a browser. A
# viewer (OHIF) hands the document to the browser as the type the metadata names; a sender's
# "text/html" or "image/svg+xml" would be a page of the node's origin built from patient data.
SHOWN_DOCUMENT_TYPES = frozenset({"application/pdf", "model/stl", "model/obj", "model/mtl"})
OCTETS = "application/octet-stream"


@dataclass(frozen=True)
class InstanceMetadata:
    sop_uid: str
    sop_class_uid: str
    # When the instance's file was stored: the JSON is that file's (StoredInstanceRow.received).
    received: str
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
    _harmless_document_type(out)
    if row.transfer_syntax:
        # How the instance is stored (PS3.18 metadata may carry it): a viewer tells a video
        # stream from frames it can decode by it.
        out[AVAILABLE_TRANSFER_SYNTAX] = {"vr": "UI", "Value": [row.transfer_syntax]}
        out = dict(sorted(out.items()))
    return out


def _harmless_document_type(out: dict[str, Any]) -> None:
    """The document's MIME type as it is when a browser cannot run it, else octets."""
    element = out.get(MIME_TYPE_OF_ENCAPSULATED_DOCUMENT)
    values = element.get("Value") if isinstance(element, dict) else None
    if not values:
        return
    if str(values[0]).strip().lower() not in SHOWN_DOCUMENT_TYPES:
        out[MIME_TYPE_OF_ENCAPSULATED_DOCUMENT] = {"vr": "LO", "Value": [OCTETS]}


def _dictionary_vr(tag: int) -> str:
    try:
        return str(dictionary_VR(tag)).split(" or ")[0]
    except KeyError:
        return "UN"


@dataclass(frozen=True)
class SeriesEntry:
    """A series' metadata as computed for one stamp: per instance, and as one JSON array (the
    answer to a whole-series request, served as it is)."""

    stamp: list[object]
    instances: list[InstanceMetadata]
    body: bytes


RowsLoader = Callable[[], Awaitable[Sequence[StoredInstanceRow]]]


def metadata_folder(data_dir: Path) -> Path:
    """Where the metadata files are kept (shared by the serving routes and warming)."""
    return data_dir / "dicomweb-metadata"


class SeriesMetadata:
    """The metadata of whole series, computed once and kept in `folder` (and the most recent
    series in memory, up to REMEMBERED_BYTES of JSON)."""

    def __init__(self, services: NodeServices, folder: Path,
                 remembered_bytes: int = REMEMBERED_BYTES) -> None:
        self._services = services
        self._folder = folder
        self._remembered_bytes = remembered_bytes
        self._memory: OrderedDict[str, SeriesEntry] = OrderedDict()
        self._memory_bytes = 0
        self._building: dict[str, asyncio.Lock] = {}
        folder.mkdir(parents=True, exist_ok=True)

    def _file(self, series_uid: str) -> Path:
        return metadata_file(self._folder, series_uid)

    async def series(self, study_uid: str, series_uid: str, rows: RowsLoader
                     ) -> SeriesEntry | None:
        """Every instance of the series, from memory, from the file, or read from the
        instances' headers (`rows`: loads the series' instances, all of them), whichever is
        current; None when the study holds no such series."""
        stamp = await series_stamp(self._services.sessions, study_uid, series_uid)
        if stamp is None:
            return None
        wanted = stamp.as_list()
        entry = self._memory.get(series_uid)
        if entry is not None and entry.stamp == wanted:
            self._memory.move_to_end(series_uid)
            return entry
        lock = self._building.setdefault(series_uid, asyncio.Lock())
        async with lock:
            saved = await asyncio.to_thread(self._read, series_uid)
            if saved is not None and saved.stamp == wanted:
                entry = saved
            else:
                earlier = saved if entry is None else entry
                entry = await self._build(series_uid, stamp, await rows(), earlier)
        self._building.pop(series_uid, None)
        self._remember(series_uid, entry)
        return entry

    def _remember(self, series_uid: str, entry: SeriesEntry) -> None:
        previous = self._memory.pop(series_uid, None)
        if previous is not None:
            self._memory_bytes -= len(previous.body)
        self._memory[series_uid] = entry
        self._memory_bytes += len(entry.body)
        while self._memory_bytes > self._remembered_bytes and len(self._memory) > 1:
            _, dropped = self._memory.popitem(last=False)
            self._memory_bytes -= len(dropped.body)

    def _read(self, series_uid: str) -> SeriesEntry | None:
        """The series' file as saved, whatever its stamp (None when missing, unreadable or
        of another format)."""
        try:
            saved = orjson.loads(self._file(series_uid).read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return None
        if saved.get("version") != FORMAT_VERSION:
            return None
        return _entry(saved["stamp"], [InstanceMetadata(*item) for item in saved["instances"]])

    async def _build(self, series_uid: str, stamp: SeriesStamp,
                     rows: Sequence[StoredInstanceRow], earlier: SeriesEntry | None
                     ) -> SeriesEntry:
        """The series' entry for `rows`, reusing the JSON `earlier` holds for the same stored
        file of an instance (same SOP Instance UID and receipt) and reading the other headers."""
        known = {(m.sop_uid, m.received): m for m in earlier.instances} if earlier else {}
        reused = {r.sop_uid: known[(r.sop_uid, r.received)] for r in rows
                  if (r.sop_uid, r.received) in known}
        unread = [r for r in rows if r.sop_uid not in reused]
        paths = await self._services.storage.local_paths_async([r.path for r in unread])
        parsed = await asyncio.to_thread(self._parse_all, list(zip(paths, unread, strict=True)))
        built = [m for m in (reused.get(r.sop_uid) or parsed.get(r.sop_uid) for r in rows)
                 if m is not None]
        # Another request may have added an instance meanwhile: the file is written under the
        # stamp read before the rows, so that it is made again on the next request if so.
        await asyncio.to_thread(self._write, series_uid, stamp, built)
        return _entry(stamp.as_list(), built)

    @staticmethod
    def _parse_all(items: list[tuple[Path, StoredInstanceRow]]) -> dict[str, InstanceMetadata]:
        built = {}
        for path, row in items:
            try:
                json = instance_json(path, row)
            except Exception:
                log.warning("instance %s: its header could not be read for metadata",
                            row.sop_uid)
                continue
            built[row.sop_uid] = InstanceMetadata(row.sop_uid, row.sop_class_uid,
                                                  row.received, json)
        return built

    def _write(self, series_uid: str, stamp: SeriesStamp,
               built: list[InstanceMetadata]) -> None:
        target = self._file(series_uid)
        target.parent.mkdir(parents=True, exist_ok=True)
        body = orjson.dumps({"version": FORMAT_VERSION, "stamp": stamp.as_list(),
                             "instances": [[m.sop_uid, m.sop_class_uid, m.received, m.json]
                                           for m in built]})
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".metadata-")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(body)
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


def metadata_file(folder: Path, series_uid: str) -> Path:
    return folder / series_uid[-2:] / f"{series_uid}.json"


def forget_series(folder: Path, series_uids: Sequence[str]) -> None:
    """Remove the metadata files of series whose study was deleted: they hold what the
    instances held (patient data too), and nothing would ever read or replace them."""
    for series_uid in series_uids:
        metadata_file(folder, series_uid).unlink(missing_ok=True)


def _entry(stamp: list[object], instances: list[InstanceMetadata]) -> SeriesEntry:
    return SeriesEntry(stamp, instances, orjson.dumps([m.json for m in instances]))


class MetadataWarmer:
    """Makes the metadata of series that received instances while nobody waits for it: once the
    node has received nothing for IDLE_SECONDS (or a series has waited max_wait_seconds), one
    series at a time, so that a viewer opening a study later finds its metadata ready instead
    of waiting for every header to be read. Ingest keeps the CPU while it is busy; a series
    made while still growing is made again from its new instances only.
    Nothing means nothing in any worker of the instance (node/storage/incoming_activity.py): a
    worker that received nothing itself warmed its series while another worker took one
    association, reading headers on the core that ingest needed (a node at its storage quota
    received 160 instead of 900 instances/s over one association while the other worker warmed
    the series it had received before).

    Ingest only appends to a deque (Ingestor.listeners, in the ingesting thread): no lock and no
    wake-up on the hot path; the warmer looks every POLL_SECONDS.
    """

    def __init__(self, services: NodeServices, metadata: SeriesMetadata,
                 idle_seconds: float = IDLE_SECONDS, poll_seconds: float = POLL_SECONDS,
                 max_wait_seconds: float = MAX_WAIT_SECONDS) -> None:
        self._services = services
        self._metadata = metadata
        self._idle = idle_seconds
        self._poll = poll_seconds
        self._max_wait = max_wait_seconds
        self._arrivals: deque[tuple[str, str]] = deque()
        # Series waiting to be made: their study and when they first waited, oldest first.
        self._pending: dict[str, tuple[str, float]] = {}
        self._last_arrival = 0.0

    def instance_indexed(self, record: InstanceRecord) -> None:
        """Ingestor listener (any thread)."""
        self._arrivals.append((record.study_uid, record.series_uid))
        self._last_arrival = time.monotonic()

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._poll)
            now = time.monotonic()
            while self._arrivals:
                study_uid, series_uid = self._arrivals.popleft()
                self._pending.setdefault(series_uid, (study_uid, now))
            while self._pending:
                series_uid, (study_uid, since) = next(iter(self._pending.items()))
                if time.monotonic() - since < self._max_wait and not await self._quiet():
                    break
                del self._pending[series_uid]
                await self._warm(study_uid, series_uid)

    async def _quiet(self) -> bool:
        """Nothing received for IDLE_SECONDS, here or by the instance's other workers."""
        if time.monotonic() - self._last_arrival < self._idle:
            return False
        incoming = self._services.storage.incoming
        return await asyncio.to_thread(seconds_since_incoming, incoming) >= self._idle

    async def _warm(self, study_uid: str, series_uid: str) -> None:
        await make_ahead(self._services, self._metadata, study_uid, series_uid)


async def make_ahead(services: NodeServices, metadata: SeriesMetadata, study_uid: str,
                     series_uid: str) -> bool:
    """The series' metadata made (or found current) before anyone asks; False when it could
    not be (the request path makes it again if it must) or there is no such series."""
    async def rows() -> list[StoredInstanceRow]:
        return await stored_instances(services.sessions, Scope(), study_uid, series_uid)
    try:
        return await metadata.series(study_uid, series_uid, rows) is not None
    except Exception:
        log.warning("series %s: its metadata could not be made ahead", series_uid,
                    exc_info=True)
        return False
