"""The viewer: OHIF's time from the token to the first image in headless Chromium, beside the
same OHIF build on Orthanc's DICOMweb.

    .venv/bin/python -m bench.viewer                   # OHIF, 120 CT 512x512, node and Orthanc
    .venv/bin/python -m bench.viewer --images 300 --runs 5

OHIF (issue 20): both peers hold the same files (node: `python -m node import`, Orthanc: REST
upload, DICOMweb plugin with its defaults). The node's page is its own (/ngv?q=TOKEN: redeem,
redirect, page, app-config.js, OHIF, its DICOMweb); Orthanc's is the same prepared OHIF build
served by this script (aiohttp, the node's headers: gzip, immutable) with the node's data source
configuration pointed at Orthanc's /dicom-web (Chromium without web security, since Orthanc
sends no CORS headers). The time runs from `page.goto` to the viewport's overlay showing the
window, i.e. the first image drawn. Cold: a new browser context (empty cache); warm: the same
context again (OHIF's files from the browser cache), with a new token for the node. Targets:
at most Orthanc's time; warm under 1.5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import urllib.request
from pathlib import Path

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=120)
    parser.add_argument("--runs", type=int, default=3, help="runs per peer")
    args = parser.parse_args()
    bench_ohif(args.images, args.runs)


if __name__ == "__main__":
    main()
