"""A series' metadata is read from each stored file once: a series that grows (or has an
instance replaced) is made again from its new headers only, also by a process that finds only
the file of an earlier stamp; and the warmer makes a series that keeps receiving instances
within its longest wait, not only once the node goes quiet."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset

from node.config import config_from_dict
from node.index.instance_queries import stored_instances
from node.index.query import Scope
from node.process.runtime import open_services
from node.render import series_metadata
from node.render.series_metadata import MetadataWarmer, SeriesMetadata, metadata_file
from node.services import NodeServices
from tests.factory import StudySpec, make_instance, uid
from tests.rest_support import config_dict

SPEC = StudySpec(patient_id="META-1", study_uid=uid(7710, 1), instances_per_series=5,
                 rows=8, columns=8)
SERIES = f"{SPEC.study_uid}.1"


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[NodeServices]:
    raw = config_dict(node={"overwrite_duplicates": True})
    async with open_services(config_from_dict(raw, base_dir=tmp_path)) as opened:
        yield opened


async def store(services: NodeServices, folder: Path, ds: Dataset) -> None:
    path = folder / f"{ds.SOPInstanceUID}.dcm"
    folder.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    await services.ingestor.ingest_copy(path, "import")


def counting_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The SOP Instance UIDs whose headers are read, in order."""
    read: list[str] = []
    parse = series_metadata.instance_json

    def counted(path: Path, row: Any) -> dict[str, Any]:
        read.append(row.sop_uid)
        return parse(path, row)
    monkeypatch.setattr(series_metadata, "instance_json", counted)
    return read


async def whole_series(services: NodeServices, metadata: SeriesMetadata
                       ) -> dict[str, dict[str, Any]]:
    async def rows() -> list[Any]:
        return await stored_instances(services.sessions, Scope(), SPEC.study_uid, SERIES)
    entry = await metadata.series(SPEC.study_uid, SERIES, rows)
    assert entry is not None
    return {m.sop_uid: m.json for m in entry.instances}


async def test_a_growing_series_reads_only_its_new_and_replaced_headers(
        services: NodeServices, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    read = counting_reads(monkeypatch)
    folder = tmp_path / "sent"
    for n in range(3):
        await store(services, folder, make_instance(SPEC, 0, n))
    metadata = SeriesMetadata(services, tmp_path / "metadata")
    assert len(await whole_series(services, metadata)) == 3
    assert len(read) == 3

    for n in range(3, 5):
        await store(services, folder, make_instance(SPEC, 0, n))
    replaced = make_instance(SPEC, 0, 0)
    replaced.SeriesDescription = "REPLACED"
    await store(services, folder, replaced)
    found = await whole_series(services, metadata)
    assert sorted(read[3:]) == sorted([f"{SERIES}.4", f"{SERIES}.5", f"{SERIES}.1"])
    assert len(found) == 5
    assert found[f"{SERIES}.1"]["0008103E"]["Value"] == ["REPLACED"]

    # Another process (nothing in memory) finds the file of the last stamp: nothing is read.
    again = SeriesMetadata(services, tmp_path / "metadata")
    assert await whole_series(services, again) == found
    assert len(read) == 6
    # One more instance: that process reads its header alone, reusing the older file's JSON.
    await store(services, folder, make_instance(SPEC, 0, 5))
    assert len(await whole_series(services, SeriesMetadata(services, tmp_path / "metadata"))
               ) == 6
    assert read[6:] == [f"{SERIES}.6"]


async def test_a_series_that_keeps_growing_is_made_within_the_longest_wait(
        services: NodeServices, tmp_path: Path) -> None:
    metadata = SeriesMetadata(services, tmp_path / "metadata")
    # Never idle long enough: only the longest wait can make the series.
    warmer = MetadataWarmer(services, metadata, idle_seconds=3600, poll_seconds=0.05,
                            max_wait_seconds=0.5)
    services.ingestor.listeners.append(warmer.instance_indexed)
    running = asyncio.create_task(warmer.run())
    made = metadata_file(tmp_path / "metadata", SERIES)
    deadline = time.monotonic() + 20
    try:
        n = 0
        while not made.is_file() and time.monotonic() < deadline:
            await store(services, tmp_path / "sent", make_instance(SPEC, 0, n))
            n += 1
    finally:
        running.cancel()
    assert made.is_file(), f"not made while {n} instances kept arriving"
    assert n > 1
