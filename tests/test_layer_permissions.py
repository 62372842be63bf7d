"""Annotation layers follow the session's role: `layers` to see them, `annotations` to save or
delete one (both for a change: a save replaces the shapes of a layer the session must see), and
`annotations` to store a Microscopy Bulk Simple Annotations instance by STOW-RS, which the node
reads into layers. A refusal is 403 naming the missing permission, and nothing changes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from io import BytesIO
from typing import Any

import highdicom as hd
import pydicom
import pytest

from node.index.instance_queries import study_of_instance
from node.viewing.roles import add_role
from pathology.annotation_store import list_layers, save_layer
from pathology.annotations import ANN_SOP_CLASS, Layer, Shape, build_instance
from pathology.catalogue import register_slide_file
from rest.dicomweb.stow_response import NOT_AUTHORIZED
from tests import slide_factory as factory
from tests.rest_support import Api, running_app

CASE = "C231606-1426"
DICOM_SLIDE = factory.SpecimenSpec().container_identifier
SVS_SLIDE = "C231606-1426-B-1-1"
OWNER = "path-owner"
BOUNDARY = "layer-permission-boundary"
SHAPES = {"shapes": [{"type": "line", "points": [[10, 10], [60, 40]]}]}
# Role name -> its permissions.
ROLES = {
    "slide-annotator": ["layers", "annotations"],
    "slide-reader": ["layers"],
    "slide-drafter": ["annotations"],
    "slide-saver": ["save"],
    "slide-annotating-saver": ["save", "annotations"],
}


@pytest.fixture(scope="module")
def dicom(tmp_path_factory: pytest.TempPathFactory) -> factory.DicomSlideFiles:
    return factory.write_dicom_wsi(tmp_path_factory.mktemp("layer-permissions-wsi"))


@pytest.fixture(scope="module")
async def api(tmp_path_factory: pytest.TempPathFactory,
              dicom: factory.DicomSlideFiles) -> AsyncIterator[Api]:
    folder = tmp_path_factory.mktemp("layer-permissions")
    svs = factory.write_svs(folder / "slide.svs")
    async with running_app(folder / "node") as api:
        for path in dicom.paths:
            await api.services.ingestor.ingest_copy(path, "import")
        await register_slide_file(api.services.sessions, api.services.storage, SVS_SLIDE, svs,
                                  accession_number=CASE)
        for name, permissions in ROLES.items():
            await add_role(api.services.sessions, name, permissions)
        yield api


async def session(api: Api, role: str, **params: str) -> dict[str, str]:
    return await api.session_headers({"username": OWNER, "role": role, "accNum": CASE,
                                      **params})


async def stored(api: Api, slide: str = SVS_SLIDE) -> list[dict[str, Any]]:
    """The slide's layers as the database holds them."""
    return [layer.to_json() for layer in await list_layers(api.services.sessions, slide)]


async def with_layer(api: Api, name: str) -> None:
    shape = Shape("point", ((5.0, 5.0),))
    await save_layer(api.services.sessions, Layer(SVS_SLIDE, OWNER, name, (shape,)))


async def change(api: Api, method: str, headers: dict[str, str], name: str) -> tuple[int, str]:
    response = await api.client.request(
        method, f"/ngv/slides/{SVS_SLIDE}/layers/{name}", headers=headers,
        json=SHAPES if method == "PUT" else None)
    body = await response.json()
    return response.status, str(body.get("error", ""))


@pytest.mark.parametrize(("role", "missing"), [("slide-reader", "annotations"),
                                               ("slide-drafter", "layers")])
@pytest.mark.parametrize("method", ["PUT", "DELETE"])
async def test_a_role_without_the_permission_can_neither_save_nor_delete_a_layer(
        api: Api, role: str, missing: str, method: str) -> None:
    name = f"Kept-{role}-{method}"
    await with_layer(api, name)
    before = await stored(api)
    status, error = await change(api, method, await session(api, role), name)
    assert status == 403
    assert f"does not allow {missing}" in error
    assert await stored(api) == before


async def test_a_new_layer_is_not_created_without_annotations(api: Api) -> None:
    before = await stored(api)
    status, error = await change(api, "PUT", await session(api, "slide-reader"), "Never")
    assert status == 403 and "annotations" in error
    assert await stored(api) == before


async def test_a_role_with_layers_and_annotations_saves_and_deletes_its_layer(api: Api) -> None:
    headers = await session(api, "slide-annotator")
    assert await change(api, "PUT", headers, "Drawn") == (200, "")
    [drawn] = [layer for layer in await stored(api) if layer["name"] == "Drawn"]
    assert drawn["owner"] == OWNER and drawn["shapes"] == SHAPES["shapes"]
    assert await change(api, "DELETE", headers, "Drawn") == (200, "")
    assert "Drawn" not in [layer["name"] for layer in await stored(api)]


async def test_hidden_layers_still_refuse_a_role_that_allows_both(api: Api) -> None:
    await with_layer(api, "Hidden")
    before = await stored(api)
    status, error = await change(api, "PUT", await session(api, "slide-annotator",
                                                           hideLayers="true"), "Hidden")
    assert status == 403 and "hidden" in error
    assert await stored(api) == before


async def layers_seen(api: Api, headers: dict[str, str]) -> dict[str, Any]:
    response = await api.client.get(f"/ngv/slides/{SVS_SLIDE}/layers", headers=headers)
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def test_a_role_without_layers_sees_none(api: Api) -> None:
    await with_layer(api, "Seen")
    reader = await layers_seen(api, await session(api, "slide-reader"))
    assert "Seen" in [layer["name"] for layer in reader["layers"]]
    blind = await layers_seen(api, await session(api, "slide-drafter"))
    assert blind["layers"] == [] and blind["hideLayers"] is True


@pytest.mark.parametrize(("role", "features"), [
    ("slide-annotator", {"layers": True, "annotations": True}),
    ("slide-reader", {"layers": True, "annotations": False}),
    ("slide-drafter", {"layers": False, "annotations": True}),
])
async def test_the_tray_tells_the_page_what_the_role_allows(
        api: Api, role: str, features: dict[str, bool]) -> None:
    response = await api.client.get("/ngv/slides", headers=await session(api, role))
    assert response.status == 200
    assert (await response.json())["features"] == features


# --- STOW-RS of annotation instances ----------------------------------------------------------


def annotation_instance(dicom: factory.DicomSlideFiles, author: str = OWNER) -> pydicom.Dataset:
    """A Microscopy Bulk Simple Annotations instance on the DICOM slide's level-0 image, its
    layers `author`'s."""
    headers = [pydicom.dcmread(path, stop_before_pixels=True) for path in dicom.paths]
    volumes = [ds for ds in headers if list(ds.ImageType)[2] == "VOLUME"]
    level_zero = max(volumes, key=lambda ds: int(ds.TotalPixelMatrixColumns))
    layer = Layer(DICOM_SLIDE, author, "Stowed", (Shape("point", ((20.0, 30.0),)),))
    return build_instance(level_zero, author, [layer], hd.UID(), 1)


async def stow(api: Api, headers: dict[str, str], dataset: pydicom.Dataset) -> dict[str, Any]:
    with BytesIO() as buffer:
        dataset.save_as(buffer, enforce_file_format=True)
        data = buffer.getvalue()
    body = (f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode() + data
            + f"\r\n--{BOUNDARY}--\r\n".encode())
    response = await api.client.post("/dicom-web/studies", data=body, headers={
        **headers, "Accept": "application/dicom+json",
        "Content-Type": f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'})
    answer: dict[str, Any] = await response.json()
    return answer


async def test_storing_an_annotation_instance_needs_annotations(
        api: Api, dicom: factory.DicomSlideFiles) -> None:
    dataset = annotation_instance(dicom)
    assert dataset.SOPClassUID == ANN_SOP_CLASS
    answer = await stow(api, await session(api, "slide-saver"), dataset)
    [failed] = answer["00081198"]["Value"]
    assert failed["00081197"]["Value"] == [NOT_AUTHORIZED]
    assert await study_of_instance(api.services.sessions, dataset.SOPInstanceUID) is None
    assert await stored(api, DICOM_SLIDE) == []


async def test_a_role_with_save_and_annotations_stores_an_annotation_instance(
        api: Api, dicom: factory.DicomSlideFiles) -> None:
    dataset = annotation_instance(dicom)
    answer = await stow(api, await session(api, "slide-annotating-saver"), dataset)
    assert "00081198" not in answer, answer
    assert await study_of_instance(api.services.sessions,
                                   dataset.SOPInstanceUID) == dataset.StudyInstanceUID


async def test_a_session_stores_only_its_own_users_annotation_instance(
        api: Api, dicom: factory.DicomSlideFiles) -> None:
    """The instance's content creator owns the layers it becomes: a session naming another user
    put layers under a name that never drew them."""
    dataset = annotation_instance(dicom, author="another-reader")
    answer = await stow(api, await session(api, "slide-annotating-saver"), dataset)
    [failed] = answer["00081198"]["Value"]
    assert failed["00081197"]["Value"] == [NOT_AUTHORIZED]
    assert await study_of_instance(api.services.sessions, dataset.SOPInstanceUID) is None
    assert await stored(api, DICOM_SLIDE) == []
