"""The .cube colour profile API and what a table does to tiles."""

from __future__ import annotations

import io
import itertools
from collections.abc import AsyncIterator

import numpy as np
import pytest
from aiohttp import FormData
from PIL import Image, ImageCms

from pathology.catalogue import register_slide_file
from tests import slide_factory as factory
from tests.rest_support import API_KEY, Api, running_app

SPEC = factory.SlideSpec()
DICOM_ID = factory.SpecimenSpec().container_identifier
_ids = itertools.count(1)


@pytest.fixture(scope="module")
def slides(tmp_path_factory: pytest.TempPathFactory) -> factory.SlideSet:
    return factory.write_slide_set(tmp_path_factory.mktemp("lut-slides"), SPEC)


@pytest.fixture(scope="module")
async def api(
    tmp_path_factory: pytest.TempPathFactory, slides: factory.SlideSet
) -> AsyncIterator[Api]:
    async with running_app(tmp_path_factory.mktemp("lut-node")) as api:
        for path in slides.dicom.paths:
            await api.services.ingestor.ingest_copy(path, "import")
        yield api


@pytest.fixture
async def svs_slide(api: Api, slides: factory.SlideSet) -> str:
    """A fresh containerIdentifier for the SVS, so that every test starts without a table."""
    cid = f"SVS-LUT-{next(_ids)}"
    await register_slide_file(api.services.sessions, api.services.storage, cid, slides.svs)
    return cid


async def post_cube(api: Api, cid: str | None, body: bytes | str,
                    key: str | None = API_KEY) -> tuple[int, dict[str, str]]:
    data = body.encode() if isinstance(body, str) else body
    params = {"containerIdentifier": cid} if cid is not None else None
    headers = {"Authorization": key} if key else {}
    response = await api.client.post("/webdv/lut", params=params, data=data, headers=headers)
    return response.status, await response.json()


async def tile(api: Api, cid: str, path: str = "10/1_1.png", lut: bool = False) -> np.ndarray:
    response = await api.get(f"/webdv/slides/{cid}/dz/{path}",
                             params={"lut": "1"} if lut else None)
    body = await response.read()
    assert response.status == 200, body[:200]
    return np.asarray(Image.open(io.BytesIO(body)).convert("RGB")).astype(int)


# --- the API's status codes ---------------------------------------------------------------


async def test_upload_download_conflict_delete_cycle(api: Api, svs_slide: str) -> None:
    cube = factory.identity_cube(5)
    status, body = await post_cube(api, svs_slide, cube)
    assert status == 200, body
    assert (body["title"], body["size"]) == ("identity", 5)
    response = await api.get("/webdv/lut", params={"containerIdentifier": svs_slide})
    assert response.status == 200
    assert await response.read() == cube.encode()
    status, body = await post_cube(api, svs_slide, factory.swap_red_blue_cube(5))
    assert status == 409
    assert "already" in body["error"]
    delete = await api.client.delete("/webdv/lut", params={"containerIdentifier": svs_slide},
                                     headers={"Authorization": API_KEY})
    assert delete.status == 200
    response = await api.get("/webdv/lut", params={"containerIdentifier": svs_slide})
    assert response.status == 404
    status, _ = await post_cube(api, svs_slide, factory.swap_red_blue_cube(5))
    assert status == 200


async def test_missing_container_identifier_is_400(api: Api) -> None:
    status, body = await post_cube(api, None, factory.identity_cube(3))
    assert status == 400
    assert body["error"] == "containerIdentifier is mandatory"
    status, _ = await post_cube(api, "", factory.identity_cube(3))
    assert status == 400
    assert (await api.get("/webdv/lut")).status == 400
    delete = await api.client.delete("/webdv/lut", headers={"Authorization": API_KEY})
    assert delete.status == 400


async def test_multipart_file_upload(api: Api, svs_slide: str) -> None:
    form = FormData()
    form.add_field("file", factory.identity_cube(4).encode(), filename="lab.cube",
                   content_type="application/octet-stream")
    response = await api.client.post("/webdv/lut", params={"containerIdentifier": svs_slide},
                                     data=form, headers={"Authorization": API_KEY})
    assert response.status == 200, await response.text()
    assert (await response.json())["size"] == 4


async def test_upload_needs_the_api_key(api: Api, svs_slide: str) -> None:
    status, _ = await post_cube(api, svs_slide, factory.identity_cube(3), key=None)
    assert status == 401
    status, _ = await post_cube(api, svs_slide, factory.identity_cube(3), key="wrong")
    assert status == 401


@pytest.mark.parametrize("cube, message", [
    ("", "empty"),
    ("   \n# only a comment\n", "LUT_3D_SIZE is missing"),
    ('TITLE "x"\nLUT_3D_SIZE 2\n' + "0 0 0\n" * 7, r"line 9: LUT_3D_SIZE 2 \(line 2\) needs 8"),
    ("LUT_3D_SIZE 2\n" + "0 0 0\n" * 9, "line 10: more than 2"),
    ("LUT_3D_SIZE 2\n" + "0 0 0\n" * 3 + "0 zero 0\n" + "0 0 0\n" * 4, "line 5:.*'zero'"),
    ("LUT_3D_SIZE 2\n" + "0 0\n" + "0 0 0\n" * 7, "line 2: a data row needs three"),
    ("LUT_3D_SIZE 66\n", "line 1: LUT_3D_SIZE must be 2 to 65"),
    ("LUT_3D_SIZE 1\n", "line 1: LUT_3D_SIZE must be 2 to 65"),
    ("LUT_1D_SIZE 16\n", "line 1: 1D lookup tables"),
    ("BRIGHTNESS 3\nLUT_3D_SIZE 2\n", "line 1: unknown keyword BRIGHTNESS"),
    ("LUT_3D_SIZE 2\n" + "0 0 0\n" * 8 + "DOMAIN_MIN 0 0 0\n", "line 10: keyword DOMAIN_MIN"),
    ("DOMAIN_MIN 1 1 1\nDOMAIN_MAX 0 1 1\nLUT_3D_SIZE 2\n" + "0 0 0\n" * 8, "DOMAIN_MIN"),
    ("0 0 0\nLUT_3D_SIZE 2\n", "line 1: data row before LUT_3D_SIZE"),
    ("TITLE untitled\nLUT_3D_SIZE 2\n", "line 1: TITLE needs"),
])
async def test_malformed_cube_is_400_naming_the_line(
    api: Api, svs_slide: str, cube: str, message: str
) -> None:
    status, body = await post_cube(api, svs_slide, cube)
    assert status == 400, body
    assert body["field"] == "cube"
    import re

    assert re.search(message, body["error"]), body["error"]
    # Nothing was stored: a correct table is accepted next.
    status, _ = await post_cube(api, svs_slide, factory.identity_cube(3))
    assert status == 200


async def test_oversized_cube_is_400(api: Api, svs_slide: str) -> None:
    status, body = await post_cube(api, svs_slide, b"# padding\n" * (2 * 1024 * 1024))
    assert status == 400
    assert "larger than 16 MiB" in body["error"]


async def test_largest_table_is_accepted(api: Api, svs_slide: str) -> None:
    """65^3 rows (about 7 MB): above the app's default body limit, still a valid upload."""
    status, body = await post_cube(api, svs_slide, factory.identity_cube(65))
    assert status == 200, body


async def test_a_wrong_cube_leaves_every_slide_served(api: Api, svs_slide: str) -> None:
    status, _ = await post_cube(api, svs_slide, "LUT_3D_SIZE 3\n0 0 0\n")
    assert status == 400
    for cid in (svs_slide, DICOM_ID):
        await tile(api, cid)
        await tile(api, cid, lut=True)


# --- what a table does to tiles -----------------------------------------------------------


async def test_identity_table_leaves_tiles_unchanged(api: Api, svs_slide: str) -> None:
    before = await tile(api, svs_slide)
    status, _ = await post_cube(api, svs_slide, factory.identity_cube(17))
    assert status == 200
    assert np.array_equal(await tile(api, svs_slide, lut=True), before)


async def test_swap_table_swaps_red_and_blue(api: Api, svs_slide: str) -> None:
    raw = await tile(api, svs_slide)
    status, _ = await post_cube(api, svs_slide, factory.swap_red_blue_cube(9))
    assert status == 200
    swapped = await tile(api, svs_slide, lut=True)
    assert np.abs(swapped - raw[..., ::-1]).max() <= 1
    # Without lut=1 the scanner's pixels are still served.
    assert np.array_equal(await tile(api, svs_slide), raw)


async def test_domain_is_honoured(api: Api, svs_slide: str) -> None:
    """DOMAIN_MAX 2: the table's grid spans 0..2, so an identity-shaped grid halves values."""
    raw = await tile(api, svs_slide)
    cube = factory.cube_text(9, lambda r, g, b: (r, g, b),
                             domain=((0.0, 0.0, 0.0), (2.0, 2.0, 2.0)))
    status, _ = await post_cube(api, svs_slide, cube)
    assert status == 200
    halved = await tile(api, svs_slide, lut=True)
    assert np.abs(halved - raw / 2).max() <= 1.5


async def test_dicom_passthrough_stops_while_a_table_applies(api: Api) -> None:
    path = f"/webdv/slides/{DICOM_ID}/dz/10/1_1.jpeg"
    plain = await api.get(path)
    plain_body = await plain.read()
    status, _ = await post_cube(api, DICOM_ID, factory.swap_red_blue_cube(9))
    assert status == 200
    try:
        managed = await api.get(path, params={"lut": "1"})
        managed_body = await managed.read()
        assert managed.headers["ETag"] != plain.headers["ETag"]
        assert managed.headers["Cache-Control"] == "private, no-cache"
        assert managed_body != plain_body
        raw = np.asarray(Image.open(io.BytesIO(plain_body)).convert("RGB")).astype(int)
        swapped = np.asarray(Image.open(io.BytesIO(managed_body)).convert("RGB")).astype(int)
        assert np.abs(swapped - raw[..., ::-1]).mean() < 3
        # The descriptor's slide says a colour chain applies now.
        info = await (await api.get(f"/webdv/slides/{DICOM_ID}")).json()
        assert info["colourManaged"] is True
    finally:
        delete = await api.client.delete("/webdv/lut", params={"containerIdentifier": DICOM_ID},
                                         headers={"Authorization": API_KEY})
        assert delete.status == 200
    # Deleted: lut=1 is the stored JPEG again, byte for byte.
    again = await api.get(path, params={"lut": "1"})
    assert await again.read() == plain_body


async def test_a_table_for_a_slide_that_does_not_exist_is_404_and_not_kept(api: Api) -> None:
    status, body = await post_cube(api, "NO-SUCH", factory.identity_cube(3))
    assert status == 404
    assert "NO-SUCH" in body["error"]
    response = await api.get("/webdv/lut", params={"containerIdentifier": "NO-SUCH"})
    assert response.status == 404


# --- the scanner's ICC profile ------------------------------------------------------------


@pytest.fixture(scope="module")
async def linear_slides(
    api: Api, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, str]:
    """An SVS and a DICOM series whose ICC profile is linear-light sRGB: converting to sRGB
    brightens every mid tone, so a skipped or doubled transform shows."""
    folder = tmp_path_factory.mktemp("linear-icc")
    spec = factory.SlideSpec(icc="linear")
    svs = factory.write_svs(folder / "linear.svs", spec)
    await register_slide_file(api.services.sessions, api.services.storage, "LINEAR-SVS", svs)
    dicom = factory.write_dicom_wsi(
        folder / "dicom", spec, factory.SpecimenSpec(container_identifier="LINEAR-DCM"))
    for path in dicom.paths:
        await api.services.ingestor.ingest_copy(path, "import")
    return "LINEAR-SVS", "LINEAR-DCM"


def to_srgb(pixels: np.ndarray) -> np.ndarray:
    profile = ImageCms.ImageCmsProfile(io.BytesIO(factory.linear_rgb_profile()))
    transform = ImageCms.buildTransform(profile, ImageCms.createProfile("sRGB"), "RGB", "RGB")
    image = ImageCms.applyTransform(Image.fromarray(pixels.astype(np.uint8)), transform)
    assert image is not None
    return np.asarray(image).astype(int)


async def test_icc_profile_is_converted_to_srgb_with_lut(
    api: Api, linear_slides: tuple[str, str]
) -> None:
    for cid in linear_slides:
        raw = await tile(api, cid)
        managed = await tile(api, cid, lut=True)
        expected = to_srgb(raw)
        # A 33-point grid interpolates the curve: close everywhere, not bit-exact.
        assert np.abs(managed - expected).mean() < 1.0, cid
        assert np.abs(managed - expected).max() <= 6, cid
        assert np.abs(managed - raw).mean() > 20, cid
        info = await (await api.get(f"/webdv/slides/{cid}")).json()
        assert info["iccProfile"] is True and info["colourManaged"] is True


async def test_icc_and_cube_are_applied_in_order(
    api: Api, linear_slides: tuple[str, str]
) -> None:
    cid = linear_slides[0]
    raw = await tile(api, cid)
    status, _ = await post_cube(api, cid, factory.swap_red_blue_cube(17))
    assert status == 200
    try:
        managed = await tile(api, cid, lut=True)
        expected = to_srgb(raw)[..., ::-1]
        assert np.abs(managed - expected).mean() < 1.0
    finally:
        await api.client.delete("/webdv/lut", params={"containerIdentifier": cid},
                                headers={"Authorization": API_KEY})
