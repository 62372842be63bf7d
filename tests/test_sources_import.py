"""Imports from local files and folders, run against the node's own services: what the index
holds afterwards, and how failures are reported per instance."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydicom import dcmread

from node.process.runtime import open_services
from node.services import NodeServices
from node.sources import ImportProgress, parse_request, plan_import
from node.sources.post_context import WRITE_INTERVAL, ContextProgress, issue_context
from node.viewing import context_json
from node.viewing.roles import add_role
from tests.factory import uid
from tests.post_examples import example
from tests.source_fixtures import (
    indexed,
    node_config,
    run_body,
    storage_table,
    write_spec_files,
    write_spec_folder,
    write_wsi_files,
)


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[NodeServices]:
    async with open_services(node_config(tmp_path / "node")) as opened:
        yield opened


async def test_the_files_example_indexes_every_file_with_the_request_data(
    services: NodeServices, tmp_path: Path
) -> None:
    volume = tmp_path / "volume"
    write_spec_files(volume)
    progress = await run_body(services, example("files"), storage_table(volume))
    assert (progress.state, progress.total, progress.done, progress.failed) == (
        "done", 6, 6, 0), progress.failures
    rows = await indexed(services)
    assert sorted(rows) == ["1.2.826.123.1.1.1", "1.2.826.123.1.2.1", "1.2.826.123.1.3.1",
                            "1.2.826.123.1.4.1", "1.2.826.123.1.5.1", "1.2.826.123.1.6.1"]
    for row in rows.values():
        # The JSON has priority over the DICOM file's own patient and study attributes.
        assert (row.patient_id, row.patient_name, row.birth_date, row.sex) == (
            "PID-123", "DOE^JANE", "19821108", "F")
        assert (row.study_uid, row.accession, row.study_date, row.study_description) == (
            "1.2.826.123.1", "AN-123", "20231205", "File-system images")
    assert rows["1.2.826.123.1.1.1"].series_uid == "1.2.826.123.1.1"
    assert rows["1.2.826.123.1.1.1"].sop_class_uid == "1.2.840.10008.5.1.4.1.1.2"  # still CT
    assert rows["1.2.826.123.1.2.1"].sop_class_uid == "1.2.840.10008.5.1.4.1.1.7"
    assert rows["1.2.826.123.1.5.1"].modality == "XC"
    assert rows["1.2.826.123.1.5.1"].sop_class_uid == "1.2.840.10008.5.1.4.1.1.77.1.4.1"
    assert rows["1.2.826.123.1.6.1"].series_uid == "1.2.826.132.1.6"
    assert rows["1.2.826.123.1.6.1"].modality == "SR"
    assert rows["1.2.826.123.1.6.1"].series_description == "PDF"
    stored = dcmread(services.storage.local_path(rows["1.2.826.123.1.1.1"].path))
    assert (stored.PatientName, stored.StudyInstanceUID) == ("DOE^JANE", "1.2.826.123.1")
    # The source files are left as they were.
    original = dcmread(volume / "images/image-1.dcm")
    assert original.PatientName == "FILE^NAME"
    assert progress.studies["1.2.826.123.1"].done == 6


async def test_sending_the_same_request_again_stores_nothing_new(
    services: NodeServices, tmp_path: Path
) -> None:
    volume = tmp_path / "volume"
    write_spec_files(volume)
    await run_body(services, example("files"), storage_table(volume))
    again = await run_body(services, example("files"), storage_table(volume))
    assert (again.done, again.duplicates, again.failed) == (6, 6, 0)
    assert len(await indexed(services)) == 6
    assert services.storage.incoming_files() == []


async def test_the_folder_example_indexes_every_dicom_file_under_it(
    services: NodeServices, tmp_path: Path
) -> None:
    volume = tmp_path / "volume"
    paths = write_spec_folder(volume)
    progress = await run_body(services, example("folder"), storage_table(volume))
    assert (progress.total, progress.done, progress.failed, progress.skipped) == (
        len(paths), len(paths), 0, 2)
    rows = await indexed(services)
    assert {r.study_uid for r in rows.values()} == {uid(401, 1), uid(401, 2)}
    assert {r.patient_id for r in rows.values()} == {"FOLDER-A", "FOLDER-B"}
    assert services.storage.incoming_files() == []


async def test_a_dicom_slide_brings_the_other_instances_of_its_series(
    services: NodeServices, tmp_path: Path
) -> None:
    volume = tmp_path / "volume"
    write_wsi_files(volume, levels=3)
    progress = await run_body(services, example("dicom-wsi"), storage_table(volume))
    assert (progress.total, progress.done, progress.failed) == (3, 3, 0), progress.failures
    rows = await indexed(services)
    assert len(rows) == 3 and "1.2.826.123.1.1.1" in rows
    for row in rows.values():
        assert (row.study_uid, row.series_uid, row.patient_id, row.accession) == (
            "1.2.826.123.1", "1.2.826.123.1.1", "PID-123", "C231606-1426")
        assert row.container_identifier == "C231606-1426-A-1-1"
        assert row.sop_class_uid == "1.2.840.10008.5.1.4.1.1.77.1.6"


async def test_a_non_dicom_slide_without_a_slide_registry_fails_with_a_reason(
    services: NodeServices, tmp_path: Path
) -> None:
    volume = tmp_path / "volume"
    (volume / "ndpi").mkdir(parents=True)
    (volume / "ndpi/C231606-1426-A-1-A.ndpi").write_bytes(b"II*\x00" + bytes(100))
    progress = await run_body(services, example("non-dicom-wsi"), storage_table(volume))
    assert (progress.done, progress.failed) == (0, 1)
    failure = progress.failures[0]
    assert failure["where"] == "studies[0].series[0].instances[0].file"
    assert "no slide registry" in failure["message"]
    assert failure["sopInstanceUID"] == "1.2.826.123.1.1.1"


async def test_a_bad_file_fails_alone_and_the_others_are_indexed(
    services: NodeServices, tmp_path: Path
) -> None:
    volume = tmp_path / "volume"
    write_spec_files(volume)
    (volume / "images/image-1.png").write_bytes(b"this is not a PNG")
    (volume / "images/video-1.mp4").write_bytes(b"\x00\x00\x00\x08free")
    progress = await run_body(services, example("files"), storage_table(volume))
    assert (progress.done, progress.failed) == (4, 2)
    failures = {f["where"]: f["message"] for f in progress.failures}
    assert "not a readable PNG" in failures["studies[0].series[2].instances[0].file"]
    assert "ftyp" in failures["studies[0].series[4].instances[0].file"]
    assert progress.studies["1.2.826.123.1"].failed == 2
    assert len(await indexed(services)) == 4
    assert services.storage.incoming_files() == []


async def test_progress_reaches_the_context_while_and_after_importing(
    services: NodeServices, tmp_path: Path
) -> None:
    await add_role(services.sessions, "diagnostic", [])
    volume = tmp_path / "volume"
    write_spec_folder(volume)
    plan = plan_import(parse_request(example("folder")), storage_table(volume), services.config)
    progress = ImportProgress()
    token, context_pk = await issue_context(services, plan, progress)
    writer = ContextProgress(services, context_pk)
    writer.attach(progress)
    progress.set_state("fetching")
    progress.add_total(3)
    progress.succeed(uid(401, 1))
    # The throttled write comes within WRITE_INTERVAL, without being asked.
    deadline = time.monotonic() + WRITE_INTERVAL + 10
    while (context := await context_json(services, context_pk))["sources"]["import"]["done"] < 1:
        assert time.monotonic() < deadline, "the progress was not written without being asked"
        await asyncio.sleep(0.02)
    assert context["sources"]["import"]["done"] == 1
    assert [(s["studyInstanceUID"], s["state"]) for s in context["studies"]] == [
        (uid(401, 1), "retrieving")]
    progress.fail("/storage/studies/study1/b/x.dcm", "not readable", uid(401, 2))
    progress.succeed(uid(401, 1))
    progress.set_state("done")
    await writer.finish(progress)
    context = await context_json(services, context_pk)
    states = {s["studyInstanceUID"]: (s["state"], s["message"]) for s in context["studies"]}
    assert states == {uid(401, 1): ("available", None), uid(401, 2): ("failed", "not readable")}
    assert context["sources"]["import"]["state"] == "done" and len(token) == 64
