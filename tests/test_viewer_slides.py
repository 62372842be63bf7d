"""Pathology slides in the viewer, in headless Chromium: a token for a case (and a slide) opens
OpenSeadragon on the session's DeepZoom tiles, the colour profile toggle changes what is drawn,
and the annotation layers one pathologist draws reach another only as the context allows.

One app and one browser for the module: a DICOM WSI and an SVS of one case (the DICOM slide has
a red/blue swapping .cube), and an SVS of another case that no session here may read.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from typing import Any

import pytest
from playwright.async_api import Browser, Page, Response, Route

from node.viewing.roles import add_role
from pathology.catalogue import register_slide_file
from tests import slide_factory as factory
from tests.browser import browser, new_page, screenshot, wait_until
from tests.rest_support import API_KEY, ROLE, Api, running_app

__all__ = ["browser"]

CASE = "C231606-1426"
DICOM_SLIDE = factory.SpecimenSpec().container_identifier
SVS_SLIDE = "C231606-1426-B-1-1"
OTHER_SLIDE = "C999999-1-A-1-1"
READY = "#slide-panel[data-state='ready']"
# A role that sees annotation layers and may not draw or change them.
LAYER_READER = "slide-layer-reader"

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
        await add_role(services.sessions, LAYER_READER, ["layers"])
        yield api


async def open_slides(api: Api, browser: Browser, user: str, params: dict[str, Any],
                      options: dict[str, Any] | None = None, role: str = ROLE) -> Page:
    token = await api.token({"username": user, "role": role, "accNum": CASE, **params})
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


async def test_colour_profile_is_on_from_the_start_when_the_slide_has_a_cube(
        api: Api, browser: Browser) -> None:
    page = await open_slides(api, browser, "path-a", {"containerIdentifier": DICOM_SLIDE})
    await page.wait_for_selector("#slide-panel[data-lut='1'][data-state='ready']")
    assert await page.get_attribute("#slide-lut", "aria-pressed") == "true"
    await page.wait_for_timeout(100)
    lut = await slopes(page)
    assert lut["blue"] > 0.1 and abs(lut["red"]) < lut["blue"] / 3, lut
    await screenshot(page, "viewer-slide-lut")
    await page.click("#slide-lut")
    await page.wait_for_selector("#slide-panel[data-lut='0'][data-state='ready']")
    await page.wait_for_timeout(100)
    raw = await slopes(page)
    assert raw["red"] > 0.1 and abs(raw["blue"]) < raw["red"] / 3, raw
    assert abs(lut["blue"] - raw["red"]) < raw["red"] * 0.3, (raw, lut)
    await page.click("#slide-lut")
    await page.wait_for_selector("#slide-panel[data-lut='1'][data-state='ready']")
    await page.wait_for_timeout(100)
    again = await slopes(page)
    assert abs(again["blue"] - lut["blue"]) < lut["blue"] * 0.2, (lut, again)
    # A slide without a .cube opens as scanned.
    await page.context.close()
    page = await open_slides(api, browser, "path-a", {"containerIdentifier": SVS_SLIDE})
    await page.wait_for_selector(READY)
    assert await page.get_attribute("#slide-panel", "data-lut") == "0"
    await page.context.close()


async def test_slides_have_the_page_without_radiology_tools(
        api: Api, browser: Browser) -> None:
    token = await api.token({"username": "path-a", "role": ROLE, "accNum": CASE,
                             "containerIdentifier": DICOM_SLIDE})
    page = await new_page(browser, 1280, 800)
    radiology: list[str] = []
    page.on("request", lambda r: radiology.append(r.url)
            if "/ngv/api/studies/" in r.url or "/dicom-web/" in r.url else None)
    await page.goto(str(api.client.make_url(f"/ngv?q={token}")))
    await page.wait_for_selector(READY)
    assert "slide-page" in (await page.get_attribute("body", "class") or "")
    for tool in ("#tool-window", "#tool-zoom", "#presets", "#cine", "#reset",
                 "#tray-toggle", "#grid", "#studies", "#tray"):
        assert await page.locator(tool).count() == 0, tool
    # The DICOM slide's levels are not opened as a radiology stack: no series, no frames.
    assert radiology == []
    await page.context.close()


# A canvas's drawn pixels in the navigator: the overview shows the slide.
NAVIGATOR_JS = """() => {
  const canvas = document.querySelector('#slide-osd .navigator canvas');
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let n = 0;
  for (let i = 0; i < data.length; i += 4) if (data[i + 3] === 255) n += 1;
  return n;
}"""


async def magnification(page: Page) -> float:
    return float(await page.get_attribute("#slide-panel", "data-magnification") or "nan")


async def test_navigator_scale_bar_and_magnification_presets(
        api: Api, browser: Browser) -> None:
    page = await open_slides(api, browser, "path-a", {"containerIdentifier": DICOM_SLIDE})
    await page.wait_for_selector(READY)
    assert await page.locator("#slide-osd .navigator").is_visible()
    await wait_until(page, f"() => ({NAVIGATOR_JS})() > 1000")
    # 0.25 µm per pixel: scanned at 40x, so every preset up to 40x.
    presets = page.locator("#slide-mag button")
    assert [await b.get_attribute("data-mag") for b in await presets.all()] == [
        "1.25", "2.5", "5", "10", "20", "40"]
    for preset in (10.0, 40.0):
        await page.click(f"#slide-mag button[data-mag='{preset:g}']")
        await wait_until(
            page, "() => Math.abs(document.querySelector('#slide-panel').dataset.magnification"
            f" - {preset}) < {preset * 0.01}")
        assert await page.get_attribute(f"#slide-mag button[data-mag='{preset:g}']",
                                        "aria-pressed") == "true"
        # At M x a screen pixel is 10/M µm: the bar is as long as it says.
        bar = await page.locator("#slide-scale .slide-scale-bar").bounding_box()
        assert bar is not None
        microns = float(await page.get_attribute("#slide-scale", "data-microns") or "nan")
        shown = bar["width"] * 10 / await magnification(page)
        assert abs(shown - microns) < microns * 0.03, (preset, bar, microns)
        text = await page.text_content("#slide-scale") or ""
        assert text.endswith("µm") and float(text.split()[0]) == microns, text
        assert (await page.text_content("#slide-zoom")) == f"{preset:g}x"
    await page.context.close()


async def test_label_image_is_shown_in_its_panel(api: Api, browser: Browser) -> None:
    page = await open_slides(api, browser, "path-a", {"containerIdentifier": DICOM_SLIDE})
    await page.wait_for_selector(READY)
    assert await page.is_hidden("#slide-label")
    await page.click("#slide-label-toggle")
    await wait_until(page, "() => document.querySelector('#slide-label-image')?.complete"
                     " && document.querySelector('#slide-label-image').naturalWidth > 0")
    # The synthetic label is solid (200, 30, 30).
    colour = await page.evaluate("""() => {
      const img = document.querySelector('#slide-label-image');
      const canvas = document.createElement('canvas');
      canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
      const ctx = canvas.getContext('2d');
      ctx.drawImage(img, 0, 0);
      return Array.from(ctx.getImageData(canvas.width / 2, canvas.height / 2, 1, 1).data);
    }""")
    assert all(abs(a - b) < 12 for a, b in zip(colour[:3], (200, 30, 30), strict=True)), colour
    assert await page.is_visible("#slide-label-image")
    await page.click("#slide-label-toggle")
    assert await page.is_hidden("#slide-label")
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


async def stored_shapes(api: Api, owner: str, slide: str = SVS_SLIDE) -> list[dict[str, Any]]:
    stored = await (await api.get(f"/webdv/slides/{slide}/layers",
                                  {"username": "x", "annotationVisibility": "ALL"})).json()
    return [shape for layer in stored["layers"] if layer["owner"] == owner
            for shape in layer["shapes"]]


async def stored_until(api: Api, owner: str, check: Any, timeout: float = 10.0
                       ) -> list[dict[str, Any]]:
    """The owner's stored shapes once `check` accepts them (the page saves after the event)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not check(shapes := await stored_shapes(api, owner)):
        assert asyncio.get_running_loop().time() < deadline, shapes
        await asyncio.sleep(0.05)
    return shapes


def shown_number(text: str | None, unit: str) -> float:
    assert text is not None and text.endswith(f" {unit}"), text
    return float(text.split()[0])


async def drag(page: Page, selector: str, dx: float, dy: float) -> None:
    # The overlay is drawn again on every viewport update: a node found may be replaced
    # before it is measured.
    deadline = asyncio.get_running_loop().time() + 5
    while (box := await page.locator(selector).bounding_box()) is None:
        assert asyncio.get_running_loop().time() < deadline, selector
        await asyncio.sleep(0.05)
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    await page.mouse.move(x, y)
    await page.mouse.down()
    await page.mouse.move(x + dx / 2, y + dy / 2, steps=2)
    await page.mouse.move(x + dx, y + dy, steps=2)
    await page.mouse.up()


async def test_shapes_are_measured_in_microns_edited_and_deleted(
        api: Api, browser: Browser) -> None:
    page = await open_slides(api, browser, "path-editor", {"containerIdentifier": SVS_SLIDE})
    await page.wait_for_selector(READY)
    box = await page.locator("#slide-overlay").bounding_box()
    assert box is not None
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    await page.click("#slide-tool-line")
    await page.mouse.click(x - 120, y - 150)
    await page.mouse.click(x + 60, y - 100)
    await page.keyboard.press("Enter")
    await page.wait_for_selector("#slide-panel[data-shapes='1']")
    await draw_rectangle(page)
    await page.wait_for_selector("#slide-panel[data-shapes='2']")
    line, rectangle = await stored_shapes(api, "path-editor")
    # The SVS is 0.25 µm per pixel.
    (x0, y0), (x1, y1) = line["points"]
    length = math.hypot(x1 - x0, y1 - y0) * 0.25
    xs = [p[0] for p in rectangle["points"]]
    ys = [p[1] for p in rectangle["points"]]
    area = (max(xs) - min(xs)) * (max(ys) - min(ys)) * 0.25 * 0.25 / 1e6
    rows = "#slide-layers section[data-owner='path-editor'] li"
    shown = shown_number(await page.text_content(f"{rows}[data-index='0'] .measure"), "µm")
    assert abs(shown - length) < length * 0.005, (shown, length)
    shown = shown_number(await page.text_content(f"{rows}[data-index='1'] .measure"), "mm²")
    assert abs(shown - area) < area * 0.01, (shown, area)
    assert await page.locator("#slide-overlay text.measure").count() == 2

    # Edit: select the rectangle, drag a corner, then move it whole.
    await page.click("#slide-tool-edit")
    await drag(page, "#slide-overlay .shape.rectangle", 0, 0)
    await page.wait_for_selector("#slide-overlay .shape.rectangle.selected")
    assert await page.locator("#slide-overlay .handle").count() == 2
    await drag(page, "#slide-overlay .handle[data-handle='1']", 40, 30)
    grown = await stored_until(api, "path-editor", lambda shapes: max(
        p[0] for p in shapes[1]["points"]) > max(xs) + 20)
    width = max(p[0] for p in grown[1]["points"]) - min(p[0] for p in grown[1]["points"])
    assert min(p[0] for p in grown[1]["points"]) == min(xs)
    # The page has read the grown shape back before it is moved (as a reader sees it saved).
    await page.wait_for_selector("#slide-panel:not([data-saving])", state="attached")
    await drag(page, "#slide-overlay .shape.rectangle", -50, 0)
    moved = await stored_until(api, "path-editor", lambda shapes: min(
        p[0] for p in shapes[1]["points"]) < min(xs) - 20)
    moved_xs = [p[0] for p in moved[1]["points"]]
    assert abs(max(moved_xs) - min(moved_xs) - width) <= 1
    assert moved[0] == line

    # Delete: the selected shape, then the layer.
    await page.keyboard.press("Delete")
    await page.wait_for_selector("#slide-panel[data-shapes='1']")
    assert [s["type"] for s in await stored_shapes(api, "path-editor")] == ["line"]
    await page.click("#slide-layers section[data-owner='path-editor'] .layer-delete")
    await page.wait_for_selector("#slide-panel[data-layers='0']")
    assert await stored_shapes(api, "path-editor") == []
    await page.context.close()


async def test_an_edit_made_while_the_last_is_saved_keeps_both(
        api: Api, browser: Browser) -> None:
    """A reader resizes a shape, then moves it before the resize's save is answered (a slow
    network): the move works on the resized shape and both edits are kept, saved in order."""
    page = await open_slides(api, browser, "path-quick", {"containerIdentifier": SVS_SLIDE})
    await page.wait_for_selector(READY)
    await draw_rectangle(page)
    await page.wait_for_selector("#slide-panel[data-shapes='1']")
    [drawn] = await stored_shapes(api, "path-quick")
    xs = [p[0] for p in drawn["points"]]
    held, release = asyncio.Event(), asyncio.Event()

    async def hold_saves(route: Route) -> None:
        if route.request.method == "PUT":
            held.set()
            await release.wait()
        await route.continue_()

    await page.route("**/ngv/slides/**/layers/**", hold_saves)
    await page.click("#slide-tool-edit")
    await drag(page, "#slide-overlay .shape.rectangle", 0, 0)
    await page.wait_for_selector("#slide-overlay .shape.rectangle.selected")
    await drag(page, "#slide-overlay .handle[data-handle='1']", 40, 30)
    await asyncio.wait_for(held.wait(), 10)
    # The resize is on its way and not answered: the move starts from the resized shape.
    await drag(page, "#slide-overlay .shape.rectangle", -50, 0)
    release.set()
    [edited] = await stored_until(api, "path-quick", lambda shapes: min(
        p[0] for p in shapes[0]["points"]) < min(xs) - 20)
    await page.wait_for_selector("#slide-panel:not([data-saving])", state="attached")
    [edited] = await stored_shapes(api, "path-quick")
    edited_xs = [p[0] for p in edited["points"]]
    assert max(edited_xs) - min(edited_xs) > max(xs) - min(xs) + 20, (xs, edited_xs)
    await page.context.close()


async def drawing_off_note(page: Page) -> str:
    """The page's message on why it draws nothing, once every drawing control is off."""
    await page.wait_for_selector(READY)
    for tool in ("edit", "point", "line", "polygon", "rectangle", "ellipse"):
        assert await page.is_disabled(f"#slide-tool-{tool}"), tool
    assert await page.is_disabled("#slide-layer")
    assert await page.is_visible("#slide-draw-note")
    return await page.text_content("#slide-draw-note") or ""


async def test_drawing_is_off_with_a_message_when_layers_are_hidden(
        api: Api, browser: Browser) -> None:
    page = await open_slides(api, browser, "path-hidden",
                             {"containerIdentifier": SVS_SLIDE, "hideLayers": "true"})
    assert "hides annotation layers" in await drawing_off_note(page)
    # The server refuses it too: a layer the session cannot see would be overwritten.
    layer = url(api, f"/ngv/slides/{SVS_SLIDE}/layers/Annotations")
    for response in (await page.request.put(layer, data={"shapes": []}),
                     await page.request.delete(layer)):
        assert response.status == 403
        assert "hidden" in (await response.json())["error"]
    assert await stored_shapes(api, "path-hidden") == []
    await page.context.close()


async def test_drawing_is_off_with_a_message_when_the_role_does_not_allow_annotations(
        api: Api, browser: Browser) -> None:
    page = await open_slides(api, browser, "path-reader", {"containerIdentifier": SVS_SLIDE},
                             role=LAYER_READER)
    assert "does not allow annotations" in await drawing_off_note(page)
    layer = url(api, f"/ngv/slides/{SVS_SLIDE}/layers/Annotations")
    response = await page.request.put(layer, data={"shapes": []})
    assert response.status == 403
    assert "annotations" in (await response.json())["error"]
    assert await stored_shapes(api, "path-reader") == []
    await page.context.close()


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
    # No label: the server refuses it, and the page neither offers nor asks for it.
    assert await page.is_hidden("#slide-label-toggle")
    urls = [body.split("\n", 1)[0] for body in bodies]
    assert not [u for u in urls if "/label." in u or "/macro." in u], urls
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


async def test_the_slide_page_of_a_radiology_context_sends_the_browser_to_ohif(api: Api) -> None:
    study = "1.2.826.0.1.3680043.8.498.77001"
    headers = await api.session_headers({"username": "rad", "role": ROLE, "studyUID": study,
                                         "sticky": "rad-1"})
    response = await api.client.get("/ngv/viewer", params={"sticky": "rad-1"}, headers=headers,
                                    allow_redirects=False)
    assert response.status == 302
    location = response.headers["Location"]
    assert location.startswith("/viewer/viewer?StudyInstanceUIDs=") and study in location
    assert location.endswith("&sticky=rad-1")


async def test_the_slide_page_without_a_session_is_the_dark_refusal_page(api: Api) -> None:
    response = await api.client.get("/ngv/viewer")
    assert response.status == 401
    text = await response.text()
    assert "No viewer session" in text and "calling application" in text
