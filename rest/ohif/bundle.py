"""OHIF Viewer's prebuilt app, made ready once to be served by the node under /viewer/.

npm installs `@ohif/app` (pinned in package-lock.json) with its finished build in `dist/`, made
for the root of a site (`/`). The node serves it under a path of its own, so before the first
request the build is copied once into `node_modules/.viewnode/ohif-<build id>/` with:
- every absolute path of the build moved under `/viewer/static/<build id>/` (webpack's public
  path in each bundle, the font URLs of the style sheet); a new OHIF version or a new way of
  preparing gets a new build id, so every static file can be cached as immutable;
- only what a session uses: the segmentation AI (`ort/`, 136 MB), the microscopy viewer, the
  service worker, the sample configurations and customizations, the PWA manifest and icons
  are left out;
- a page of our own (index.html) that loads the node's per-session `app-config.js`;
- a gzip copy beside every text and WebAssembly file, sent to browsers that accept it.

The copy is written to a temporary folder and renamed into place, so workers starting at once
never see half of it; an existing copy is used as it is.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

NODE_MODULES = Path(__file__).resolve().parent.parent.parent / "node_modules"
OHIF_PACKAGE = NODE_MODULES / "@ohif" / "app"
PREPARED_ROOT = NODE_MODULES / ".viewnode"
BASE_PATH = "/viewer"
CONFIG_PATH = f"{BASE_PATH}/app-config.js"
# Raised whenever the preparation below changes what it writes, so that a copy made by an
# older node is not reused.
PREPARATION_VERSION = "1"

LEFT_OUT = frozenset({
    "ort", "dicom-microscopy-viewer", "customizations", "sw.js", "init-service-worker.js",
    "google.js", "app-config.js", "_headers", "_redirects", "serve.json", "silent-refresh.html",
    "oidc-client.min.js", "manifest.json", "index.html", "es6-shim.min.js", "polyfill.min.js",
})
# Of assets/: the favicon and the pictures the app's panels show (volume rendering presets).
ASSETS_KEPT = re.compile(r"^assets/(images/.*|favicon\.ico)$")
COMPRESSED_SUFFIXES = frozenset({".js", ".css", ".wasm", ".svg", ".json", ".html", ".map"})
_PUBLIC_PATH = re.compile(rb'__webpack_require__\.p = "/";')
_CSS_ROOT_URL = re.compile(rb"url\(/(?!/)")
_APP_SCRIPT = re.compile(r'<script defer="defer" src="/(app\.bundle\.[0-9a-f]+\.js)"|'
                         r'<script defer src="/(app\.bundle\.[0-9a-f]+\.js)"')
_APP_STYLE = re.compile(r'<link href="/(app\.bundle[0-9a-f.]*\.css)" rel="stylesheet"')


class OhifMissing(RuntimeError):
    """The npm package is not installed, or is not a build this node knows how to serve."""


@dataclass(frozen=True)
class PreparedApp:
    """A prepared copy: its folder and the URL prefix its static files are served under."""

    root: Path
    build_id: str
    version: str

    @property
    def static_prefix(self) -> str:
        return f"{BASE_PATH}/static/{self.build_id}/"

    @property
    def index_html(self) -> Path:
        return self.root / "index.html"


def installed_version(package: Path = OHIF_PACKAGE) -> str:
    try:
        meta = json.loads((package / "package.json").read_text())
    except (OSError, ValueError) as exc:
        raise OhifMissing(f"OHIF Viewer is not installed at {package}: run ./manage.sh "
                          "(npm ci)") from exc
    return str(meta.get("version", ""))


def build_id(version: str) -> str:
    digest = hashlib.sha256(f"{version}|{PREPARATION_VERSION}|{BASE_PATH}".encode()).hexdigest()
    return f"{version}-{digest[:10]}"


def prepare(package: Path = OHIF_PACKAGE, prepared_root: Path = PREPARED_ROOT) -> PreparedApp:
    """The served copy of the installed OHIF build, made now if it does not exist yet."""
    version = installed_version(package)
    bid = build_id(version)
    target = prepared_root / f"ohif-{bid}"
    app = PreparedApp(target, bid, version)
    if app.index_html.is_file():
        return app
    dist = package / "dist"
    if not (dist / "index.html").is_file():
        raise OhifMissing(f"{dist} has no index.html: not a prebuilt OHIF Viewer")
    prepared_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".ohif-{bid}-", dir=prepared_root))
    try:
        _copy(dist, staging, app)
        try:
            staging.rename(target)
        except OSError:
            # Another process prepared the same build meanwhile; its copy is as good.
            if not app.index_html.is_file():
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    _remove_other_builds(prepared_root, target)
    log.info("OHIF Viewer %s prepared for %s", version, app.static_prefix)
    return app


def _copy(dist: Path, staging: Path, app: PreparedApp) -> None:
    static = staging / "static"
    rewritten = 0
    for source in sorted(dist.rglob("*")):
        relative = source.relative_to(dist).as_posix()
        if source.is_dir() or relative.split("/")[0] in LEFT_OUT:
            continue
        if relative.startswith("assets/") and not ASSETS_KEPT.match(relative):
            continue
        data = source.read_bytes()
        if source.suffix == ".js":
            data, count = _PUBLIC_PATH.subn(
                f'__webpack_require__.p = "{app.static_prefix}";'.encode(), data)
            rewritten += count
        elif source.suffix == ".css":
            data = _CSS_ROOT_URL.sub(f"url({app.static_prefix}".encode(), data)
        _write(static / relative, data)
    if rewritten == 0:
        raise OhifMissing("the OHIF build sets no webpack public path: not a known build")
    _write(staging / "index.html", index_page(
        (dist / "index.html").read_text(encoding="utf-8"), app).encode())


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if path.suffix in COMPRESSED_SUFFIXES and len(data) > 1024:
        packed = gzip.compress(data, compresslevel=9, mtime=0)
        if len(packed) < len(data):
            path.with_name(path.name + ".gz").write_bytes(packed)


def index_page(original: str, app: PreparedApp) -> str:
    """The viewer's page: OHIF's app bundle and style sheet from the build, the node's
    app-config.js before them, and nothing else (no manifest, service worker or touch icons)."""
    script = _APP_SCRIPT.search(original)
    style = _APP_STYLE.search(original)
    if script is None or style is None:
        raise OhifMissing("the OHIF build's index.html names no app bundle: not a known build")
    static = app.static_prefix
    return (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"UTF-8\">"
        "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
        "<meta name=\"referrer\" content=\"no-referrer\">"
        "<meta name=\"theme-color\" content=\"#000000\"><title>Viewer</title>"
        f"<link rel=\"icon\" href=\"{static}assets/favicon.ico\">"
        f"<script src=\"{CONFIG_PATH}\"></script>"
        f"<script defer src=\"{static}{script.group(1) or script.group(2)}\"></script>"
        f"<link href=\"{static}{style.group(1)}\" rel=\"stylesheet\"></head>"
        "<body><div id=\"react-portal\"></div><div id=\"root\"></div></body></html>\n")


def _remove_other_builds(prepared_root: Path, keep: Path) -> None:
    """Copies of older builds (another OHIF version) are never served again."""
    for entry in prepared_root.iterdir():
        if entry != keep and entry.is_dir() and entry.name.startswith("ohif-"):
            shutil.rmtree(entry, ignore_errors=True)


def served_file(app: PreparedApp, relative: str) -> Path | None:
    """The prepared static file a URL path names, or None; never a path outside the copy."""
    if not relative or relative.startswith("/") or "\\" in relative or "\0" in relative:
        return None
    parts = relative.split("/")
    if any(part in ("", ".", "..") or part.startswith(".") for part in parts):
        return None
    path = app.root / "static" / os.path.join(*parts)
    return path if path.is_file() and not path.name.endswith(".gz") else None
