"""Media export: GET /webdv/getIso to the last byte, beside DCMTK dcmmkdir + xorriso on the same
files and Orthanc's /studies/{id}/media ZIP, in the same run.

    .venv/bin/python -m bench.iso                     # 2,000 small instances; 500 MB of CT
    .venv/bin/python -m bench.iso --small 500 --ct 200 --repeat 1

Each set is one study. The node and Orthanc get the files once (not timed); each timed run is
one HTTP request read to its last byte (the body is counted and dropped), or, for DCMTK,
`dcmmkdir` writing the DICOMDIR of a folder the files were copied into under DICOM file names
(the copy is not timed) followed by `xorriso -as mkisofs` writing the image. The best of
`--repeat` runs is kept.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from bench.common import OrthancPeer, fresh_folder, print_table, run_dcmtk, storescu
from bench.dataset import DATA
from node.config import load_config
from node.process.runtime import open_services
from tests.factory import StudySpec, make_instance, uid
from tests.peers import NodeProcess


@dataclass(frozen=True)
class StudySet:
    kind: str
    study_uid: str
    folder: Path
    count: int

    @property
    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.folder.iterdir())


def study_set(kind: str, count: int) -> StudySet:
    """One study of `count` instances: 64x64 MR ("small") or 512x512 CT ("ct", 512 KiB each)."""
    size, modality, branch = {"small": (64, "MR", 1), "ct": (512, "CT", 2)}[kind]
    study_uid = uid(950, branch, count)
    folder = DATA / f"iso-{kind}-{count}"
    if not folder.is_dir():
        building = folder.with_name(folder.name + ".building")
        shutil.rmtree(building, ignore_errors=True)
        building.mkdir(parents=True)
        spec = StudySpec(patient_id=f"ISO-{kind.upper()}", patient_name=f"BENCH^ISO{kind}",
                         study_uid=study_uid, modality=modality, rows=size, columns=size,
                         instances_per_series=count)
        for i in range(count):
            # DICOM file names, so that dcmmkdir can reference the files where they are.
            make_instance(spec, 0, i).save_as(building / f"IM{i + 1:06d}",
                                              enforce_file_format=True)
        building.rename(folder)
    return StudySet(kind, study_uid, folder, count)


def read_to_end(url: str, headers: dict[str, str]) -> tuple[float, int]:
    """Seconds to the last byte, and the byte count."""
    start = time.perf_counter()
    received = 0
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                timeout=3600) as response:
        while chunk := response.read(1 << 20):
            received += len(chunk)
    return time.perf_counter() - start, received


async def _ingest(config_path: Path, files: list[Path]) -> None:
    async with open_services(load_config(config_path)) as services:
        for path in files:
            await services.ingestor.ingest_copy(path, "import")


def time_node(data: StudySet, repeat: int) -> tuple[float, int]:
    folder = fresh_folder(f"iso-node-{data.kind}")
    node = NodeProcess(folder / "node", extra={"media": {"max_iso_bytes": 1 << 40}})
    node.write_config()
    asyncio.run(_ingest(node.config_path, sorted(data.folder.iterdir())))
    node.start()
    try:
        url = f"{node.http_url}/webdv/getIso?studyUID={data.study_uid}"
        runs = [read_to_end(url, {"Authorization": node.api_key}) for _ in range(repeat)]
    finally:
        node.stop()
        shutil.rmtree(folder, ignore_errors=True)
    return min(runs)


def time_dcmtk(data: StudySet, repeat: int) -> tuple[float, int]:
    best: tuple[float, int] | None = None
    for _ in range(repeat):
        folder = fresh_folder(f"iso-dcmtk-{data.kind}")
        shutil.copytree(data.folder, folder / "medium" / "DICOM")
        medium = folder / "medium"
        start = time.perf_counter()
        made = run_dcmtk(["dcmmkdir", "-Pgp", "+r", "+id", str(medium), "+D",
                          str(medium / "DICOMDIR"), "DICOM"])
        if made.returncode != 0:
            raise RuntimeError(f"dcmmkdir failed: {made.stderr[-500:]}")
        iso = folder / "medium.iso"
        mastered = run_dcmtk(["xorriso", "-as", "mkisofs", "-quiet", "-J", "-R", "-V",
                              "DCMTK_BENCH", "-o", str(iso), str(medium)])
        if mastered.returncode != 0:
            raise RuntimeError(f"xorriso failed: {mastered.stderr[-500:]}")
        elapsed = time.perf_counter() - start
        run = (elapsed, iso.stat().st_size)
        best = run if best is None or run < best else best
        shutil.rmtree(folder, ignore_errors=True)
    assert best is not None
    return best


def time_orthanc(data: StudySet, repeat: int) -> tuple[float, int]:
    folder = fresh_folder(f"iso-orthanc-{data.kind}")
    peer = OrthancPeer(folder)
    peer.start()
    try:
        storescu(peer, [data.folder])
        assert peer.process is not None
        request = urllib.request.Request(f"{peer.process.http_url}/tools/lookup",
                                         data=data.study_uid.encode(), method="POST")
        with urllib.request.urlopen(request, timeout=60) as response:
            (study,) = [r for r in json.loads(response.read()) if r["Type"] == "Study"]
        url = f"{peer.process.http_url}/studies/{study['ID']}/media"
        runs = [read_to_end(url, {}) for _ in range(repeat)]
    finally:
        peer.stop()
        shutil.rmtree(folder, ignore_errors=True)
    return min(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=2000, help="64x64 instances (0: skip)")
    parser.add_argument("--ct", type=int, default=1000,
                        help="512x512 CT instances, 512 KiB each (0: skip)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per cell; the best is kept")
    parser.add_argument("--no-orthanc", action="store_true", help="skip Orthanc's ZIP")
    args = parser.parse_args()
    sets = [study_set(kind, n) for kind, n in (("small", args.small), ("ct", args.ct)) if n > 0]
    rows = []
    for data in sets:
        mib = data.size_bytes / 2**20
        node_s, node_bytes = time_node(data, args.repeat)
        print(f"{data.kind} x{data.count} ({mib:.0f} MiB): node getIso {node_s:.2f} s", flush=True)
        dcmtk_s, dcmtk_bytes = time_dcmtk(data, args.repeat)
        print(f"{data.kind} x{data.count}: dcmmkdir + xorriso {dcmtk_s:.2f} s", flush=True)
        row: list[object] = [f"{data.kind} x{data.count} ({mib:.0f} MiB)",
                             node_s, node_bytes // 2**20, dcmtk_s, dcmtk_bytes // 2**20]
        if args.no_orthanc:
            row += ["-", "-"]
        else:
            orthanc_s, orthanc_bytes = time_orthanc(data, args.repeat)
            print(f"{data.kind} x{data.count}: Orthanc media ZIP {orthanc_s:.2f} s", flush=True)
            row += [orthanc_s, orthanc_bytes // 2**20]
        row.append("yes" if node_s <= dcmtk_s else "no")
        rows.append(row)
    print_table(["study", "node getIso s", "ISO MiB", "dcmmkdir+xorriso s", "ISO MiB",
                 "Orthanc ZIP s", "ZIP MiB", "node <= DCMTK"], rows)


if __name__ == "__main__":
    main()
