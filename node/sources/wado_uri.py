"""Instances from a WADO-URI endpoint, each by
`?requestType=WADO&studyUID=...&seriesUID=...&objectUID=...&contentType=application/dicom`."""

from __future__ import annotations

from typing import BinaryIO

from node.sources.base import Source, SourceError, SourceObject
from node.sources.http_fetch import WadoSession, copy_body
from node.sources.outbound import OutboundPolicy
from node.sources.request import StorageSpec, StudyEntry


class WadoUri(Source):
    label = "wado-uri"

    def __init__(self, study: StudyEntry, storage: StorageSpec, policy: OutboundPolicy,
                 timeout: float, concurrency: int) -> None:
        self.study = study
        self.storage = storage
        self._http = WadoSession(storage, policy, timeout, concurrency)

    async def open(self) -> None:
        await self._http.open()

    async def close(self) -> None:
        await self._http.close()

    async def list_objects(self) -> list[SourceObject]:
        study = self.study
        return [
            SourceObject(instance.sop_uid, instance.where, "dicom", study, series, instance,
                         study_uid=study.study_uid, series_uid=series.series_uid,
                         sop_uid=instance.sop_uid)
            for series in study.series for instance in series.instances
        ]

    async def fetch(self, item: SourceObject, out: BinaryIO) -> None:
        where = f"wado-uri {self.storage.name}: objectUID={item.sop_uid}"
        params = {
            "requestType": "WADO", "studyUID": item.study_uid, "seriesUID": item.series_uid,
            "objectUID": item.sop_uid, "contentType": "application/dicom",
        }
        async with self._http.get(self.storage.url, where, "application/dicom",
                                  params) as response:
            size = await copy_body(response.content, out)
        if size == 0:
            raise SourceError(f"{where}: empty answer")
