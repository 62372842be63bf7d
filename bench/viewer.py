"""The viewer: time to the first image in headless Chromium, and rendered frames per second
(cold and warm render cache) beside Orthanc's /instances/{id}/preview on the same instances.

    .venv/bin/python -m bench.viewer                   # 300 CT 512x512, 4 connections
    .venv/bin/python -m bench.viewer --images 100 --connections 8

The node runs as `python -m node serve` (default settings), Orthanc 1.10 with its defaults;
both hold the same files (node: `python -m node import`, Orthanc: REST upload). The first
image time runs from `page.goto(token URL)` (redeem, redirect, page, scripts, series list,
first frame) to the viewport reporting a drawn frame; the first run finds an empty render
cache, later runs (new tokens) find the frames that the first one rendered.
Frames per second: every image of the study requested once by N concurrent connections.
Cold: a window that was never asked for (nothing cached); warm: the same requests again.
Orthanc has no preview cache: its second pass is its warm figure.

Targets (issue 5): first image under 1 s; warm at least 3x Orthanc's preview; cold at least
equal.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import urllib.request
from pathlib import Path

import aiohttp

from bench.common import fresh_folder, print_table
from bench.dataset import OUT
from tests.browser import CHROMIUM, FLAGS
from tests.factory import StudySpec
from tests.peers import NodeProcess, OrthancProcess
from tests.viewer_data import ct_instances, write_all

STUDY = "1.2.826.0.1.3680043.10.1011.9501"
ROLE = "physician"


def study_files(images: int) -> Path:
    folder = OUT / "data" / f"viewer-ct-{images}"
    if folder.exists() and len(list(folder.glob("*.dcm"))) == images:
        return folder
    spec = StudySpec(study_uid=STUDY, patient_id="PID-BENCH-VIEW", rows=512, columns=512)
    write_all(folder, ct_instances(spec, images))
    return folder


def orthanc_upload(orthanc: OrthancProcess, folder: Path) -> list[str]:
    ids = []
    for path in sorted(folder.glob("*.dcm")):
        request = urllib.request.Request(f"{orthanc.http_url}/instances", data=path.read_bytes(),
                                         method="POST")
        with urllib.request.urlopen(request) as answer:
            ids.append(json.loads(answer.read())["ID"])
    return ids


def token(node: NodeProcess) -> str:
    query = f"username=bench&role={ROLE}&studyUID={STUDY}"
    request = urllib.request.Request(f"{node.http_url}/ngv/obscurl?{query}",
                                     headers={"Authorization": node.api_key})
    with urllib.request.urlopen(request) as answer:
        return answer.read().decode()


async def first_image_times(node: NodeProcess, runs: int) -> list[float]:
    from playwright.async_api import async_playwright

    times = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            for _ in range(runs):
                url = f"{node.http_url}/ngv?q={token(node)}"
                context = await browser.new_context(viewport={"width": 1920, "height": 1080})
                page = await context.new_page()
                started = time.perf_counter()
                await page.goto(url)
                await page.wait_for_selector(".viewport[data-state='ready']")
                times.append(time.perf_counter() - started)
                await context.close()
        finally:
            await browser.close()
    return times


async def session_cookie(node: NodeProcess) -> str:
    async with aiohttp.ClientSession() as client, client.get(
            f"{node.http_url}/ngv?q={token(node)}", allow_redirects=False) as answer:
        return answer.cookies["ngv_session"].value


async def fetch_all(urls: list[str], connections: int, headers: dict[str, str]) -> float:
    """Frames per second for all URLs over `connections` concurrent connections."""
    queue = list(reversed(urls))
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as client:

        async def worker() -> None:
            while queue:
                url = queue.pop()
                async with client.get(url) as answer:
                    assert answer.status == 200, (url, answer.status)
                    await answer.read()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        return len(urls) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--first-image-runs", type=int, default=5)
    args = parser.parse_args()
    files = study_files(args.images)
    folder = fresh_folder("viewer")
    node = NodeProcess(folder / "node").start()
    orthanc = OrthancProcess(folder / "orthanc").start()
    try:
        assert node.cli("role", "add", ROLE, "--allow", "search,download,documents"
                        ).returncode == 0
        imported = node.cli("import", str(files))
        assert imported.returncode == 0, imported.stderr
        orthanc_ids = orthanc_upload(orthanc, files)
        sops = sorted(p.stem for p in files.glob("*.dcm"))

        first = asyncio.run(first_image_times(node, args.first_image_runs))

        cookie = asyncio.run(session_cookie(node))
        headers = {"Cookie": f"ngv_session={cookie}"}
        base = f"{node.http_url}/ngv/api/studies/{STUDY}/instances"
        cold_urls = [f"{base}/{sop}/frames/1?wc=41&ww=401" for sop in sops]
        node_cold = asyncio.run(fetch_all(cold_urls, args.connections, headers))
        node_warm = asyncio.run(fetch_all(cold_urls, args.connections, headers))
        previews = [f"{orthanc.http_url}/instances/{i}/preview" for i in orthanc_ids]
        orthanc_first = asyncio.run(fetch_all(previews, args.connections, {}))
        orthanc_second = asyncio.run(fetch_all(previews, args.connections, {}))
    finally:
        node.stop()
        orthanc.stop()
    print(f"\n{args.images} CT images 512x512, {args.connections} connections\n")
    print(f"first image drawn: first run {first[0] * 1000:.0f} ms (empty render cache), "
          f"then median {statistics.median(first[1:] or first) * 1000:.0f} ms "
          f"(runs: {', '.join(f'{t * 1000:.0f}' for t in first)} ms)")
    print_table(["contender", "pass", "frames/s"], [
        ["node (PNG, rendered)", "cold", f"{node_cold:.0f}"],
        ["node (PNG, render cache)", "warm", f"{node_warm:.0f}"],
        ["Orthanc /preview (PNG)", "first", f"{orthanc_first:.0f}"],
        ["Orthanc /preview (PNG)", "second", f"{orthanc_second:.0f}"],
    ])
    best = max(orthanc_first, orthanc_second)
    print(f"\nwarm / Orthanc: {node_warm / best:.1f}x (target 3x); "
          f"cold / Orthanc: {node_cold / best:.2f}x (target 1x)")


if __name__ == "__main__":
    main()
