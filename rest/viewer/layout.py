"""Placing a study's series in the cells of the context's hanging protocol.

The context carries a snapshot of the protocols that apply (the user's, else the role's, else
the global ones). The protocol that places the most of the study's series is used; its rules
put series in cells, and cells no rule filled take the remaining image series in order. No
protocol at all: one cell, the first image series.
"""

from __future__ import annotations

from typing import Any

from node.render import StoredSeries, is_image
from node.viewing.hanging_protocols import Protocol, snapshot_protocols


def _key(series: StoredSeries) -> tuple[str, str, str]:
    return (series.modality, series.body_part, series.description)


def layout(snapshot: dict[str, Any], series: list[StoredSeries]) -> dict[str, Any]:
    images = [s for s in series
              if any(is_image(i.sop_class_uid, i.transfer_syntax) for i in s.instances)]
    shown = images or series
    best: tuple[Protocol, dict[int, int]] | None = None
    for protocol in snapshot_protocols(snapshot):
        placed = protocol.place([_key(s) for s in shown])
        if best is None or len(placed) > len(best[1]):
            best = (protocol, placed)
    if best is None:
        return {"protocol": None, "rows": 1, "columns": 1,
                "cells": [shown[0].series_uid if shown else None]}
    protocol, placed = best
    cells: list[str | None] = [None] * (protocol.rows * protocol.columns)
    used: set[int] = set()
    for index, cell in placed.items():
        if cells[cell - 1] is None:
            cells[cell - 1] = shown[index].series_uid
            used.add(index)
    rest = [s.series_uid for i, s in enumerate(shown) if i not in used]
    for position, value in enumerate(cells):
        if value is None and rest:
            cells[position] = rest.pop(0)
    return {"protocol": protocol.name, "rows": protocol.rows, "columns": protocol.columns,
            "cells": cells}
