"""Finding a stored instance by SOP Instance UID, remembered for the frames that follow.

A stack of 300 images is 300 lookups of different instances, then the same ones again while
the user scrolls back and forth: a bounded memory of recent lookups answers most of them
without the database.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread

from node.errors import NotFound
from node.index.instance_queries import instance_location
from node.services import NodeServices

REMEMBERED = 8192


@dataclass(frozen=True)
class StoredInstance:
    sop_uid: str
    study_uid: str
    series_uid: str
    sop_class_uid: str
    transfer_syntax: str
    frames: int
    # A local file of the instance (Storage.local_path), and its path in the storage.
    path: Path
    stored_as: str


class InstanceLookup:
    def __init__(self, services: NodeServices, size: int = REMEMBERED) -> None:
        self._services = services
        self._size = size
        self._items: OrderedDict[str, StoredInstance] = OrderedDict()
        self._burned_in: dict[str, bool] = {}
        self._lock = threading.Lock()

    async def get(self, study_uid: str, sop_uid: str) -> StoredInstance:
        """The instance, which must belong to the study named in the URL (404 otherwise)."""
        found = self._items.get(sop_uid)
        if found is None:
            found = await self._load(sop_uid)
        else:
            self._items.move_to_end(sop_uid)
            # An object store's cached copy may have been evicted since: fetched again.
            path = await self._services.storage.local_path_async(found.stored_as)
            if path != found.path:
                found = dataclasses.replace(found, path=path)
        if found.study_uid != study_uid:
            raise NotFound("no such instance in this study")
        return found

    async def _load(self, sop_uid: str) -> StoredInstance:
        row = await instance_location(self._services.sessions, sop_uid)
        if row is None:
            raise NotFound("no such instance in this study")
        found = StoredInstance(sop_uid, row.study_uid, row.series_uid, row.sop_class_uid,
                               row.transfer_syntax, row.frames,
                               await self._services.storage.local_path_async(row.path), row.path)
        self._items[sop_uid] = found
        while len(self._items) > self._size:
            self._items.popitem(last=False)
        return found

    async def burned_in(self, instance: StoredInstance) -> bool:
        """Whether the pixels carry burned-in text (Burned In Annotation YES), which an
        anonymized session must not see."""
        known = self._burned_in.get(instance.sop_uid)
        if known is None:
            known = await asyncio.to_thread(_burned_in, instance.path)
            with self._lock:
                if len(self._burned_in) > self._size:
                    self._burned_in.clear()
                self._burned_in[instance.sop_uid] = known
        return known


def _burned_in(path: Path) -> bool:
    try:
        ds = dcmread(path, stop_before_pixels=True, specific_tags=["BurnedInAnnotation"])
    except Exception:  # unreadable: treat as carrying text, it is not shown to anyone anyway
        return True
    return str(ds.get("BurnedInAnnotation", "")).strip().upper() == "YES"
