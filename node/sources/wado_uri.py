"""Instances from a WADO-URI endpoint, each by
`?requestType=WADO&studyUID=...&seriesUID=...&objectUID=...&contentType=application/dicom`."""

from __future__ import annotations

from typing import BinaryIO

import aiohttp

from node.sources.base import Source, SourceError, SourceObject
from node.sources.http_fetch import (
    NETWORK_ERRORS,
    check_status,
    connection_error,
    copy_body,
    new_session,
)
from node.sources.request import StorageSpec, StudyEntry


class WadoUri(Source):
    label = "wado-uri"

    def __init__(self, study: StudyEntry, storage: StorageSpec, timeout: float,
                 concurrency: int) -> None:
        self.study = study
        self.storage = storage
        self.timeout = timeout
        self.concurrency = concurrency
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        self._session = new_session(self.storage.http_headers, self.timeout, self.concurrency)

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def list_objects(self) -> list[SourceObject]:
        study = self.study
        return [
            SourceObject(instance.sop_uid, instance.where, "dicom", study, series, instance,
                         study_uid=study.study_uid, series_uid=series.series_uid,
                         sop_uid=instance.sop_uid)
            for series in study.series for instance in series.instances
        ]

    async def fetch(self, item: SourceObject, out: BinaryIO) -> None:
        assert self._session is not None, "open() first"
        where = f"wado-uri {self.storage.name}: objectUID={item.sop_uid}"
        params = {
            "requestType": "WADO", "studyUID": item.study_uid, "seriesUID": item.series_uid,
            "objectUID": item.sop_uid, "contentType": "application/dicom",
        }
        try:
            async with self._session.get(self.storage.url, params=params,
                                         headers={"Accept": "application/dicom"}) as response:
                check_status(response, where)
                size = await copy_body(response.content, out)
        except NETWORK_ERRORS as exc:
            raise connection_error(where, exc) from None
        if size == 0:
            raise SourceError(f"{where}: empty answer")
