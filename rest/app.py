"""The aiohttp application factory: state, middlewares, and one route table per API family."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from node.retention import StudyDeletions
from node.services import NodeServices
from node.viewing import RetrievalRegistry, TokenIssuer
from rest import (
    annotation_routes,
    dicomweb,
    health,
    iso_route,
    lut,
    metrics,
    multimonitor,
    obscurl,
    obscurl_post,
    ohif,
    openapi,
    slide_routes,
    study_deletion,
    viewer,
    viewer_session,
)
from rest.client_address import trusted_networks
from rest.middleware import errors_as_json, require_api_key, routing_headers, security_headers
from rest.same_origin import require_same_origin
from rest.state import (
    API_KEY,
    DELETIONS,
    INSTANCE_NAME,
    ISSUER,
    RETRIEVALS,
    SERVICES,
    TRUSTED_PROXIES,
)

__all__ = ["API_KEY", "SERVICES", "create_app"]

ROUTE_TABLES = (obscurl.routes, multimonitor.routes, viewer_session.routes, openapi.routes,
                iso_route.routes,
                lut.routes, slide_routes.routes, obscurl_post.routes,
                annotation_routes.routes, health.routes, study_deletion.routes)


async def _viewing(app: web.Application) -> AsyncIterator[None]:
    # Background jobs are shared through the database: every instance takes part from the start.
    app[RETRIEVALS].start()
    app[ISSUER].start()
    app[DELETIONS].start()
    yield
    await app[DELETIONS].close()
    await app[ISSUER].close()
    await app[RETRIEVALS].close()


def create_app(services: NodeServices, api_key: str) -> web.Application:
    if not api_key:
        raise ValueError("api_key: the HTTP API needs a non-empty API key")
    app = web.Application(
        client_max_size=services.config.http.max_body_bytes,
        # errors_as_json is outermost, so a refused key and a handler's error look alike.
        # metrics.timed is outermost of all: what a client waited for, and the status it got.
        middlewares=[metrics.timed, errors_as_json, dicomweb.preflight, require_api_key,
                     require_same_origin],
    )
    retrievals = RetrievalRegistry(services)
    app[SERVICES] = services
    app[API_KEY] = api_key
    app[RETRIEVALS] = retrievals
    app[DELETIONS] = StudyDeletions(services)
    app[ISSUER] = TokenIssuer(services, retrievals)
    app[INSTANCE_NAME] = services.config.instance_name
    app[TRUSTED_PROXIES] = trusted_networks(services.config.http.trusted_proxies)
    app.cleanup_ctx.append(_viewing)
    app.on_response_prepare.append(routing_headers)
    app.on_response_prepare.append(dicomweb.cors_headers)
    app.on_response_prepare.append(security_headers)
    slide_routes.setup(app)
    viewer.setup(app)
    dicomweb.setup(app)
    ohif.setup(app)
    obscurl_post.setup(app)
    metrics.setup(app)
    for table in ROUTE_TABLES:
        app.add_routes(table)
    return app
