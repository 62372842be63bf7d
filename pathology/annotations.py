"""Annotation layers: named sets of shapes a pathologist draws on a slide, kept per user and
slide, and exchanged as DICOM Microscopy Bulk Simple Annotations.

Coordinates are level-0 pixels of the slide (x right, y down), as DICOM's 2D annotation
coordinates are. A layer becomes one annotation group per graphic type, labelled with the layer's
name; an exported instance holds one user's layers and names that user as its content creator,
so that reading it back restores the same layers for the same user.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import highdicom as hd
import numpy as np
from highdicom.ann import AnnotationGroup, MicroscopyBulkSimpleAnnotations
from pydicom.dataset import Dataset
from pydicom.sr.coding import Code

from node.errors import InvalidInput

ShapeKind = Literal["point", "line", "polygon", "rectangle", "ellipse"]
Visibility = Literal["USER", "ALL"]
ANN_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.91.1"
GRAPHIC_TYPES: dict[ShapeKind, str] = {
    "point": "POINT",
    "line": "POLYLINE",
    "polygon": "POLYGON",
    "rectangle": "RECTANGLE",
    "ellipse": "ELLIPSE",
}
KINDS: dict[str, ShapeKind] = {v: k for k, v in GRAPHIC_TYPES.items()}
MAX_NAME = 64
MAX_SHAPES = 10_000
MAX_POINTS = 200_000
# What a drawn layer marks, for DICOM: the viewer does not ask, so "tissue" it is.
PROPERTY_CATEGORY = Code("91723000", "SCT", "Anatomical Structure")
PROPERTY_TYPE = Code("85756007", "SCT", "Tissue")


@dataclass(frozen=True)
class Shape:
    kind: ShapeKind
    points: tuple[tuple[float, float], ...]

    def to_json(self) -> dict[str, Any]:
        return {"type": self.kind, "points": [list(p) for p in self.points]}


@dataclass(frozen=True)
class Layer:
    container_identifier: str
    owner: str
    name: str
    shapes: tuple[Shape, ...]
    updated_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "owner": self.owner,
            "shapes": [s.to_json() for s in self.shapes],
            "updatedAt": self.updated_at.isoformat() if self.updated_at else None,
        }


def check_name(value: str | None, what: str) -> str:
    if value is None or not value.strip():
        raise InvalidInput(f"{what} is mandatory", field=what)
    value = value.strip()
    if len(value) > MAX_NAME or not value.isprintable() or "\\" in value:
        raise InvalidInput(f"{what} must be at most {MAX_NAME} printable characters "
                           "without a backslash", field=what)
    return value


def parse_shapes(data: Any, width: int, height: int) -> tuple[Shape, ...]:
    """The `shapes` of a layer from JSON, checked against the slide's size. Rectangles and
    ellipses may be given by two opposite corners of their (axis-aligned) box; they are kept
    as DICOM draws them: four corners, and the two axes' end points."""
    if not isinstance(data, list):
        raise InvalidInput("shapes must be a list", field="shapes")
    if len(data) > MAX_SHAPES:
        raise InvalidInput(f"a layer holds at most {MAX_SHAPES} shapes", field="shapes")
    shapes = []
    total = 0
    for index, item in enumerate(data):
        where = f"shapes[{index}]"
        if not isinstance(item, Mapping):
            raise InvalidInput(f"{where} must be an object", field=where)
        kind = item.get("type")
        if kind not in GRAPHIC_TYPES:
            raise InvalidInput(f"{where}.type must be one of {', '.join(GRAPHIC_TYPES)}",
                               field=f"{where}.type")
        points = _points(item.get("points"), f"{where}.points", width, height)
        total += len(points)
        if total > MAX_POINTS:
            raise InvalidInput(f"a layer holds at most {MAX_POINTS} points", field=where)
        shapes.append(Shape(kind, _normalise(kind, points, f"{where}.points")))
    return tuple(shapes)


def _points(data: Any, where: str, width: int, height: int) -> list[tuple[float, float]]:
    if not isinstance(data, list) or not data:
        raise InvalidInput(f"{where} must be a non-empty list of [x, y]", field=where)
    points = []
    for index, point in enumerate(data):
        if (not isinstance(point, list) or len(point) != 2
                or not all(isinstance(v, int | float) and not isinstance(v, bool)
                           for v in point)):
            raise InvalidInput(f"{where}[{index}] must be [x, y]", field=where)
        x, y = float(point[0]), float(point[1])
        if not (math.isfinite(x) and math.isfinite(y) and 0 <= x <= width and 0 <= y <= height):
            raise InvalidInput(f"{where}[{index}] lies outside the slide ({width}x{height})",
                               field=where)
        points.append((x, y))
    return points


def _normalise(kind: ShapeKind, points: list[tuple[float, float]],
               where: str) -> tuple[tuple[float, float], ...]:
    count = len(points)
    if kind == "point" and count != 1:
        raise InvalidInput(f"{where}: a point has one [x, y]", field=where)
    if kind == "line" and count < 2:
        raise InvalidInput(f"{where}: a line needs at least two points", field=where)
    if kind == "polygon" and count < 3:
        raise InvalidInput(f"{where}: a polygon needs at least three points", field=where)
    if kind in ("rectangle", "ellipse"):
        if count == 2:
            (x0, y0), (x1, y1) = points
            if x0 == x1 or y0 == y1:
                raise InvalidInput(f"{where}: the two corners make an empty box", field=where)
            if kind == "rectangle":
                points = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
            else:
                cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
                points = [(x0, cy), (x1, cy), (cx, y0), (cx, y1)]
        elif count != 4:
            raise InvalidInput(f"{where}: a {kind} has two box corners or four points",
                               field=where)
    return tuple(points)


def visible_layers(layers: Sequence[Layer], user: str, visibility: Visibility,
                   hide_layers: bool) -> list[Layer]:
    """What `user` sees: nothing with hideLayers, their own with USER, everyone's with ALL."""
    if hide_layers:
        return []
    if visibility == "USER":
        return [layer for layer in layers if layer.owner == user]
    return list(layers)


def build_instance(source: Dataset, owner: str, layers: Sequence[Layer], series_uid: str,
                   instance_number: int) -> MicroscopyBulkSimpleAnnotations:
    """One user's layers on one slide as a Microscopy Bulk Simple Annotations instance,
    referencing the slide's level-0 image (same study, frame of reference, container)."""
    groups: list[AnnotationGroup] = []
    for layer in layers:
        for kind, graphic_type in GRAPHIC_TYPES.items():
            shapes = [s for s in layer.shapes if s.kind == kind]
            if not shapes:
                continue
            groups.append(AnnotationGroup(
                number=len(groups) + 1,
                uid=hd.UID(),
                label=layer.name,
                annotated_property_category=PROPERTY_CATEGORY,
                annotated_property_type=PROPERTY_TYPE,
                graphic_type=graphic_type,
                graphic_data=[np.asarray(s.points, dtype=np.float64) for s in shapes],
                algorithm_type="MANUAL",
                description=f"annotation layer {layer.name}",
            ))
    if not groups:
        raise InvalidInput("there are no shapes to export")
    return MicroscopyBulkSimpleAnnotations(
        source_images=[source],
        annotation_coordinate_type="2D",
        annotation_groups=groups,
        series_instance_uid=series_uid,
        series_number=9001,
        sop_instance_uid=hd.UID(),
        instance_number=instance_number,
        manufacturer="viewnode",
        manufacturer_model_name="viewnode pathology",
        software_versions="1",
        device_serial_number="viewnode",
        content_description="Annotation layers",
        # A bare user name is a one-component person name: the caret says so.
        content_creator_name=owner if "^" in owner else f"{owner}^",
        content_label="LAYERS",
    )


def layer_owner(dataset: Dataset) -> str:
    """Whose layers an annotation instance holds: its content creator ("dicom" when unnamed).
    A viewer session may store only its own user's (rest/dicomweb/stow.py)."""
    return str(dataset.get("ContentCreatorName", "") or "").rstrip("^") or "dicom"


def read_instance(dataset: Dataset, container_identifier: str) -> list[Layer]:
    """The layers of an annotation instance: groups with the same label are one layer, owned
    by the instance's content creator."""
    annotations = MicroscopyBulkSimpleAnnotations.from_dataset(dataset)
    owner = layer_owner(dataset)
    by_name: dict[str, list[Shape]] = {}
    for group in annotations.get_annotation_groups():
        kind = KINDS.get(str(group.graphic_type.value))
        if kind is None:
            continue
        name = str(group.label)[:MAX_NAME] or "layer"
        for graphic in group.get_graphic_data(coordinate_type="2D"):
            points = tuple((float(x), float(y)) for x, y in np.asarray(graphic)[:, :2])
            by_name.setdefault(name, []).append(Shape(kind, points))
    return [Layer(container_identifier, owner, name, tuple(shapes))
            for name, shapes in by_name.items()]
