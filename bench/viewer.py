"""The viewer: OHIF's time from the token to the first image in headless Chromium, beside the
same OHIF build on Orthanc's DICOMweb; and the hand-written viewer's first image and rendered
frames per second beside Orthanc's /instances/{id}/preview.

    .venv/bin/python -m bench.viewer                   # OHIF, 120 CT 512x512, node and Orthanc
    .venv/bin/python -m bench.viewer --images 300 --runs 5
    .venv/bin/python -m bench.viewer --part hand-written --images 300 --connections 4

OHIF (issue 20): both peers hold the same files (node: `python -m node import`, Orthanc: REST
upload, DICOMweb plugin with its defaults). The node's page is its own (/ngv?q=TOKEN: redeem,
redirect, page, app-config.js, OHIF, its DICOMweb); Orthanc's is the same prepared OHIF build
served by this script (aiohttp, the node's headers: gzip, immutable) with the node's data source
configuration pointed at Orthanc's /dicom-web (Chromium without web security, since Orthanc
sends no CORS headers). The time runs from `page.goto` to the viewport's overlay showing the
window, i.e. the first image drawn. Cold: a new browser context (empty cache); warm: the same
context again (OHIF's files from the browser cache), with a new token for the node. Targets:
at most Orthanc's time; warm under 1.5 s.

The node runs as `python -m node serve` (default settings), Orthanc 1.10 with its defaults;
both hold the same files (node: `python -m node import`, Orthanc: REST upload). The first
image time runs from `page.goto(token URL)` (redeem, redirect, page, scripts, series list,
first frame) to the viewport reporting a drawn frame; the first run finds an empty render
cache, later runs (new tokens) find the frames that the first one rendered.
Frames per second: every image of the study requested once by N concurrent connections.
Cold: a window that was never asked for (nothing cached); warm: the same requests again.
Orthanc has no preview cache: its second pass is its warm figure.

The hand-written viewer (issue 5): first image under 1 s; warm at least 3x Orthanc's preview;
cold at least equal.
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
from aiohttp import web

from bench.common import fresh_folder, print_table
from bench.dataset import OUT
from rest.ohif.app_config import app_config_script
from rest.ohif.bundle import PreparedApp, prepare, served_file
from rest.ohif.routes import IMMUTABLE
from rest.viewer.grants import Grant
from tests.browser import CHROMIUM, FLAGS
from tests.factory import StudySpec
from tests.peers import NodeProcess, OrthancProcess, free_port
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


# -- OHIF on the node and on Orthanc -----------------------------------------------------------

DRAWN = ("() => { const o = document.querySelector(\"[data-cy='viewport-overlay-bottom-left']\");"
         " return !!o && o.textContent.includes('W:'); }")


def orthanc_config_script(orthanc: OrthancProcess, app: PreparedApp) -> str:
    """The node's app-config.js for a session that may do everything, pointed at Orthanc."""
    context = {"options": {}, "features": {"search": False, "download": True,
                                           "documents": True}}
    grant = Grant(0, context)
    return app_config_script(grant, app, f"{orthanc.http_url}/dicom-web")


async def serve_ohif_for(orthanc: OrthancProcess, app: PreparedApp) -> web.AppRunner:
    """OHIF's prepared build on a port of its own, configured for Orthanc."""
    config = orthanc_config_script(orthanc, app)

    async def page(_: web.Request) -> web.StreamResponse:
        return web.FileResponse(app.index_html, headers={"Cache-Control": "no-store"})

    async def config_script(_: web.Request) -> web.Response:
        return web.Response(text=config, content_type="text/javascript",
                            headers={"Cache-Control": "no-store"})

    async def static(request: web.Request) -> web.StreamResponse:
        path = served_file(app, request.match_info["path"])
        if path is None:
            raise web.HTTPNotFound()
        return web.FileResponse(path, headers={"Cache-Control": IMMUTABLE,
                                               "Vary": "Accept-Encoding"})

    server = web.Application()
    server.router.add_get(f"/viewer/static/{app.build_id}/{{path:.+}}", static)
    server.router.add_get("/viewer/app-config.js", config_script)
    server.router.add_get("/viewer/{route:.*}", page)
    runner = web.AppRunner(server, access_log=None)
    await runner.setup()
    return runner


async def ohif_first_images(node: NodeProcess, orthanc: OrthancProcess, runs: int
                            ) -> dict[str, list[float]]:
    """Seconds to the first image: node and Orthanc, cold and warm, taking turns."""
    from playwright.async_api import Page, async_playwright

    app = prepare()
    runner = await serve_ohif_for(orthanc, app)
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    orthanc_page = f"http://127.0.0.1:{port}/viewer/viewer?StudyInstanceUIDs={STUDY}"
    times: dict[str, list[float]] = {key: [] for key in (
        "node cold", "node warm", "orthanc cold", "orthanc warm")}

    async def timed(page: Page, url: str) -> float:
        started = time.perf_counter()
        await page.goto(url)
        await page.wait_for_function(DRAWN, timeout=120_000)
        return time.perf_counter() - started

    try:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=CHROMIUM, args=[*FLAGS, "--disable-web-security"])
            try:
                for _ in range(runs):
                    for peer in ("node", "orthanc"):
                        context = await browser.new_context(
                            viewport={"width": 1920, "height": 1080})
                        page = await context.new_page()
                        for state in ("cold", "warm"):
                            url = (f"{node.http_url}/ngv?q={token(node)}" if peer == "node"
                                   else orthanc_page)
                            times[f"{peer} {state}"].append(await timed(page, url))
                            await page.goto("about:blank")
                        await context.close()
            finally:
                await browser.close()
    finally:
        await runner.cleanup()
    return times


def bench_ohif(images: int, runs: int) -> None:
    files = study_files(images)
    folder = fresh_folder("viewer-ohif")
    node = NodeProcess(folder / "node").start()
    orthanc = OrthancProcess(folder / "orthanc").start()
    try:
        assert node.cli("role", "add", ROLE, "--allow", "search,download,documents"
                        ).returncode == 0
        imported = node.cli("import", str(files))
        assert imported.returncode == 0, imported.stderr
        orthanc_upload(orthanc, files)
        times = asyncio.run(ohif_first_images(node, orthanc, runs))
    finally:
        node.stop()
        orthanc.stop()
    print(f"\nOHIF {prepare().version}, {images} CT images 512x512, token (node) or page "
          f"(Orthanc) to the first image drawn, {runs} runs each\n")
    rows = []
    for key, values in times.items():
        rows.append([key, f"{statistics.median(values) * 1000:.0f}",
                     f"{min(values) * 1000:.0f}", f"{values[0] * 1000:.0f}",
                     ", ".join(f"{v * 1000:.0f}" for v in values)])
    print_table(["peer and cache", "median ms", "best ms", "first run ms", "runs ms"], rows)
    for state in ("cold", "warm"):
        ratio = statistics.median(times[f"node {state}"]) / statistics.median(
            times[f"orthanc {state}"])
        print(f"{state}: node / Orthanc {ratio:.2f} (target at most 1)")


# -- the hand-written viewer ------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("ohif", "hand-written"), default="ohif")
    parser.add_argument("--images", type=int)
    parser.add_argument("--runs", type=int, default=3, help="OHIF: runs per peer")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--first-image-runs", type=int, default=5)
    args = parser.parse_args()
    if args.part == "ohif":
        bench_ohif(args.images or 120, args.runs)
        return
    args.images = args.images or 300
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
