"""Pathology slides in the viewer, in headless Chromium: a token for a case (and a slide) opens
OpenSeadragon on the session's DeepZoom tiles, the colour profile toggle changes what is drawn,
and the annotation layers one pathologist draws reach another only as the context allows.

One app and one browser for the module: a DICOM WSI and an SVS of one case (the DICOM slide has
a red/blue swapping .cube), and an SVS of another case that no session here may read.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from playwright.async_api import Browser, Page, Response

from pathology.catalogue import register_slide_file
from tests import slide_factory as factory
from tests.browser import browser, new_page, screenshot
from tests.rest_support import API_KEY, ROLE, Api, running_app

__all__ = ["browser"]

CASE = "C231606-1426"
DICOM_SLIDE = factory.SpecimenSpec().container_identifier
SVS_SLIDE = "C231606-1426-B-1-1"
OTHER_SLIDE = "C999999-1-A-1-1"
READY = "#slide-panel[data-state='ready']"

# Over the canvas's drawn (opaque) pixels: how red and blue follow x. The synthetic slide's red
# is a left-to-right ramp and its blue a checkerboard, so swapping the two channels shows.
SLOPES_JS = """() => {
  const canvas = document.querySelector('#slide-osd canvas');
  const ctx = canvas.getContext('2d');
  const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  let n = 0, sx = 0, sr = 0, sb = 0, sxr = 0, sxb = 0, sxx = 0, sq = 0;
  for (let y = 0; y < canvas.height; y += 3) {
    for (let x = 0; x < canvas.width; x += 3) {
      const i = (y * canvas.width + x) * 4;
      if (data[i + 3] < 255) continue;
      const r = data[i], b = data[i + 2];
      n += 1; sx += x; sr += r; sb += b; sxr += x * r; sxb += x * b; sxx += x * x; sq += r * r;
    }
  }
  const varx = sxx / n - (sx / n) ** 2;
  return {opaque: n, meanR: sr / n, stdR: Math.sqrt(sq / n - (sr / n) ** 2),
          red: (sxr / n - sx / n * sr / n) / varx, blue: (sxb / n - sx / n * sb / n) / varx};
}"""


@pytest.fixture(scope="module")
async def api(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    folder = tmp_path_factory.mktemp("viewer-slides")
    slides = factory.write_slide_set(folder / "slides")
    other = factory.write_svs(folder / "other.svs")
    async with running_app(folder / "node") as api:
        for path in slides.dicom.paths:
            await api.services.ingestor.ingest_copy(path, "import")
        services = api.services
        await register_slide_file(services.sessions, services.storage, SVS_SLIDE, slides.svs,
                                  accession_number=CASE)
        await register_slide_file(services.sessions, services.storage, OTHER_SLIDE, other,
                                  accession_number="C999999")
        response = await api.client.post(
            "/webdv/lut", params={"containerIdentifier": DICOM_SLIDE},
            data=factory.swap_red_blue_cube().encode(), headers={"Authorization": API_KEY})
        assert response.status == 200, await response.text()
        yield api


async def open_slides(api: Api, browser: Browser, user: str, params: dict[str, Any],
                      options: dict[str, Any] | None = None) -> Page:
    token = await api.token({"username": user, "role": ROLE, "accNum": CASE, **params})
    if options:
        await api.set_options(token, options)
    page = await new_page(browser, 1280, 800)
    await page.goto(str(api.client.make_url(f"/ngv?q={token}")))
    return page


def url(api: Api, path: str) -> str:
    return str(api.client.make_url(path))


async def slopes(page: Page) -> dict[str, float]:
    result: dict[str, float] = await page.evaluate(SLOPES_JS)
    return result


async def test_token_for_a_slide_opens_deep_zoom_on_the_sessions_tiles(
        api: Api, browser: Browser) -> None:
    tiles: list[Response] = []
    page = await new_page(browser, 1280, 800)
    page.on("response", lambda r: tiles.append(r) if "/dz_files/" in r.url else None)
    token = await api.token({"username": "path-a", "role": ROLE, "accNum": CASE,
                             "containerIdentifier": DICOM_SLIDE})
    await page.goto(str(api.client.make_url(f"/ngv?q={token}")))
    await page.wait_for_selector(READY)
    assert tiles and all(r.status == 200 for r in tiles), [(r.url, r.status) for r in tiles]
    assert all(r.url.startswith(str(api.client.make_url("/ngv/slides/"))) for r in tiles)
    stats = await slopes(page)
    assert stats["opaque"] > 10_000 and stats["stdR"] > 20, stats
    # Only the named slide is in the tray; its specimen, block and slide are shown.
    assert await page.locator("#slide-tray button").count() == 1
    meta = await page.text_content("#slide-meta") or ""
    assert "C231606-1426-A" in meta and "C231606-1426-A-1" in meta and "A-1-A" in meta, meta
    # The session reads its slide and nothing else, even of the same case.
    assert (await page.request.get(url(api, f"/ngv/slides/{DICOM_SLIDE}/dz.dzi"))).status == 200
    for cid in (SVS_SLIDE, OTHER_SLIDE):
        for path in ("dz.dzi", "dz_files/9/0_0.jpeg", "thumbnail.jpeg", "label.png", "layers"):
            response = await page.request.get(url(api, f"/ngv/slides/{cid}/{path}"))
            assert response.status == 403, (cid, path, response.status)
    await screenshot(page, "viewer-slide")
    context = page.context
    await context.close()
    # Without a session, nothing; the API-key routes are unchanged.
    assert (await api.client.get(f"/ngv/slides/{DICOM_SLIDE}/dz.dzi")).status == 401
    assert (await api.get(f"/webdv/slides/{DICOM_SLIDE}/dz.dzi")).status == 200


async def test_case_alone_opens_every_slide_in_a_collapsed_tray(
        api: Api, browser: Browser) -> None:
    page = await open_slides(api, browser, "path-a", {}, {"collapsePreviews": True})
    await page.wait_for_selector(READY)
    buttons = page.locator("#slide-tray button")
    assert sorted([str(await b.get_attribute("data-slide")) for b in await buttons.all()]) == [
        DICOM_SLIDE, SVS_SLIDE]
    assert await page.get_attribute("#slide-panel", "class") == "slide-panel tray-collapsed"
    await page.click("#slide-tray-toggle")
    await page.click(f"#slide-tray button[data-slide='{SVS_SLIDE}']")
    await page.wait_for_selector(f"#slide-panel[data-slide='{SVS_SLIDE}'][data-state='ready']")
    assert (await page.request.get(url(api, f"/ngv/slides/{OTHER_SLIDE}/dz.dzi"))).status == 403
    await page.context.close()


async def test_lut_toggle_swaps_the_drawn_channels(api: Api, browser: Browser) -> None:
    page = await open_slides(api, browser, "path-a", {"containerIdentifier": DICOM_SLIDE})
    await page.wait_for_selector(READY)
    raw = await slopes(page)
    assert raw["red"] > 0.1 and abs(raw["blue"]) < raw["red"] / 3, raw
    await page.click("#slide-lut")
    await page.wait_for_selector("#slide-panel[data-lut='1'][data-state='ready']")
    await page.wait_for_timeout(100)
    lut = await slopes(page)
    assert lut["blue"] > 0.1 and abs(lut["red"]) < lut["blue"] / 3, lut
    assert abs(lut["blue"] - raw["red"]) < raw["red"] * 0.3, (raw, lut)
    await screenshot(page, "viewer-slide-lut")
    await page.click("#slide-lut")
    await page.wait_for_selector("#slide-panel[data-lut='0'][data-state='ready']")
    await page.wait_for_timeout(100)
    back = await slopes(page)
    assert abs(back["red"] - raw["red"]) < raw["red"] * 0.2, (raw, back)
    await page.context.close()


async def draw_rectangle(page: Page) -> None:
    await page.click("#slide-tool-rectangle")
    box = await page.locator("#slide-overlay").bounding_box()
    assert box is not None
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    await page.mouse.move(x - 80, y - 50)
    await page.mouse.down()
    await page.mouse.move(x, y, steps=3)
    await page.mouse.move(x + 80, y + 50, steps=3)
    await page.mouse.up()


async def test_layers_drawn_by_one_user_reach_another_only_with_all(
        api: Api, browser: Browser) -> None:
    slide = {"containerIdentifier": DICOM_SLIDE}
    author = await open_slides(api, browser, "path-author", slide)
    await author.wait_for_selector(READY)
    await author.fill("#slide-layer", "Margins")
    await draw_rectangle(author)
    await author.wait_for_selector("#slide-panel[data-shapes='1']")
    await author.click("#slide-tool-point")
    box = await author.locator("#slide-overlay").bounding_box()
    assert box is not None
    await author.mouse.click(box["x"] + 40, box["y"] + box["height"] / 2)
    await author.wait_for_selector("#slide-panel[data-shapes='2']")
    await author.click("#slide-tool-polygon")
    left, top = box["x"] + 60, box["y"] + 60
    for dx, dy in ((0, 0), (90, 10), (40, 80)):
        await author.mouse.click(left + dx, top + dy)
    await author.keyboard.press("Enter")
    await author.wait_for_selector("#slide-panel[data-shapes='3']")
    await author.click("#slide-tool-ellipse")
    await author.mouse.move(left + 200, top)
    await author.mouse.down()
    await author.mouse.move(left + 300, top + 60, steps=3)
    await author.mouse.up()
    await author.wait_for_selector("#slide-panel[data-shapes='4']")
    assert await author.locator("#slide-overlay g[data-owner='path-author'] .shape").count() == 4
    assert await author.locator("#slide-overlay ellipse.shape").count() == 1
    await screenshot(author, "viewer-slide-layers")
    await author.context.close()
    # Saved as the session's user, whatever the browser could have sent.
    stored = await (await api.get(f"/webdv/slides/{DICOM_SLIDE}/layers",
                                  {"username": "x", "annotationVisibility": "ALL"})).json()
    [layer] = [entry for entry in stored["layers"] if entry["owner"] == "path-author"]
    assert layer["name"] == "Margins"
    assert [shape["type"] for shape in layer["shapes"]] == [
        "rectangle", "point", "polygon", "ellipse"]

    async def seen_by_reader(params: dict[str, Any]) -> int:
        page = await open_slides(api, browser, "path-reader", {**slide, **params})
        await page.wait_for_selector(READY)
        await page.wait_for_selector("#slide-panel[data-shapes]")
        count = await page.locator("#slide-overlay .shape").count()
        assert await page.get_attribute("#slide-panel", "data-shapes") == str(count)
        await page.context.close()
        return count

    assert await seen_by_reader({"annotationVisibility": "ALL"}) == 4
    assert await seen_by_reader({"annotationVisibility": "USER"}) == 0
    assert await seen_by_reader({"annotationVisibility": "ALL", "hideLayers": "true"}) == 0
    own = await open_slides(api, browser, "path-author", {**slide, "hideLayers": "true"})
    await own.wait_for_selector("#slide-panel[data-shapes='0']")
    await own.context.close()


async def test_vendor_route_serves_only_the_openseadragon_build(api: Api) -> None:
    response = await api.client.get("/ngv/vendor/openseadragon/openseadragon.min.js")
    assert response.status == 200
    assert response.content_type == "text/javascript"
    assert "OpenSeadragon" in (await response.text())[:5000]
    for path in ("/ngv/vendor/openseadragon/../../package.json",
                 "/ngv/vendor/openseadragon/%2e%2e/%2e%2e/package.json",
                 "/ngv/vendor/openseadragon/missing.js", "/ngv/vendor/other/x.js"):
        assert (await api.client.get(path)).status == 404, path


# --- anonymized sessions ----------------------------------------------------------------------

# What identifies the case or a slide: the accession number every identifier of this case
# begins with, and the identifiers themselves.
IDENTIFIERS = ("C231606", DICOM_SLIDE, SVS_SLIDE, "1426-A")


async def slide_session(api: Api, **params: str) -> dict[str, str]:
    return await api.session_headers(
        {"username": "path-anon", "role": ROLE, "accNum": CASE, **params})


async def tray(api: Api, headers: dict[str, str]) -> dict[str, Any]:
    response = await api.client.get("/ngv/slides", headers=headers)
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


def assert_no_identifiers(text: str) -> None:
    for identifier in IDENTIFIERS:
        assert identifier not in text, identifier


async def test_anonymized_sessions_get_no_label_or_macro_image(api: Api) -> None:
    plain = await slide_session(api)
    assert (await api.client.get(f"/ngv/slides/{DICOM_SLIDE}/label.png",
                                 headers=plain)).status == 200
    headers = await slide_session(api, anonymize="true")
    aliases = [slide["containerIdentifier"] for slide in (await tray(api, headers))["slides"]]
    assert len(aliases) == 2
    for alias in [*aliases, DICOM_SLIDE]:
        for name in ("label.png", "macro.jpeg"):
            response = await api.client.get(f"/ngv/slides/{alias}/{name}", headers=headers)
            assert response.status == 403, (alias, name)
            assert "error" in await response.json()


async def test_anonymized_sessions_see_slides_by_alias_without_identifiers(api: Api) -> None:
    headers = await slide_session(api, anonymize="true")
    body = await tray(api, headers)
    assert_no_identifiers(str(body))
    by_alias = {slide["containerIdentifier"]: slide for slide in body["slides"]}
    assert body["selected"] in by_alias
    assert {slide["slideAlias"] for slide in body["slides"]} >= {"A-1-A"}
    for alias in by_alias:
        described = await api.client.get(f"/ngv/slides/{alias}", headers=headers)
        assert described.status == 200
        text = await described.text()
        assert_no_identifiers(text)
        assert (await described.json())["associatedImages"] == []
        for path in ("metadata", "dz.dzi", "dz_files/9/0_0.jpeg", "thumbnail.jpeg", "layers"):
            response = await api.client.get(f"/ngv/slides/{alias}/{path}", headers=headers)
            assert response.status == 200, (alias, path, response.status)
            if response.content_type == "application/json":
                assert_no_identifiers(await response.text())
    # An alias is the session's own: another session cannot use it.
    other = await slide_session(api, anonymize="true")
    alias = next(iter(by_alias))
    assert (await api.client.get(f"/ngv/slides/{alias}/dz.dzi", headers=other)).status == 403


async def test_anonymized_slide_viewer_opens_and_shows_no_identifiers(
        api: Api, browser: Browser) -> None:
    page = await new_page(browser, 1280, 800)
    bodies: list[str] = []

    async def keep(response: Response) -> None:
        kind = response.headers.get("content-type", "")
        if kind.startswith(("text/", "application/json", "application/xml")):
            bodies.append(response.url + "\n" + await response.text())
        else:
            bodies.append(response.url)

    page.on("response", keep)
    token = await api.token({"username": "path-anon", "role": ROLE, "accNum": CASE,
                             "containerIdentifier": DICOM_SLIDE, "anonymize": "true"})
    await page.goto(str(api.client.make_url(f"/ngv?q={token}")))
    await page.wait_for_selector(READY)
    stats = await slopes(page)
    assert stats["opaque"] > 10_000 and stats["stdR"] > 20, stats
    assert "A-1-A" in (await page.text_content("#slide-meta") or "")
    assert_no_identifiers(await page.content())
    for body in bodies:
        assert_no_identifiers(body)
    await screenshot(page, "viewer-slide-anonymized")
    await page.context.close()


# --- bodies ------------------------------------------------------------------------------------


async def test_deeply_nested_layer_bodies_are_400(api: Api) -> None:
    deep = ("[" * 100_000).encode()
    headers = await slide_session(api)
    response = await api.client.put(
        f"/ngv/slides/{DICOM_SLIDE}/layers/Deep", data=deep,
        headers={**headers, "Content-Type": "application/json"})
    assert response.status == 400
    assert "nested" in (await response.json())["error"]
    response = await api.client.put(
        f"/webdv/slides/{DICOM_SLIDE}/layers/Deep", params={"username": "x"}, data=deep,
        headers={"Authorization": API_KEY, "Content-Type": "application/json"})
    assert response.status == 400
    assert "nested" in (await response.json())["error"]
