"""OHIF's measurements saved as DICOM SR, and its segmentations as DICOM SEG, through the node's
STOW-RS, in headless Chromium.

A length drawn in one session is stored by OHIF's "Create SR" under the session's user, and a
new token on the same study shows it again. A role without `save` has no save control, and
the node refuses a store from it all the same. A segmentation painted for a patient whose
studies carry an IssuerOfPatientID is stored too: OHIF's SEG export leaves the issuer out, and
the node fills it in (rest/dicomweb/stow_issuer.py) rather than refusing it as another
patient's study.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pydicom
import pytest
from playwright.async_api import Browser
from sqlalchemy import select

from node.index.dicom_models import Instance, Series, Study
from node.index.instance_queries import stored_files
from node.index.viewing_models import AuditEvent
from node.viewing.roles import add_role
from tests.browser import browser, screenshot
from tests.factory import StudySpec, uid
from tests.rest_support import Api, running_app
from tests.test_ohif_browser import (
    MEASUREMENTS_BUTTON,
    STUDY_BROWSER,
    Session,
    drag_across_viewport,
    draw_length,
    first_image,
    open_token,
)
from tests.test_patient_identity_ingest import patient_of_instance
from tests.viewer_data import ct_instances, write_all

__all__ = ["browser"]


CT = StudySpec(study_uid=uid(8501), patient_id="PID-OHIF-SR", patient_name="MEASURED^MARGOT",
               accession="ACC-OHIF-SR", study_date="20240712", study_description="CT ABDOMEN",
               rows=256, columns=256)
ISSUER = "HOSPITAL-SEG"
# A patient whose studies carry an issuer, with the geometry a segmentation needs.
SEGMENTED = StudySpec(study_uid=uid(8511), patient_id="PID-OHIF-SEG", issuer=ISSUER,
                      patient_name="SEGMENTED^SAM", accession="ACC-OHIF-SEG",
                      study_date="20240713", study_description="CT LIVER", rows=256, columns=256)
SAVER = "ohif-saver"
USER = "dr-length"
PAINTER = "dr-brush"


@pytest.fixture(scope="module")
async def api(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    folder = tmp_path_factory.mktemp("ohif-measurements")
    async with running_app(folder) as api:
        slices = ct_instances(SEGMENTED, 4)
        for index, ds in enumerate(slices):
            ds.FrameOfReferenceUID = f"{SEGMENTED.study_uid}.9"
            ds.ImagePositionPatient = [0.0, 0.0, 5.0 * index]
            ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
            ds.PixelSpacing = [1.0, 1.0]
            ds.SliceThickness = 5.0
        for path in (write_all(folder / "ct", ct_instances(CT, 4))
                     + write_all(folder / "segmented", slices)):
            await api.services.ingestor.ingest_copy(path, "import")
        await add_role(api.services.sessions, SAVER, ["save"])
        yield api


REPORT = "Liver lesion"


async def saved_reports(api: Api, study: StudySpec = CT, modality: str = "SR"
                        ) -> list[tuple[str, str, str]]:
    """(SOP Instance UID, SOP Class UID, origin) of the study's SR (or `modality`) instances."""
    async with api.services.sessions() as session:
        rows = await session.execute(
            select(Instance.sop_uid, Instance.sop_class_uid, Instance.origin)
            .join(Series, Instance.series_pk == Series.id)
            .join(Study, Series.study_pk == Study.id)
            .where(Study.study_uid == study.study_uid, Series.modality == modality))
        return [(row[0], row[1], row[2]) for row in rows]


async def stow_audits(api: Api, username: str) -> list[AuditEvent]:
    async with api.services.sessions() as session:
        return list((await session.scalars(
            select(AuditEvent).where(AuditEvent.action == "stow",
                                     AuditEvent.username == username))).all())


async def saving_session(api: Api, browser: Browser, study: StudySpec, username: str
                         ) -> Session:
    """A session of `username` with a role that may save, on `study`, its first image drawn."""
    opened = await open_token(api, browser, {"studyUID": study.study_uid, "role": SAVER,
                                             "username": username})
    await first_image(opened)
    return opened


async def test_a_length_saved_as_sr_is_shown_again_with_a_new_token(
        api: Api, browser: Browser) -> None:
    opened = await saving_session(api, browser, CT, USER)
    page = opened.page
    await draw_length(page)
    # The role may save, not download: Create SR without CSV, the dialog without Download.
    assert not await page.get_by_role("button", name="CSV").is_visible()
    await page.get_by_role("button", name="Create SR").click()
    await page.get_by_placeholder("Report name").fill(REPORT)
    assert await page.get_by_role("button", name="Download").count() == 0
    await screenshot(page, "ohif-sr-dialog")
    async with page.expect_response(
            lambda r: r.request.method == "POST" and "/dicom-web/studies" in r.url) as stored:
        await page.get_by_role("button", name="Save").click()
    assert (await stored.value).status == 200
    await page.get_by_text("Measurements saved successfully").wait_for()
    await screenshot(page, "ohif-sr-saved")
    await opened.close()

    [(sop_uid, sop_class, origin)] = await saved_reports(api)
    assert sop_class.startswith("1.2.840.10008.5.1.4.1.1.88.")
    assert origin == f"stow:{USER}"
    [audit] = await stow_audits(api, USER)
    assert (audit.username, audit.role) == (USER, SAVER)
    assert audit.detail["sopInstanceUIDs"] == [sop_uid]

    # Another session, of a role that may not save and with documents hidden (the default):
    # the saved measurement is listed, and loads onto its image.
    again = await open_token(api, browser, {"studyUID": CT.study_uid})
    await first_image(again)
    page = again.page
    thumbnail = page.locator(STUDY_BROWSER).get_by_text(REPORT)
    await thumbnail.dblclick()
    await page.locator(MEASUREMENTS_BUTTON).click()
    await page.wait_for_function(
        "() => document.querySelector(\"[data-cy='trackedMeasurements-panel']\")"
        "?.textContent.includes('37.6')", timeout=30_000)
    await screenshot(page, "ohif-sr-reopened")
    await again.close()


async def test_a_role_without_save_has_no_save_control(api: Api, browser: Browser) -> None:
    opened = await open_token(api, browser, {"studyUID": CT.study_uid})
    await first_image(opened)
    page = opened.page
    await draw_length(page)
    assert await page.get_by_role("button", name="CSV").is_visible()
    assert not await page.get_by_role("button", name="Create SR").is_visible()
    await screenshot(page, "ohif-sr-no-save")
    await opened.close()


async def test_a_segmentation_saved_as_dicom_seg_is_stored_with_the_patients_issuer(
        api: Api, browser: Browser) -> None:
    opened = await saving_session(api, browser, SEGMENTED, PAINTER)
    page = opened.page
    await page.goto(f"{opened.origin}/viewer/segmentation"
                    f"?StudyInstanceUIDs={SEGMENTED.study_uid}")
    await first_image(opened)
    await page.locator("[data-cy='addSegmentation']").click()
    await page.locator("[data-cy='Brush']").first.click()
    await page.locator("[data-cy='Brush'][data-active='true']").first.wait_for()
    await drag_across_viewport(page)
    await screenshot(page, "ohif-seg-painted")
    await page.locator("[data-cy='segmentation-collapsed-more-btn-Labelmap']").click()
    await page.locator("[role='menu'] [role='menuitem']", has_text="Export").hover()
    await page.locator("[role='menu'] [role='menuitem']", has_text="DICOM SEG").click()
    await screenshot(page, "ohif-seg-dialog")
    async with page.expect_response(
            lambda r: r.request.method == "POST" and "/dicom-web/studies" in r.url) as stored:
        await page.get_by_role("button", name="Save").click()
    answer = await stored.value
    # 202: stored, with WarningReason 0xB000 (the issuer was filled in); main answered 409.
    assert answer.status == 202, await answer.text()
    # The stored SEG is listed as a series of the study (OHIF's toast may be gone by now).
    await page.locator(STUDY_BROWSER).get_by_text("Segmentation 1").wait_for()
    await screenshot(page, "ohif-seg-saved")
    await opened.close()

    [(sop_uid, _, origin)] = await saved_reports(api, SEGMENTED, "SEG")
    assert origin == f"stow:{PAINTER}"
    assert await patient_of_instance(api, sop_uid) == (
        SEGMENTED.patient_id, ISSUER, SEGMENTED.patient_name)
    [stored_file] = await stored_files(api.services.sessions, [sop_uid])
    held = pydicom.dcmread(api.services.ingestor.storage.root / stored_file.path,
                           stop_before_pixels=True)
    assert (held.SOPInstanceUID, held.PatientID, held.IssuerOfPatientID) == (
        sop_uid, SEGMENTED.patient_id, ISSUER)
    # What OHIF sent had no issuer: the node filled it in, and the audit says so.
    [audit] = await stow_audits(api, PAINTER)
    assert audit.detail["issuerFilledSopInstanceUIDs"] == [sop_uid]
