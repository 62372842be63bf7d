"""Rendered frames against pydicom's own transforms, through DICOMweb's /rendered as a viewer
session asks for them: modality LUT, VOI (window, sigmoid, VOI LUT), MONOCHROME1, RGB, YBR_FULL,
palette colour, JPEG and RLE compressed, and one frame of a multi-frame file."""

from __future__ import annotations

import copy
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut

from tests.factory import StudySpec, uid
from tests.rest_support import ROLE, Api, running_app
from tests.viewer_data import photometric_instances, write_all

SPEC = StudySpec(study_uid=uid(8201), patient_id="PID-RENDER", rows=40, columns=48)
CASES = photometric_instances(SPEC)


@pytest.fixture(scope="module")
async def session(tmp_path_factory: pytest.TempPathFactory
                  ) -> AsyncIterator[tuple[Api, dict[str, str], dict[str, Dataset]]]:
    folder = tmp_path_factory.mktemp("rendered-frames")
    async with running_app(folder) as api:
        paths = write_all(folder / "files", list(CASES.values()))
        stored = {}
        for name, path in zip(CASES, paths, strict=True):
            await api.services.ingestor.ingest_copy(path, "import")
            stored[name] = dcmread(path)
        token = await api.token({"username": "u", "role": ROLE, "studyUID": SPEC.study_uid})
        _, cookie = await api.redeem(token)
        yield api, {"Cookie": f"ngv_session={cookie}"}, stored


def frame_path(name: str, frame: int) -> str:
    ds = CASES[name]
    return (f"/dicom-web/studies/{SPEC.study_uid}/series/{ds.SeriesInstanceUID}/instances/"
            f"{ds.SOPInstanceUID}/frames/{frame}/rendered")


async def rendered(session: tuple[Api, dict[str, str], Any], name: str, frame: int = 1,
                   **query: str) -> np.ndarray:
    api, headers, _ = session
    response = await api.client.get(frame_path(name, frame), params=query,
                                    headers={**headers, "Accept": "image/png"})
    assert response.status == 200, await response.text()
    assert response.content_type == "image/png"
    return np.asarray(Image.open(io.BytesIO(await response.read())))


def own_range_window(frame: np.ndarray) -> tuple[float, float]:
    """The window of a file without one: the frame's own range, as a LINEAR window."""
    low, high = float(frame.min()), float(frame.max())
    return (low + high + 1) / 2, high - low + 1


def output_range(ds: Dataset) -> tuple[float, float]:
    """pydicom's windowing output range (apply_windowing's y_min and y_max)."""
    if ds.PixelRepresentation == 0:
        low, high = 0.0, float(2 ** ds.BitsStored - 1)
    else:
        low, high = float(-(2 ** (ds.BitsStored - 1))), float(2 ** (ds.BitsStored - 1) - 1)
    if "RescaleSlope" in ds and "RescaleIntercept" in ds:
        low = low * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        high = high * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    return low, high


def expected_grey(ds: Dataset, arr: np.ndarray) -> np.ndarray:
    values = apply_voi_lut(apply_modality_lut(arr, ds), ds, prefer_lut=True)
    if "VOILUTSequence" in ds:
        low, high = 0.0, float(2 ** ds.VOILUTSequence[0].LUTDescriptor[2] - 1)
    else:
        low, high = output_range(ds)
    grey = np.rint((values - low) / (high - low) * 255.0)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        grey = 255 - grey
    return grey


def assert_close(actual: np.ndarray, expected: np.ndarray) -> None:
    assert actual.shape == expected.shape
    difference = np.abs(actual.astype(np.int32) - expected.astype(np.int32))
    assert difference.max() <= 1, f"max difference {difference.max()}"
    assert np.unique(actual).size > 2


@pytest.mark.parametrize("name", ["MONOCHROME2", "MONOCHROME1", "signed-sigmoid", "VOI-LUT",
                                  "JPEG", "RLE"])
async def test_grey_frames_match_pydicom_modality_and_voi(session: Any, name: str) -> None:
    ds = session[2][name]
    actual = await rendered(session, name)
    assert_close(actual, expected_grey(ds, ds.pixel_array))


async def test_the_request_window_replaces_the_files(session: Any) -> None:
    ds = session[2]["MONOCHROME2"]
    actual = await rendered(session, "MONOCHROME2", window="40,400")
    windowed = copy.deepcopy(ds)
    windowed.WindowCenter, windowed.WindowWidth = 40, 400
    assert_close(actual, expected_grey(windowed, ds.pixel_array))


async def test_the_first_of_several_file_windows_applies(session: Any) -> None:
    ds = session[2]["MONOCHROME2"]
    assert len(ds.WindowCenter) > 1
    actual = await rendered(session, "MONOCHROME2")
    windowed = copy.deepcopy(ds)
    windowed.WindowCenter, windowed.WindowWidth = 300, 1500
    assert_close(actual, expected_grey(windowed, ds.pixel_array))


@pytest.mark.parametrize("name", ["RGB", "YBR_FULL"])
async def test_colour_frames_are_rgb_as_pydicom_decodes_them(session: Any, name: str) -> None:
    ds = session[2][name]
    actual = await rendered(session, name)
    assert actual.ndim == 3
    expected = ds.pixel_array  # pydicom converts YBR_FULL to RGB
    assert np.abs(actual.astype(int) - expected.astype(int)).max() <= 1


async def test_palette_colour_goes_through_its_lut(session: Any) -> None:
    ds = session[2]["PALETTE COLOR"]
    actual = await rendered(session, "PALETTE COLOR")
    expected = np.rint(apply_color_lut(ds.pixel_array, ds) / 257.0)
    assert np.abs(actual.astype(int) - expected.astype(int)).max() <= 1


async def test_one_frame_of_a_multi_frame_file(session: Any) -> None:
    ds = session[2]["multi-frame"]
    actual = await rendered(session, "multi-frame", frame=3)
    frame = ds.pixel_array[2]
    windowed = copy.deepcopy(ds)
    windowed.WindowCenter, windowed.WindowWidth = own_range_window(frame)
    assert_close(actual, expected_grey(windowed, frame))
    other = await rendered(session, "multi-frame", frame=5)
    assert not np.array_equal(actual, other)


async def test_frame_past_the_last_is_400(session: Any) -> None:
    api, headers, _ = session
    ds = CASES["multi-frame"]
    assert int(ds.NumberOfFrames) == 6
    response = await api.client.get(frame_path("multi-frame", 7),
                                    headers={**headers, "Accept": "image/png"})
    assert response.status == 400 and (await response.json())["field"] == "frame"


async def test_size_limits_the_larger_side_and_jpeg_is_available(session: Any) -> None:
    api, headers, _ = session
    response = await api.client.get(
        frame_path("MONOCHROME2", 1), params={"viewport": "24,24", "quality": "80"},
        headers={**headers, "Accept": "image/jpeg"})
    assert response.status == 200 and response.content_type == "image/jpeg"
    image = Image.open(io.BytesIO(await response.read()))
    assert max(image.size) == 24 and image.size == (24, 20)


# Files shipped with pydicom (a pinned dependency), one per compressed transfer syntax.
PYDICOM_FILES = ["MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm", "JPEG2000.dcm",
                 "MR_small_RLE.dcm", "image_dfl.dcm", "JPGExtended.dcm",
                 "SC_rgb_jpeg_dcmtk.dcm", "SC_rgb_rle_2frame.dcm"]


@pytest.mark.parametrize("name", PYDICOM_FILES)
def test_compressed_syntaxes_render_as_pydicom_decodes(
        name: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    from pydicom.data import get_testdata_file

    from node.render import FrameRenderer, RenderParams

    path = get_testdata_file(name)
    assert isinstance(path, str)
    ds = dcmread(path)
    renderer = FrameRenderer(tmp_path_factory.mktemp("render-cache"), workers=1)
    try:
        result = renderer.render_blocking(name, Path(path), RenderParams())
    finally:
        renderer.close()
    actual = np.asarray(Image.open(io.BytesIO(result.body)))
    arr = ds.pixel_array[0] if int(ds.get("NumberOfFrames") or 1) > 1 else ds.pixel_array
    if ds.SamplesPerPixel == 3:
        assert np.abs(actual.astype(int) - arr.astype(int)).max() <= 1
    else:
        if "WindowCenter" not in ds and "VOILUTSequence" not in ds:
            ds.WindowCenter, ds.WindowWidth = own_range_window(arr)
        assert_close(actual, expected_grey(ds, arr))
