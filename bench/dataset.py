"""The generated data sets the benchmarks send: deterministic, cached under bench/out/data/.

A set is split into four part folders of whole studies, so that one storescu can send the
whole set over one association and four storescu processes can send one part each.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from tests.factory import StudySpec, make_instance, uid

OUT = Path(__file__).resolve().parent / "out"
DATA = OUT / "data"
PARTS = 4

# kind -> (rows/columns, modality, UID branch); the 16-bit CT slice is 512 KiB of pixels.
KINDS: dict[str, tuple[int, str, int]] = {
    "small": (64, "MR", 1),
    "ct": (512, "CT", 2),
}
INSTANCES_PER_STUDY = 100


@dataclass(frozen=True)
class StoreSet:
    kind: str
    root: Path
    parts: tuple[Path, ...]
    count: int

    @property
    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.root.rglob("*.dcm"))


def _study_sizes(count: int) -> list[int]:
    """Studies of about INSTANCES_PER_STUDY instances, a multiple of PARTS of them."""
    studies = max(PARTS, -(-count // INSTANCES_PER_STUDY))
    studies += -studies % PARTS
    return [count // studies + (1 if s < count % studies else 0) for s in range(studies)]


def store_set(kind: str, count: int) -> StoreSet:
    """The data set of `count` instances of `kind`, generated on first use."""
    size, modality, branch = KINDS[kind]
    root = DATA / f"{kind}-{count}"
    parts = tuple(root / f"part{p}" for p in range(PARTS))
    if not root.is_dir():
        building = DATA / f".{kind}-{count}.building"
        shutil.rmtree(building, ignore_errors=True)
        for study, n in enumerate(_study_sizes(count)):
            spec = StudySpec(
                patient_id=f"BENCH-{kind.upper()}-{study:04d}",
                patient_name=f"BENCH^{kind.upper()}{study:04d}",
                study_uid=uid(900, branch, study),
                accession=f"B{branch}{study:06d}",
                study_date=f"2024{1 + study % 12:02d}{1 + study % 28:02d}",
                modality=modality,
                rows=size,
                columns=size,
                instances_per_series=n,
            )
            folder = building / f"part{study % PARTS}" / f"study{study:04d}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                ds = make_instance(spec, 0, i)
                ds.save_as(folder / f"{i:05d}.dcm", enforce_file_format=True)
        building.rename(root)
    return StoreSet(kind, root, parts, count)
