"""Annotation layers: saved per user and slide, shown by annotationVisibility and hideLayers,
exported as DICOM Microscopy Bulk Simple Annotations (checked with highdicom and dciodvfy)
and read back from such instances."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import AsyncIterator
from typing import Any

import pydicom
import pytest
from highdicom.ann import MicroscopyBulkSimpleAnnotations

from pathology.annotations import ANN_SOP_CLASS
from pathology.catalogue import register_slide_file
from tests import slide_factory as factory
from tests.rest_support import API_KEY, Api, running_app

DICOM_ID = factory.SpecimenSpec().container_identifier
TUMOUR = [
    {"type": "polygon", "points": [[100, 100], [400, 120], [380, 300], [90, 280]]},
    {"type": "point", "points": [[500.5, 250.25]]},
    {"type": "line", "points": [[10, 10], [200, 40], [300, 90]]},
]
MARGINS = [
    {"type": "rectangle", "points": [[600, 100], [900, 400]]},
    {"type": "ellipse", "points": [[50, 500], [250, 700]]},
]


@pytest.fixture(scope="module")
def slides(tmp_path_factory: pytest.TempPathFactory) -> factory.SlideSet:
    return factory.write_slide_set(tmp_path_factory.mktemp("ann-slides"))


@pytest.fixture(scope="module")
async def api(
    tmp_path_factory: pytest.TempPathFactory, slides: factory.SlideSet
) -> AsyncIterator[Api]:
    async with running_app(tmp_path_factory.mktemp("ann-node")) as api:
        for path in slides.dicom.paths:
            await api.services.ingestor.ingest_copy(path, "import")
        await register_slide_file(api.services.sessions, api.services.storage, "ANN-SVS",
                                  slides.svs)
        yield api


async def put(api: Api, cid: str, user: str, name: str, shapes: list[dict[str, Any]]) -> int:
    response = await api.client.put(f"/webdv/slides/{cid}/layers/{name}",
                                    params={"username": user}, json={"shapes": shapes},
                                    headers={"Authorization": API_KEY})
    return response.status


async def layers(api: Api, cid: str, user: str, **options: str) -> list[dict[str, Any]]:
    response = await api.get(f"/webdv/slides/{cid}/layers", params={"username": user, **options})
    body = await response.json()
    assert response.status == 200, body
    result: list[dict[str, Any]] = body["layers"]
    return result


async def test_layers_are_kept_per_user_and_visibility_decides_who_sees_them(api: Api) -> None:
    assert await put(api, "ANN-SVS", "alice", "tumour", TUMOUR) == 200
    assert await put(api, "ANN-SVS", "bob", "margins", MARGINS) == 200
    everyone = await layers(api, "ANN-SVS", "bob", annotationVisibility="ALL")
    assert {(layer["owner"], layer["name"]) for layer in everyone} == {
        ("alice", "tumour"), ("bob", "margins")}
    own = await layers(api, "ANN-SVS", "bob", annotationVisibility="USER")
    assert [(layer["owner"], layer["name"]) for layer in own] == [("bob", "margins")]
    # The default is ALL, as the spec says.
    assert len(await layers(api, "ANN-SVS", "bob")) == 2
    assert await layers(api, "ANN-SVS", "alice", hideLayers="true") == []


async def test_shapes_come_back_as_drawn(api: Api) -> None:
    assert await put(api, "ANN-SVS", "carol", "all kinds", TUMOUR + MARGINS) == 200
    [layer] = await layers(api, "ANN-SVS", "carol", annotationVisibility="USER")
    kinds = [shape["type"] for shape in layer["shapes"]]
    assert kinds == ["polygon", "point", "line", "rectangle", "ellipse"]
    assert layer["shapes"][1]["points"] == [[500.5, 250.25]]
    # Two box corners become DICOM's four corners / two axes.
    assert layer["shapes"][3]["points"] == [[600, 100], [900, 100], [900, 400], [600, 400]]
    assert layer["shapes"][4]["points"] == [[50, 600], [250, 600], [150, 500], [150, 700]]


async def test_saving_again_replaces_and_delete_removes(api: Api) -> None:
    assert await put(api, "ANN-SVS", "dave", "draft", TUMOUR) == 200
    assert await put(api, "ANN-SVS", "dave", "draft", MARGINS[:1]) == 200
    [layer] = await layers(api, "ANN-SVS", "dave", annotationVisibility="USER")
    assert [s["type"] for s in layer["shapes"]] == ["rectangle"]
    delete = await api.client.delete("/webdv/slides/ANN-SVS/layers/draft",
                                     params={"username": "dave"},
                                     headers={"Authorization": API_KEY})
    assert delete.status == 200
    assert await layers(api, "ANN-SVS", "dave", annotationVisibility="USER") == []
    # Only the owner's layer of that name: someone else's is not theirs to delete.
    other = await api.client.delete("/webdv/slides/ANN-SVS/layers/tumour",
                                    params={"username": "dave"},
                                    headers={"Authorization": API_KEY})
    assert other.status == 404


@pytest.mark.parametrize("shapes, field", [
    ([{"type": "circle", "points": [[1, 1]]}], "shapes[0].type"),
    ([{"type": "polygon", "points": [[1, 1], [2, 2]]}], "shapes[0].points"),
    ([{"type": "point", "points": [[5000, 1]]}], "shapes[0].points"),
    ([{"type": "point", "points": [[-1, 1]]}], "shapes[0].points"),
    ([{"type": "line", "points": [[1, 1], ["a", 2]]}], "shapes[0].points"),
    ([{"type": "rectangle", "points": [[1, 1], [1, 5]]}], "shapes[0].points"),
    ("not a list", "shapes"),
])
async def test_bad_shapes_are_400_naming_the_field(
    api: Api, shapes: Any, field: str
) -> None:
    response = await api.client.put("/webdv/slides/ANN-SVS/layers/bad",
                                    params={"username": "erin"}, json={"shapes": shapes},
                                    headers={"Authorization": API_KEY})
    assert response.status == 400
    assert (await response.json())["field"] == field


async def test_username_is_mandatory_and_slide_must_exist(api: Api) -> None:
    response = await api.get("/webdv/slides/ANN-SVS/layers")
    assert response.status == 400
    assert await put(api, "NO-SUCH-SLIDE", "alice", "x", TUMOUR) == 404
    response = await api.get("/webdv/slides/ANN-SVS/layers",
                             params={"username": "a", "annotationVisibility": "SOME"})
    assert response.status == 400


async def test_layers_export_as_bulk_annotations_and_come_back(api: Api) -> None:
    assert await put(api, DICOM_ID, "alice", "tumour", TUMOUR) == 200
    assert await put(api, DICOM_ID, "bob", "margins", MARGINS) == 200
    response = await api.client.post(f"/webdv/slides/{DICOM_ID}/layers/export",
                                     headers={"Authorization": API_KEY})
    body = await response.json()
    assert response.status == 200, body
    assert len(body["sopInstanceUIDs"]) == 2
    from sqlalchemy import select

    from node.index.dicom_models import Instance

    async with api.services.sessions() as session:
        rows = (await session.execute(select(Instance).where(
            Instance.sop_uid.in_(body["sopInstanceUIDs"])))).scalars().all()
    assert {row.sop_class_uid for row in rows} == {ANN_SOP_CLASS}
    assert {row.container_identifier for row in rows} == {DICOM_ID}
    paths = [api.services.storage.local_path(row.path) for row in rows]
    creators = set()
    for path in paths:
        dataset = pydicom.dcmread(path)
        creators.add(str(dataset.ContentCreatorName).rstrip("^"))
        annotations = MicroscopyBulkSimpleAnnotations.from_dataset(dataset)
        labels = {group.label for group in annotations.get_annotation_groups()}
        assert labels <= {"tumour", "margins"}
    assert creators == {"alice", "bob"}
    if shutil.which("dciodvfy"):
        check = subprocess.run(["dciodvfy", str(paths[0])], capture_output=True, text=True)
        # Debian's dicom3tools flags CommonZCoordinateValue on every 2D group although the
        # attribute is absent (it is only written for 3D): its condition, not the file.
        errors = [line for line in check.stderr.splitlines() if line.startswith("Error")
                  and "CommonZCoordinateValue" not in line]
        assert errors == [], check.stderr

    # The database forgets the layers; the instances in storage bring them back.
    from pathology.annotation_store import delete_layer
    from pathology.pathology_models import AnnotationImport

    await delete_layer(api.services.sessions, DICOM_ID, "alice", "tumour")
    await delete_layer(api.services.sessions, DICOM_ID, "bob", "margins")
    async with api.services.sessions() as session, session.begin():
        for uid in body["sopInstanceUIDs"]:
            await session.delete(await session.get(AnnotationImport, uid))
    restored = await layers(api, DICOM_ID, "alice")
    assert {(layer["owner"], layer["name"]) for layer in restored} == {
        ("alice", "tumour"), ("bob", "margins")}
    tumour = next(layer for layer in restored if layer["name"] == "tumour")
    assert [s["type"] for s in tumour["shapes"]] == ["point", "line", "polygon"]
    polygon = next(s for s in tumour["shapes"] if s["type"] == "polygon")
    assert polygon["points"] == TUMOUR[0]["points"]


async def test_layers_of_a_non_dicom_slide_are_not_exported(api: Api) -> None:
    assert await put(api, "ANN-SVS", "frank", "notes", TUMOUR) == 200
    response = await api.client.post("/webdv/slides/ANN-SVS/layers/export",
                                     headers={"Authorization": API_KEY})
    assert response.status == 400
    assert "not DICOM" in (await response.json())["error"]
