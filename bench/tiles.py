"""Slide tiles: tiles/s and p50/p99 latency for one random walk of tile requests over the top
DeepZoom levels, replayed against every contender in the same run on the same slide:

- the node's HTTP tile endpoint (DICOM WSI: stored JPEG passed through; DICOM WSI with a .cube
  applied; SVS through openslide), with its tile cache off, and once with it on;
- OpenSlide's own DeepZoomGenerator in-process on the SVS (get_tile + JPEG encode);
- Orthanc WSI's tile endpoint on the DICOM series (native levels only: it has no DeepZoom).

    .venv/bin/python -m bench.tiles                       # 8192x6144 slide, 2,000 requests
    .venv/bin/python -m bench.tiles --requests 500 --width 4096 --height 3072

Targets (issue 6): passthrough at least 5x the OpenSlide DeepZoom rate; LUT tiles at least the
OpenSlide DeepZoom rate without LUT.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import math
import multiprocessing
import random
import subprocess
import time
import urllib.request
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import openslide
from aiohttp import web
from openslide.deepzoom import DeepZoomGenerator

from bench.common import fresh_folder, percentile, print_table
from node.config import config_from_dict
from node.process.runtime import open_services
from pathology.catalogue import register_slide_file
from pathology.luts import store_lut
from pathology.slide_service import SlideService
from rest.app import create_app
from rest.slide_routes import SLIDES
from tests import slide_factory as factory
from tests.peers import PEER_ENV, free_port, wait_for_port

API_KEY = "bench-tiles-key"
SVS_ID = "BENCH-SVS"
WARM_CUBE = factory.cube_text(
    33, lambda r, g, b: (r * 0.9 + 0.1, g * 0.95, b * 0.85), title="warm")

Step = tuple[int, int, int]


@dataclass
class Result:
    name: str
    latencies: list[float]
    seconds: float

    def row(self) -> list[object]:
        count = len(self.latencies)
        return [self.name, count, count / self.seconds,
                percentile(self.latencies, 0.5) * 1000, percentile(self.latencies, 0.99) * 1000]


def random_walk(width: int, height: int, tile: int, count: int, seed: int = 6) -> list[Step]:
    """A pathologist panning and zooming: mostly moves to a neighbouring tile, sometimes a
    zoom step, over the three finest DeepZoom levels."""
    rng = random.Random(seed)
    top = math.ceil(math.log2(max(width, height)))
    levels = [top, top - 1, top - 2]

    def grid(level: int) -> tuple[int, int]:
        scale = 2 ** (top - level)
        return math.ceil(width / scale / tile), math.ceil(height / scale / tile)

    level = top - 2
    cols, rows = grid(level)
    col, row = cols // 2, rows // 2
    steps = []
    for _ in range(count):
        steps.append((level, col, row))
        if rng.random() < 0.08:
            new_level = rng.choice([lv for lv in levels if lv != level])
            factor = 2.0 ** (new_level - level)
            level = new_level
            cols, rows = grid(level)
            col, row = int(col * factor), int(row * factor)
        else:
            col += rng.choice((-1, 0, 1))
            row += rng.choice((-1, 0, 1))
        col = min(max(col, 0), cols - 1)
        row = min(max(row, 0), rows - 1)
    return steps


async def replay(steps: list[Step], fetch: Callable[[Step], Awaitable[int]],
                 concurrency: int) -> tuple[list[float], float]:
    """The walk in order, `concurrency` requests in flight (a viewer loads several at once)."""
    queue = iter(steps)
    latencies: list[float] = []

    async def worker() -> None:
        for step in queue:
            started = time.perf_counter()
            size = await fetch(step)
            latencies.append(time.perf_counter() - started)
            if size <= 0:
                raise RuntimeError(f"empty tile for {step}")

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, time.perf_counter() - started


# --- the node, in a process of its own --------------------------------------------------------


class NodeServer:
    """The node's HTTP app in a child process, as in production: the benchmark's client does
    not share an interpreter (and its lock) with the server."""

    def __init__(self, folder: Path, slides: factory.SlideSet, cache_bytes: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.port = free_port()
        self._ready = context.Event()
        self._stop = context.Event()
        self._process = context.Process(
            target=_serve, args=(folder, slides, cache_bytes, self.port, self._ready, self._stop),
            daemon=True)

    def start(self) -> NodeServer:
        self._process.start()
        if not self._ready.wait(300) or not self._process.is_alive():
            raise RuntimeError("the node did not start (see the traceback above)")
        return self

    def stop(self) -> None:
        self._stop.set()
        self._process.join(60)


def _serve(folder: Path, slides: factory.SlideSet, cache_bytes: int, port: int,
           ready: Any, stop: Any) -> None:
    asyncio.run(_serve_async(folder, slides, cache_bytes, port, ready, stop))


async def _serve_async(folder: Path, slides: factory.SlideSet, cache_bytes: int, port: int,
                       ready: Any, stop: Any) -> None:
    config = config_from_dict({
        "node": {"data_dir": "data"},
        "dicom": {"bind": "127.0.0.1", "port": free_port()},
        "http": {"bind": "127.0.0.1", "port": port},
        "storage": {"fsync": False},
    }, base_dir=folder)
    async with open_services(config) as services:
        for path in slides.dicom.paths:
            await services.ingestor.ingest_copy(path, "import")
        app = create_app(services, API_KEY)
        default = app[SLIDES]
        app[SLIDES] = SlideService(services.sessions, services.storage, cache_bytes=cache_bytes)
        await default.close()
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await register_slide_file(services.sessions, services.storage, SVS_ID, slides.svs)
        await store_lut(services.sessions, factory.SpecimenSpec().container_identifier,
                        WARM_CUBE.encode())
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        ready.set()
        while not stop.is_set():
            await asyncio.sleep(0.2)
        await runner.cleanup()


async def measure_node(port: int, name: str, cid: str, steps: list[Step], concurrency: int,
                       lut: bool) -> Result:
    base = f"http://127.0.0.1:{port}/webdv/slides/{cid}/dz"
    params = {"lut": "1"} if lut else {}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector,
                                     headers={"Authorization": API_KEY}) as session:

        async def fetch(step: Step) -> int:
            level, col, row = step
            async with session.get(f"{base}/{level}/{col}_{row}.jpeg", params=params) as r:
                body = await r.read()
                if r.status != 200:
                    raise RuntimeError(f"{name}: {r.status} {body[:200]!r}")
                return len(body)

        await fetch(steps[0])
        latencies, seconds = await replay(steps, fetch, concurrency)
    return Result(name, latencies, seconds)


# --- OpenSlide DeepZoom, in-process -----------------------------------------------------------


async def measure_openslide(svs: Path, steps: list[Step], concurrency: int) -> Result:
    slide = openslide.OpenSlide(str(svs))
    deepzoom = DeepZoomGenerator(slide, tile_size=256, overlap=0, limit_bounds=False)
    pool = ThreadPoolExecutor(max_workers=concurrency)
    loop = asyncio.get_running_loop()

    def render(step: Step) -> int:
        level, col, row = step
        out = io.BytesIO()
        deepzoom.get_tile(level, (col, row)).save(out, format="JPEG", quality=85)
        return len(out.getvalue())

    async def fetch(step: Step) -> int:
        return await loop.run_in_executor(pool, render, step)

    try:
        latencies, seconds = await replay(steps, fetch, concurrency)
    finally:
        pool.shutdown()
        slide.close()
    return Result("OpenSlide DeepZoomGenerator (SVS, in-process)", latencies, seconds)


# --- Orthanc WSI ------------------------------------------------------------------------------


class OrthancWsi:
    """Orthanc with its WSI plugin (Debian orthanc-wsi), holding the DICOM series."""

    PLUGIN = "/usr/share/orthanc/plugins/libOrthancWSI.so"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.http_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, files: list[Path]) -> str:
        config = {
            "Name": "bench-wsi", "HttpPort": self.http_port, "DicomPort": free_port(),
            "StorageDirectory": str(self.folder / "storage"),
            "IndexDirectory": str(self.folder / "index"),
            "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
            "Plugins": [self.PLUGIN],
        }
        path = self.folder / "orthanc.json"
        path.write_text(json.dumps(config))
        log = (self.folder / "orthanc.log").open("ab")
        self.proc = subprocess.Popen(["Orthanc", str(path)], stdout=log,
                                     stderr=subprocess.STDOUT, env=PEER_ENV)
        wait_for_port(self.http_port, proc=self.proc, timeout=60)
        series = ""
        for file in files:
            request = urllib.request.Request(
                f"http://127.0.0.1:{self.http_port}/instances", data=file.read_bytes(),
                method="POST", headers={"Content-Type": "application/dicom"})
            with urllib.request.urlopen(request, timeout=60) as response:
                series = json.loads(response.read())["ParentSeries"]
        return series

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(30)


async def measure_orthanc(port: int, series: str, steps: list[Step], top: int,
                          concurrency: int) -> Result:
    base = f"http://127.0.0.1:{port}/wsi/tiles/{series}"
    # Orthanc WSI addresses the stored pyramid: DeepZoom top is its level 0, top-2 its level 1.
    native = {top: 0, top - 2: 1}
    mine = [(native[level], col, row) for level, col, row in steps if level in native]
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def fetch(step: Step) -> int:
            level, col, row = step
            async with session.get(f"{base}/{level}/{col}/{row}") as r:
                body = await r.read()
                if r.status != 200:
                    raise RuntimeError(f"orthanc-wsi: {r.status} {body[:200]!r}")
                return len(body)

        await fetch(mine[0])
        latencies, seconds = await replay(mine, fetch, concurrency)
    return Result("Orthanc WSI /wsi/tiles (DICOM, native levels only)", latencies, seconds)


# --- the run ------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=8192)
    parser.add_argument("--height", type=int, default=6144)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--skip-orthanc", action="store_true")
    args = parser.parse_args()

    folder = fresh_folder("tiles")
    spec = factory.SlideSpec(width=args.width, height=args.height, downsamples=(1, 4, 16),
                             quality=85)
    started = time.perf_counter()
    slides = factory.write_slide_set(folder / "slides", spec)
    print(f"slide {args.width}x{args.height}, levels 1/4/16, 256-pixel JPEG tiles: "
          f"written in {time.perf_counter() - started:.1f} s", flush=True)
    steps = random_walk(args.width, args.height, 256, args.requests)
    top = math.ceil(math.log2(max(args.width, args.height)))
    distinct = len(set(steps))
    print(f"walk: {len(steps)} requests, {distinct} distinct tiles, levels "
          f"{sorted({s[0] for s in steps})}, {args.concurrency} in flight", flush=True)
    dicom_id = factory.SpecimenSpec().container_identifier
    # The same walk kept to the levels the files store (top and top-2), where every node tile
    # can be a stored JPEG and Orthanc WSI can answer too.
    native_steps = [step for step in steps if step[0] in (top, top - 2)]
    walks = {"all levels": steps, "stored levels only": native_steps}
    results: dict[str, list[Result]] = {walk: [] for walk in walks}

    for walk, walk_steps in walks.items():
        results[walk].append(asyncio.run(
            measure_openslide(slides.svs, walk_steps, args.concurrency)))
    for cache_bytes, label in ((0, "cache off"), (256 * 1024 * 1024, "cache on")):
        server = NodeServer(fresh_folder(f"tiles-node-{cache_bytes}"), slides, cache_bytes).start()
        try:
            runs: list[tuple[str, str, bool]] = [
                (f"node DICOM, stored JPEG passthrough ({label})", dicom_id, False)]
            if cache_bytes == 0:
                runs += [(f"node DICOM with .cube lut=1 ({label})", dicom_id, True),
                         (f"node SVS via openslide ({label})", SVS_ID, False)]
            for walk, walk_steps in walks.items():
                for name, cid, lut in runs:
                    results[walk].append(asyncio.run(measure_node(
                        server.port, name, cid, walk_steps, args.concurrency, lut)))
        finally:
            server.stop()
    if not args.skip_orthanc:
        orthanc = OrthancWsi(fresh_folder("tiles-orthanc"))
        try:
            series = orthanc.start(slides.dicom.paths)
            results["stored levels only"].append(asyncio.run(
                measure_orthanc(orthanc.http_port, series, native_steps, top, args.concurrency)))
        finally:
            orthanc.stop()
    for walk, walk_results in results.items():
        print(f"\n{walk}: {len(walks[walk])} requests, {len(set(walks[walk]))} distinct tiles")
        print_table(["contender", "requests", "tiles/s", "p50 ms", "p99 ms"],
                    [r.row() for r in walk_results])
        rates = {r.name: float(r.row()[2]) for r in walk_results}  # type: ignore[arg-type]
        reference = float(walk_results[0].row()[2])  # type: ignore[arg-type]
        passthrough = rates["node DICOM, stored JPEG passthrough (cache off)"]
        lut_rate = rates["node DICOM with .cube lut=1 (cache off)"]
        print(f"node passthrough / OpenSlide DeepZoom: {passthrough / reference:.1f}x "
              f"(target >= 5x); node LUT / OpenSlide DeepZoom: {lut_rate / reference:.2f}x "
              "(target >= 1x)")

if __name__ == "__main__":
    main()
