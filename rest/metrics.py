"""GET /metrics (Prometheus text), and the timing of every HTTP request.

The route needs the API key unless `[http] metrics_public = true`. Requests are timed by route
template (`/dicom-web/studies/{study}`), never by the path sent, so that no UID, token or
other value a client sends becomes a label; a path no route matches is "unmatched".
"""

from __future__ import annotations

import time

from aiohttp import web

from node import metrics
from node.config import StorageSection
from node.index.node_figures import NodeFigures, node_figures
from node.metrics.exposition import Figure
from rest.middleware import Handler, public
from rest.state import SERVICES

UNMATCHED = "unmatched"


@web.middleware
async def timed(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost: the time and status a client sees, errors mapped to JSON included."""
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else UNMATCHED
        if request.match_info.http_exception is not None:
            route = UNMATCHED
        metrics.http_request(request.method, route, status, time.perf_counter() - started)


async def metrics_text(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    figures = await node_figures(services.engine)
    body, content_type = metrics.render(_gauges(figures, services.config.storage))
    # aiohttp wants the charset apart from the media type.
    media_type, _, charset = content_type.partition("; charset=")
    return web.Response(body=body, content_type=media_type, charset=charset or None,
                        headers={"Cache-Control": "no-store"})


def _gauges(figures: NodeFigures, storage: StorageSection) -> list[Figure]:
    stored = figures.stored
    return [
        ("viewnode_storage_limit_bytes", "[storage] max_bytes (0: no limit).", (),
         [((), float(storage.max_bytes))]),
        ("viewnode_storage_limit_studies", "[storage] max_studies (0: no limit).", (),
         [((), float(storage.max_studies))]),
        ("viewnode_stored_bytes", "Bytes of the stored instances (the index's sum).", (),
         [((), float(stored.bytes))]),
        ("viewnode_stored_studies", "Studies in the index.", (), [((), float(stored.studies))]),
        ("viewnode_stored_instances", "Instances in the index.", (),
         [((), float(stored.instances))]),
        ("viewnode_viewer_sessions", "Viewer sessions not expired or revoked.", (),
         [((), float(figures.live_sessions))]),
        ("viewnode_jobs", "Background jobs (retrieve, preload, post-import, ...) by state.",
         ("kind", "state"),
         [((kind, state), float(count)) for (kind, state), count in sorted(figures.jobs.items())]),
    ]


async def public_metrics_text(request: web.Request) -> web.Response:
    return await metrics_text(request)


def setup(app: web.Application) -> None:
    handler = (public(public_metrics_text) if app[SERVICES].config.http.metrics_public
               else metrics_text)
    app.router.add_get("/metrics", handler, allow_head=False)
