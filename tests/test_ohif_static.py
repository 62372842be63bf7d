"""OHIF's prepared build as the node serves it: under /viewer/static/<build id>/, compressed,
cached as immutable, only what a session uses, nothing outside the prepared copy."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from rest.ohif import OHIF
from rest.ohif.bundle import PreparedApp
from tests.rest_support import Api, running_app

REPOSITORY = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
async def api(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    async with running_app(tmp_path_factory.mktemp("ohif-static")) as api:
        yield api


def prepared(api: Api) -> PreparedApp:
    app = api.client.app[OHIF].app
    assert app is not None
    return app


def app_bundle(app: PreparedApp) -> str:
    return next(p.name for p in (app.root / "static").glob("app.bundle.*.js"))


async def test_static_files_are_gzipped_and_immutable(api: Api) -> None:
    app = prepared(api)
    path = f"{app.static_prefix}{app_bundle(app)}"
    response = await api.client.get(path, headers={"Accept-Encoding": "gzip"},
                                    auto_decompress=False)
    assert response.status == 200
    assert response.headers["Content-Encoding"] == "gzip"
    assert response.headers["Content-Type"].endswith("/javascript")
    assert "immutable" in response.headers["Cache-Control"]
    body = await response.read()
    assert len(body) < (app.root / "static" / app_bundle(app)).stat().st_size / 3
    plain = await api.client.get(path, headers={"Accept-Encoding": "identity"})
    assert "Content-Encoding" not in plain.headers
    assert f'__webpack_require__.p = "{app.static_prefix}"' in await plain.text()


async def test_the_page_loads_the_build_under_its_own_prefix(api: Api) -> None:
    app = prepared(api)
    page = app.index_html.read_text()
    assert f'src="{app.static_prefix}{app_bundle(app)}"' in page
    assert "init-service-worker" not in page and "manifest" not in page
    css = (app.root / "static" / "app.bundle.css").read_text()
    assert "url(/" not in css.replace(f"url({app.static_prefix}", "")


@pytest.mark.parametrize("path", [
    "ort/ort-wasm-simd-threaded.wasm", "dicom-microscopy-viewer/dicomMicroscopyViewer.min.js",
    "sw.js", "app-config.js", "../index.html", "..%2Findex.html", "assets/../index.html",
    ".hidden"])
async def test_what_a_session_does_not_use_is_not_served(api: Api, path: str) -> None:
    app = prepared(api)
    response = await api.client.get(f"{app.static_prefix}{path}")
    # 404, or (a path the client itself normalised out of static/) the page's refusal
    # without a session: never a file.
    assert response.status in (401, 404), path
    assert response.content_type != "text/javascript", path


async def test_another_build_id_is_not_found(api: Api) -> None:
    app = prepared(api)
    response = await api.client.get(f"/viewer/static/0.0.0-0000000000/{app_bundle(app)}")
    assert response.status == 404


def test_the_prepared_copy_leaves_out_the_segmentation_ai_and_microscopy(api: Api) -> None:
    app = prepared(api)
    names = {p.relative_to(app.root / "static").parts[0]
             for p in (app.root / "static").iterdir()}
    assert not names & {"ort", "dicom-microscopy-viewer", "sw.js", "customizations"}
    size = sum(p.stat().st_size for p in app.root.rglob("*") if not p.name.endswith(".gz"))
    assert size < 80 * 1024 * 1024, size


def test_the_repository_holds_none_of_ohifs_files() -> None:
    tracked = subprocess.run(["git", "ls-files"], cwd=REPOSITORY, capture_output=True,
                             text=True, check=True).stdout.splitlines()
    assert not [name for name in tracked if "node_modules" in name or "app.bundle" in name]
