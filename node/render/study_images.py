"""A study's series and instances as the viewer shows them: in display order, from the index."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from node.index.instance_queries import study_image_rows


@dataclass(frozen=True)
class StoredImage:
    sop_uid: str
    sop_class_uid: str
    instance_number: str
    frames: int
    # Relative to the storage root.
    path: str
    transfer_syntax: str


@dataclass
class StoredSeries:
    series_uid: str
    modality: str
    number: str
    description: str
    body_part: str
    instances: list[StoredImage] = field(default_factory=list)


def _number(text: str) -> tuple[int, float, str]:
    """IS values sort as numbers; empty or odd ones after them, as text."""
    try:
        return (0, float(text), "")
    except ValueError:
        return (1, 0.0, text)


async def study_series(db: AsyncConnection | AsyncSession, study_uid: str) -> list[StoredSeries]:
    rows = await study_image_rows(db, study_uid)
    series: dict[str, StoredSeries] = {}
    for row in rows:
        found = series.get(row[0])
        if found is None:
            found = series[row[0]] = StoredSeries(row[0], row[1], row[2], row[3], row[4])
        found.instances.append(StoredImage(row[5], row[6], row[7], max(row[8] or 1, 1),
                                           row[9], row[10]))
    ordered = sorted(series.values(), key=lambda s: (_number(s.number), s.series_uid))
    for item in ordered:
        item.instances.sort(key=lambda i: (_number(i.instance_number), i.sop_uid))
    return ordered
