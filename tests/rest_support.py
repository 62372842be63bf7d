"""The HTTP app in-process over real services, for the tests/test_rest_* modules."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select, update

from node.config import Config, config_from_dict
from node.errors import Conflict
from node.index.viewing_models import ViewingContext
from node.process.runtime import open_services
from node.services import NodeServices
from node.viewing.roles import add_role
from node.viewing.token_secrets import token_key
from rest.app import create_app
from rest.state import RETRIEVALS
from tests.clock import MovableClock
from tests.factory import StudySpec, write_study
from tests.index_db import database_url
from tests.peers import DCMTK_QUERY_CALLERS, free_port, toml_value

API_KEY = "rest-test-key-0123456789"
ROLE = "physician"


@dataclass
class Api:
    client: TestClient[Any, Any]
    services: NodeServices
    folder: Path
    # The app's clock: a test moves it to end a token's or a session's lifetime.
    clock: MovableClock

    async def get(self, path: str, params: Any = None, key: str | None = API_KEY,
                  headers: dict[str, str] | None = None, **kwargs: Any) -> ClientResponse:
        sent = dict(headers or {})
        if key is not None:
            sent["Authorization"] = key
        return await self.client.get(path, params=params, headers=sent, **kwargs)

    async def token(self, params: Any) -> str:
        response = await self.get("/ngv/obscurl", params)
        text = await response.text()
        assert response.status == 200, text
        return text

    async def redeem(self, url_or_token: str) -> tuple[ClientResponse, str | None]:
        """Open /ngv?q=TOKEN as a fresh browser would; the session cookie, if one was set."""
        path = url_or_token if url_or_token.startswith("/") else f"/ngv?q={url_or_token}"
        response = await self.client.get(path, allow_redirects=False)
        morsel = response.cookies.get("ngv_session")
        # Tests pass the cookie explicitly, so a request without it really has none.
        self.client.session.cookie_jar.clear()
        return response, morsel.value if morsel is not None else None

    async def session_headers(self, params: Any) -> dict[str, str]:
        """A fresh viewer session for a token with `params`, as the Cookie header."""
        _, cookie = await self.redeem(await self.token(params))
        assert cookie is not None
        return {"Cookie": f"ngv_session={cookie}"}

    async def context(self, url_or_token: str) -> dict[str, Any]:
        """Redeem, then make the viewer's data request with the session cookie."""
        response, cookie = await self.redeem(url_or_token)
        assert response.status == 302, await response.text()
        assert cookie is not None
        data = await self.client.get(
            "/ngv/api/context", headers={"Cookie": f"ngv_session={cookie}"})
        assert data.status == 200, await data.text()
        result: dict[str, Any] = await data.json()
        return result

    async def set_options(self, token: str, options: dict[str, Any]) -> None:
        """Options only the POST API sets (collapsePreviews), written into the stored context."""
        async with self.services.sessions() as session:
            stored = await session.scalar(select(ViewingContext.options).where(
                ViewingContext.token_hash == token_key(token)))
            assert stored is not None
            await session.execute(update(ViewingContext).where(
                ViewingContext.token_hash == token_key(token)).values(
                    options={**stored, **options}))
            await session.commit()

    async def ingest(self, spec: StudySpec) -> None:
        folder = self.folder / "studies" / spec.study_uid
        for path in write_study(folder, spec):
            await self.services.ingestor.ingest_copy(path, "import")

    async def retrievals_done(self) -> None:
        await self.client.app[RETRIEVALS].wait_idle()


def config_dict(source_nodes: list[dict[str, Any]] | None = None,
                **sections: dict[str, Any]) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "node": {"ae_title": "VIEWNODE", "data_dir": "data"},
        "dicom": {"bind": "127.0.0.1", "port": free_port(), "query_timeout": 3.0,
                  "retrieve_timeout": 30.0, "query_from": list(DCMTK_QUERY_CALLERS)},
        "storage": {"fsync": False},
    }
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    if source_nodes:
        raw["source_nodes"] = source_nodes
    return raw


def write_config(folder: Path, **sections: dict[str, Any]) -> Path:
    """A node.toml for the CLI commands, with the same settings running_app uses."""
    raw = config_dict(None, **sections)
    url = database_url(folder / raw["node"]["data_dir"])
    if url is not None and "database" not in raw:
        raw["database"] = {"url": url}
    lines = []
    for name, values in raw.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {toml_value(value)}" for key, value in values.items()]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "node.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@asynccontextmanager
async def running_app(folder: Path, source_nodes: list[dict[str, Any]] | None = None,
                      config: Config | None = None,
                      **sections: dict[str, Any]) -> AsyncIterator[Api]:
    folder.mkdir(parents=True, exist_ok=True)
    if config is None:
        config = config_from_dict(config_dict(source_nodes, **sections), base_dir=folder)
    clock = MovableClock()
    async with open_services(config, clock=clock) as services:
        # Instances sharing one database share its roles too.
        with contextlib.suppress(Conflict):
            await add_role(services.sessions, ROLE,
                           ["search", "download", "documents", "layers", "annotations"])
        app = create_app(services, API_KEY)
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            yield Api(client, services, folder, clock)
