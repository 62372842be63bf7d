"""A study (or the listed series and instances) from a DICOMweb WADO-RS endpoint.

A whole study is listed from its metadata (`/studies/{uid}/metadata`), a listed series without
instances from the series' metadata; then each instance is retrieved on its own
(`/studies/{s}/series/{r}/instances/{i}`), so that a failure costs one instance and a retry
repeats one instance, and the pipeline's bound sets how many run at once.
"""

from __future__ import annotations

from typing import Any, BinaryIO
from urllib.parse import quote

import aiohttp

from node.sources.base import Source, SourceError, SourceObject
from node.sources.http_fetch import WadoSession, copy_body
from node.sources.outbound import OutboundPolicy
from node.sources.request import SeriesEntry, StorageSpec, StudyEntry

ACCEPT_DICOM = 'multipart/related; type="application/dicom"; transfer-syntax=*'
ACCEPT_METADATA = "application/dicom+json"
SERIES_UID = "0020000E"
SOP_UID = "00080018"


class WadoRs(Source):
    label = "wado-rs"

    def __init__(self, study: StudyEntry, storage: StorageSpec, policy: OutboundPolicy,
                 timeout: float, concurrency: int) -> None:
        self.study = study
        self.storage = storage
        self.base = storage.url.rstrip("/")
        self._http = WadoSession(storage, policy, timeout, concurrency)

    async def open(self) -> None:
        await self._http.open()

    async def close(self) -> None:
        await self._http.close()

    def _path(self, *uids: str) -> str:
        names = ("studies", "series", "instances")
        return "".join(f"/{name}/{quote(uid, safe='')}" for name, uid in zip(names, uids,
                                                                               strict=False))

    def _where(self, path: str) -> str:
        return f"wado-rs {self.storage.name}: {path}"

    async def list_objects(self) -> list[SourceObject]:
        study = self.study
        if not study.series:
            return await self._from_metadata(study.study_uid, None)
        items: list[SourceObject] = []
        for series in study.series:
            if not series.instances:
                items += await self._from_metadata(study.study_uid, series)
                continue
            items += [
                SourceObject(self._path(study.study_uid, series.series_uid, i.sop_uid),
                             i.where, "dicom", study, series, i,
                             study_uid=study.study_uid, series_uid=series.series_uid,
                             sop_uid=i.sop_uid)
                for i in series.instances
            ]
        return items

    async def _from_metadata(self, study_uid: str, series: SeriesEntry | None
                             ) -> list[SourceObject]:
        path = self._path(study_uid, *([series.series_uid] if series else []))
        where = series.where if series else self.study.where
        datasets = await self._get_json(path + "/metadata")
        items = []
        for ds in datasets:
            series_uid, sop_uid = _value(ds, SERIES_UID), _value(ds, SOP_UID)
            if not series_uid or not sop_uid:
                continue
            items.append(SourceObject(
                self._path(study_uid, series_uid, sop_uid), where, "dicom", self.study, series,
                study_uid=study_uid, series_uid=series_uid, sop_uid=sop_uid))
        return items

    async def _get_json(self, path: str) -> list[dict[str, Any]]:
        where = self._where(path)
        try:
            async with self._http.get(self.base + path, where, ACCEPT_METADATA) as response:
                value = await response.json(content_type=None)
        except ValueError:
            raise SourceError(f"{where}: the answer is not DICOM JSON") from None
        if not isinstance(value, list):
            raise SourceError(f"{where}: the answer is not a list of datasets")
        return [v for v in value if isinstance(v, dict)]

    async def fetch(self, item: SourceObject, out: BinaryIO) -> None:
        where = self._where(item.key)
        async with self._http.get(self.base + item.key, where, ACCEPT_DICOM) as response:
            if response.content_type.startswith("multipart/"):
                reader = aiohttp.MultipartReader.from_response(response)
                part = await reader.next()
                if not isinstance(part, aiohttp.BodyPartReader):
                    raise SourceError(f"{where}: empty multipart answer")
                size = await copy_body(part, out)
            else:
                size = await copy_body(response.content, out)
        if size == 0:
            raise SourceError(f"{where}: empty answer")


def _value(ds: dict[str, Any], tag: str) -> str:
    element = ds.get(tag)
    if not isinstance(element, dict):
        return ""
    values = element.get("Value")
    if isinstance(values, list) and values and isinstance(values[0], str):
        return values[0]
    return ""
