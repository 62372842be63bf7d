"""OHIF's measurements saved as DICOM SR through the node's STOW-RS, in headless Chromium.

A length drawn in one session is stored by OHIF's "Create SR" under the session's user, and a
new token on the same study shows it again. A role without `save` has no save control, and
the node refuses a store from it all the same.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser
from sqlalchemy import select

from node.index.dicom_models import Instance, Series, Study
from node.index.viewing_models import AuditEvent
from node.viewing.roles import add_role
from tests.browser import browser, screenshot
from tests.factory import StudySpec, uid
from tests.rest_support import Api, running_app
from tests.test_ohif_browser import (
    MEASUREMENTS_BUTTON,
    STUDY_BROWSER,
    draw_length,
    first_image,
    open_token,
)
from tests.viewer_data import ct_instances, write_all

__all__ = ["browser"]


CT = StudySpec(study_uid=uid(8501), patient_id="PID-OHIF-SR", patient_name="MEASURED^MARGOT",
               accession="ACC-OHIF-SR", study_date="20240712", study_description="CT ABDOMEN",
               rows=256, columns=256)
SAVER = "ohif-saver"
USER = "dr-length"


@pytest.fixture(scope="module")
async def api(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    folder = tmp_path_factory.mktemp("ohif-measurements")
    async with running_app(folder) as api:
        for path in write_all(folder / "ct", ct_instances(CT, 4)):
            await api.services.ingestor.ingest_copy(path, "import")
        await add_role(api.services.sessions, SAVER, ["save"])
        yield api


REPORT = "Liver lesion"


async def saved_reports(api: Api) -> list[tuple[str, str, str]]:
    """(SOP Instance UID, SOP Class UID, origin) of the study's SR instances."""
    async with api.services.sessions() as session:
        rows = await session.execute(
            select(Instance.sop_uid, Instance.sop_class_uid, Instance.origin)
            .join(Series, Instance.series_pk == Series.id)
            .join(Study, Series.study_pk == Study.id)
            .where(Study.study_uid == CT.study_uid, Series.modality == "SR"))
        return [(row[0], row[1], row[2]) for row in rows]


async def stow_audits(api: Api) -> list[AuditEvent]:
    async with api.services.sessions() as session:
        return list((await session.scalars(
            select(AuditEvent).where(AuditEvent.action == "stow"))).all())


async def test_a_length_saved_as_sr_is_shown_again_with_a_new_token(
        api: Api, browser: Browser) -> None:
    opened = await open_token(api, browser, {"studyUID": CT.study_uid, "role": SAVER,
                                             "username": USER})
    await first_image(opened)
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
    [audit] = await stow_audits(api)
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

