"""Slides over HTTP: DeepZoom descriptor and tiles for every format, passthrough of stored JPEG,
ETag and 304, thumbnails and labels, metadata by containerIdentifier, and bad slides failing
alone."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import openslide
import pytest
from PIL import Image
from wsidicom import WsiDicom

from pathology.catalogue import register_slide_file
from rest.slide_routes import SLIDES
from tests import slide_factory as factory
from tests.rest_support import Api, running_app

SPEC = factory.SlideSpec()
DICOM_ID = factory.SpecimenSpec().container_identifier
FILE_IDS = {"svs": "SVS-0001", "tiff": "TIFF-0001", "ndpi": "NDPI-0001", "mrxs": "MRXS-0001"}


@pytest.fixture(scope="module")
def slides(tmp_path_factory: pytest.TempPathFactory) -> factory.SlideSet:
    return factory.write_slide_set(tmp_path_factory.mktemp("tile-slides"), SPEC)


@pytest.fixture(scope="module")
async def api(
    tmp_path_factory: pytest.TempPathFactory, slides: factory.SlideSet
) -> AsyncIterator[Api]:
    async with running_app(tmp_path_factory.mktemp("tiles-node")) as api:
        services = api.services
        for path in slides.dicom.paths:
            await services.ingestor.ingest_copy(path, "import")
        for kind, cid in FILE_IDS.items():
            await register_slide_file(
                services.sessions, services.storage, cid, getattr(slides, kind),
                accession_number="CASE-7",
                metadata={"containerIdentifier": cid, "slideStainCode": "H&E",
                          "specimenIdentifier": f"SP-{kind}"})
        yield api


async def _image(api: Api, path: str, **params: str) -> tuple[np.ndarray, bytes]:
    response = await api.get(path, params=params or None)
    body = await response.read()
    assert response.status == 200, body[:300]
    return np.asarray(Image.open(io.BytesIO(body)).convert("RGB")), body


async def test_descriptor_names_native_tile_size_and_full_size(api: Api) -> None:
    response = await api.get(f"/webdv/slides/{DICOM_ID}/dz.dzi")
    assert response.status == 200
    image = ElementTree.fromstring(await response.text())
    assert image.get("TileSize") == "256" and image.get("Overlap") == "0"
    size = image.find("{http://schemas.microsoft.com/deepzoom/2008}Size")
    assert size is not None
    assert (size.get("Width"), size.get("Height")) == ("1000", "750")


async def test_ndpi_descriptor_uses_a_browser_tile_size(api: Api) -> None:
    response = await api.get(f"/webdv/slides/{FILE_IDS['ndpi']}/dz.dzi")
    image = ElementTree.fromstring(await response.text())
    assert image.get("TileSize") == "256"


async def test_describe_reports_levels_mpp_and_associated_images(api: Api) -> None:
    response = await api.get(f"/webdv/slides/{FILE_IDS['svs']}")
    info = await response.json()
    assert response.status == 200
    assert (info["format"], info["width"], info["height"]) == ("aperio", 1000, 750)
    assert info["mppX"] == pytest.approx(0.25)
    assert [lv["width"] for lv in info["levels"]] == [1000, 250]
    assert info["associatedImages"] == ["label", "macro", "thumbnail"]
    assert info["deepZoom"]["tileSize"] == 256 and info["deepZoom"]["levels"] == 11


async def test_dicom_tile_is_the_stored_jpeg_passed_through(
    api: Api, slides: factory.SlideSet
) -> None:
    reference = WsiDicom.open(slides.dicom.paths)
    # DeepZoom level 10 is full resolution (1000 px -> 2^10), level 8 the 4x level.
    _, body = await _image(api, f"/webdv/slides/{DICOM_ID}/dz/10/1_2.jpeg")
    assert body == reference.read_encoded_tile(0, (1, 2))
    _, body = await _image(api, f"/webdv/slides/{DICOM_ID}/dz/8/0_0.jpeg")
    assert body == reference.read_encoded_tile(2, (0, 0))


@pytest.mark.parametrize("kind", ["svs", "tiff", "mrxs"])
async def test_openslide_tile_pixels_equal_openslide_region(
    api: Api, slides: factory.SlideSet, kind: str
) -> None:
    reference = openslide.OpenSlide(str(getattr(slides, kind)))
    for dz_level, native, col, row in [(10, 0, 1, 2), (10, 0, 3, 2), (8, 1, 0, 0)]:
        tile, _ = await _image(api, f"/webdv/slides/{FILE_IDS[kind]}/dz/{dz_level}/"
                               f"{col}_{row}.png")
        downsample = reference.level_downsamples[native]
        width = min(256, reference.level_dimensions[native][0] - col * 256)
        height = min(256, reference.level_dimensions[native][1] - row * 256)
        region = reference.read_region(
            (int(col * 256 * downsample), int(row * 256 * downsample)), native, (width, height))
        assert tile.shape == (height, width, 3)
        assert np.array_equal(tile, np.asarray(region.convert("RGB")))


async def test_jpeg_and_png_tiles_show_the_same_picture(api: Api) -> None:
    jpeg, _ = await _image(api, f"/webdv/slides/{FILE_IDS['svs']}/dz/10/2_1.jpeg")
    png, _ = await _image(api, f"/webdv/slides/{FILE_IDS['svs']}/dz/10/2_1.png")
    assert np.abs(jpeg.astype(int) - png.astype(int)).mean() < 3


async def test_coarse_levels_are_scaled_from_the_pyramid(api: Api) -> None:
    for cid in (DICOM_ID, *FILE_IDS.values()):
        pixels = factory.base_pixels(SPEC)
        if cid == FILE_IDS["ndpi"]:
            pixels = factory.pad_to_mcus(pixels)
        if cid == FILE_IDS["mrxs"]:
            pixels = factory.pad_to_tiles(pixels)
        height, width = -(-pixels.shape[0] // 8), -(-pixels.shape[1] // 8)
        expected = np.asarray(Image.fromarray(pixels).resize(
            (width, height), Image.Resampling.BOX)).astype(int)
        # DeepZoom level 7 is 1/8 scale: one tile holds the whole slide. DICOM's stored JPEG
        # tiles are decoded at half scale by libjpeg (DCT scaling), which softens the sharp
        # checkerboard edges a little differently from a box filter.
        tile, _ = await _image(api, f"/webdv/slides/{cid}/dz/7/0_0.png")
        assert tile.shape == (height, width, 3), cid
        assert np.abs(tile.astype(int) - expected).mean() < 8, cid


async def test_half_scale_tiles_are_made_from_four_stored_tiles(api: Api) -> None:
    """DeepZoom level 9 is half of level 0: tile 1_1 is stored tiles (2..3, 2..3), the edge
    ones cropped, each decoded at half scale."""
    tile, _ = await _image(api, f"/webdv/slides/{DICOM_ID}/dz/9/1_1.png")
    assert tile.shape == (119, 244, 3)
    region = Image.fromarray(factory.base_pixels(SPEC)[512:750, 512:1000])
    expected = np.asarray(region.resize((244, 119), Image.Resampling.BOX)).astype(int)
    assert np.abs(tile.astype(int) - expected).mean() < 6


async def test_etag_answers_304_and_cache_control_is_set(api: Api) -> None:
    path = f"/webdv/slides/{FILE_IDS['tiff']}/dz/10/0_0.jpeg"
    first = await api.get(path)
    etag = first.headers["ETag"]
    assert first.headers["Cache-Control"].startswith("private")
    again = await api.get(path, headers={"If-None-Match": etag})
    assert again.status == 304
    assert (await again.read()) == b""
    other = await api.get(f"/webdv/slides/{FILE_IDS['tiff']}/dz/10/1_0.jpeg")
    assert other.headers["ETag"] != etag


async def test_repeated_tiles_come_from_the_cache(api: Api) -> None:
    service = api.client.app[SLIDES]
    path = f"/webdv/slides/{FILE_IDS['svs']}/dz/9/1_1.jpeg"
    _, first = await _image(api, path)
    hits = service.cache.hits
    _, second = await _image(api, path)
    assert second == first
    assert service.cache.hits == hits + 1


async def test_tiles_outside_the_pyramid_are_404(api: Api) -> None:
    for path in ("dz/11/0_0.jpeg", "dz/10/4_0.jpeg", "dz/10/0_3.jpeg"):
        response = await api.get(f"/webdv/slides/{DICOM_ID}/{path}")
        assert response.status == 404, path


async def test_unknown_slide_is_404(api: Api) -> None:
    response = await api.get("/webdv/slides/NO-SUCH-SLIDE/dz/0/0_0.jpeg")
    assert response.status == 404
    assert "NO-SUCH-SLIDE" in (await response.json())["error"]


async def test_tiles_need_the_api_key(api: Api) -> None:
    response = await api.get(f"/webdv/slides/{DICOM_ID}/dz/10/0_0.jpeg", key=None)
    assert response.status == 401


async def test_thumbnail_fits_the_requested_size(api: Api) -> None:
    for cid in (DICOM_ID, FILE_IDS["ndpi"]):
        thumb, _ = await _image(api, f"/webdv/slides/{cid}/thumbnail.jpeg", size="300")
        assert max(thumb.shape[:2]) == 300
    response = await api.get(f"/webdv/slides/{DICOM_ID}/thumbnail.jpeg", params={"size": "0"})
    assert response.status == 400


async def test_label_and_macro_images(api: Api) -> None:
    for cid in (DICOM_ID, FILE_IDS["svs"]):
        label, _ = await _image(api, f"/webdv/slides/{cid}/label.png")
        assert label.shape == (100, 120, 3)
        assert np.abs(label.astype(int) - SPEC.label_colour).mean() < 3
        macro, _ = await _image(api, f"/webdv/slides/{cid}/macro.png")
        assert macro.shape == (100, 300, 3)
    response = await api.get(f"/webdv/slides/{FILE_IDS['tiff']}/label.jpeg")
    assert response.status == 404


async def test_dicom_metadata_is_queryable_by_container_identifier(api: Api) -> None:
    response = await api.get("/webdv/slides", params={"containerIdentifier": DICOM_ID})
    assert response.status == 200
    [slide] = (await response.json())["slides"]
    specimen = factory.SpecimenSpec()
    assert slide["containerIdentifier"] == DICOM_ID
    assert slide["specimenIdentifier"] == specimen.specimen_identifier
    assert slide["blockIdentifier"] == specimen.block_identifier
    assert slide["slideIdentifier"] == specimen.slide_identifier
    assert slide["specimenBodySite"] == "Left breast"
    assert slide["slideStainCode"] == "H&E"


async def test_file_slide_metadata_comes_from_its_json(api: Api) -> None:
    response = await api.get(f"/webdv/slides/{FILE_IDS['ndpi']}/metadata")
    data = await response.json()
    assert data["specimenIdentifier"] == "SP-ndpi" and data["slideStainCode"] == "H&E"


async def test_slides_of_a_case(api: Api) -> None:
    response = await api.get("/webdv/slides", params={"accNum": "CASE-7"})
    ids = [s["containerIdentifier"] for s in (await response.json())["slides"]]
    assert ids == sorted(FILE_IDS.values())
    response = await api.get("/webdv/slides", params={"accNum": "C231606-1426"})
    assert [s["containerIdentifier"] for s in (await response.json())["slides"]] == [DICOM_ID]


async def test_query_without_identifier_is_400(api: Api) -> None:
    response = await api.get("/webdv/slides")
    assert response.status == 400


async def test_a_bad_slide_fails_alone(api: Api, slides: factory.SlideSet, tmp_path: Path) -> None:
    """A slide whose file went bad after registration: its tiles are a clear 400 naming the
    file, and every other slide is still served."""
    broken = tmp_path / "broken.svs"
    broken.write_bytes(slides.svs.read_bytes())
    services = api.services
    await register_slide_file(services.sessions, services.storage, "BROKEN-1", broken)
    data = bytearray(broken.read_bytes())
    import tifffile

    with tifffile.TiffFile(broken) as tif:
        offsets = tif.pages[0].dataoffsets
        counts = tif.pages[0].databytecounts
    for offset, count in zip(offsets, counts, strict=True):
        data[offset : offset + count] = b"\x00" * count
    broken.write_bytes(bytes(data))
    api.client.app[SLIDES].recheck_seconds = 0
    try:
        response = await api.get("/webdv/slides/BROKEN-1/dz/10/0_0.jpeg")
        assert response.status == 400
        assert "broken.svs" in (await response.json())["error"]
        # Asked again, the same clear answer (the slide is reopened, not left half-dead).
        response = await api.get("/webdv/slides/BROKEN-1/dz/10/1_0.jpeg")
        assert response.status == 400
    finally:
        api.client.app[SLIDES].recheck_seconds = 5.0
    for cid in (DICOM_ID, *FILE_IDS.values()):
        await _image(api, f"/webdv/slides/{cid}/dz/9/0_0.jpeg")


async def test_registering_a_file_that_is_not_a_slide_is_refused(
    api: Api, tmp_path: Path
) -> None:
    from node.errors import InvalidInput

    fake = tmp_path / "fake.ndpi"
    fake.write_bytes(b"not a slide at all" * 50)
    with pytest.raises(InvalidInput, match=r"fake\.ndpi"):
        await register_slide_file(api.services.sessions, api.services.storage, "FAKE-1", fake)
    response = await api.get("/webdv/slides/FAKE-1")
    assert response.status == 404


async def test_reads_per_slide_are_bounded_and_identical_requests_render_once(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio
    import threading
    import time

    from pathology import slide_service

    lock = threading.Lock()
    running = 0
    peak = 0
    renders = 0
    original = slide_service.render_tile

    def counting_render(*args: object) -> bytes:
        nonlocal running, peak, renders
        with lock:
            running += 1
            renders += 1
            peak = max(peak, running)
        try:
            time.sleep(0.02)
            return original(*args)  # type: ignore[arg-type]
        finally:
            with lock:
                running -= 1

    monkeypatch.setattr(slide_service, "render_tile", counting_render)
    service = api.client.app[SLIDES]
    cid = FILE_IDS["tiff"]
    paths = [f"/webdv/slides/{cid}/dz/9/{col}_{row}.png?q={n}"
             for n in range(3) for col in range(2) for row in range(2)]
    distinct = [f"/webdv/slides/{cid}/dz/10/{col}_{row}.png" for col in range(4)
                for row in range(3)]
    responses = await asyncio.gather(*(api.get(p) for p in distinct + paths))
    assert all(r.status == 200 for r in responses)
    assert 2 <= peak <= service.reads_per_slide
    # 12 distinct full-resolution tiles and 4 distinct level-9 tiles asked three times each.
    assert renders <= 12 + 4


async def test_json_metadata_wins_over_dicom_field_by_field(api: Api) -> None:
    from pathology.catalogue import record_slide_metadata

    sessions = api.services.sessions
    await record_slide_metadata(sessions, DICOM_ID, {"slideStainCode": "PAS",
                                                     "blockAlias": "A-1"})
    try:
        data = await (await api.get(f"/webdv/slides/{DICOM_ID}/metadata")).json()
        assert (data["slideStainCode"], data["blockAlias"]) == ("PAS", "A-1")
        # What the JSON does not say still comes from the DICOM series.
        assert data["specimenIdentifier"] == factory.SpecimenSpec().specimen_identifier
    finally:
        await record_slide_metadata(sessions, DICOM_ID, {})
    data = await (await api.get(f"/webdv/slides/{DICOM_ID}/metadata")).json()
    assert data["slideStainCode"] == "H&E"
