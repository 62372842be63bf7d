"""Schemathesis against /api/openapi.json: no request generated from the document, valid or
not, makes the node answer with a 5xx.

The app runs in-process (real services on a temporary folder) in a thread of its own, with a
study indexed, a redeemed token's session cookie and the API key sent on every request, so
that the generated requests reach the handlers' work and not only the doors. Examples are
derandomized and bounded per operation, so the run takes a fixed, short time.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.core.result import Err
from schemathesis.schemas import APIOperation

from rest.openapi import DOCUMENT
from tests.factory import StudySpec, uid
from tests.rest_support import API_KEY, ROLE, running_app

EXAMPLES_PER_OPERATION = 12


@schemathesis.serializer("multipart/related")
def _multipart_related(_context: Any, value: Any) -> bytes:
    """STOW-RS bodies: the generated value as the raw body (the node must answer 4xx, not
    5xx, to whatever it is)."""
    if isinstance(value, bytes):
        return value
    return value.encode() if isinstance(value, str) else json.dumps(value).encode()


SCHEMA = schemathesis.openapi.from_dict(DOCUMENT)


def _operations() -> dict[str, APIOperation]:
    operations = {}
    for result in SCHEMA.get_all_operations():
        if isinstance(result, Err):
            raise result.err()  # the document itself is broken
        operations[result.ok().label] = result.ok()
    return operations


OPERATIONS = _operations()
STUDY = uid(9701)


def _has_inputs(label: str) -> bool:
    """Whether the operation takes parameters or a body (else no invalid request exists)."""
    method, path = label.split(" ", 1)
    item = DOCUMENT["paths"][path]
    return bool(item.get("parameters") or item[method.lower()].get("parameters")
                or item[method.lower()].get("requestBody"))


CASES = [(label, GenerationMode.POSITIVE) for label in sorted(OPERATIONS)] + [
    (label, GenerationMode.NEGATIVE) for label in sorted(OPERATIONS) if _has_inputs(label)]


@dataclass
class Served:
    base_url: str
    cookie: str


class AppThread(threading.Thread):
    """The app on its own event loop, so that the synchronous generated calls can reach it."""

    def __init__(self, folder: Path) -> None:
        super().__init__(name="schemathesis-app", daemon=True)
        self.folder = folder
        self.ready = threading.Event()
        self.served: Served | None = None
        self.failure: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported by the fixture
            self.failure = exc
            self.ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        async with running_app(self.folder) as api:
            await api.ingest(StudySpec(study_uid=STUDY, patient_id="PID-FUZZ"))
            token = await api.token({"username": "fuzz", "role": ROLE, "studyUID": STUDY})
            _response, cookie = await api.redeem(token)
            assert cookie is not None
            self.served = Served(str(api.client.make_url("")).rstrip("/"), cookie)
            self.ready.set()
            await self._stopping.wait()

    def stop(self) -> None:
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self.join(60)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    thread = AppThread(tmp_path_factory.mktemp("schemathesis"))
    thread.start()
    thread.ready.wait(60)
    if thread.failure is not None or thread.served is None:
        raise RuntimeError("the app did not start") from thread.failure
    yield thread.served
    thread.stop()


@pytest.fixture(scope="module")
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


@pytest.mark.parametrize(("label", "mode"), CASES, ids=[
    f"{label} {'valid' if mode == GenerationMode.POSITIVE else 'invalid'}"
    for label, mode in CASES])
def test_no_generated_request_gets_a_5xx(label: str, mode: GenerationMode, served: Served,
                                         http: requests.Session) -> None:
    operation = OPERATIONS[label]

    @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True,
              database=None, suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def check(data: Any) -> None:
        case = data.draw(operation.as_strategy(generation_mode=mode))
        response = case.call(base_url=served.base_url, session=http, timeout=30,
                             headers={"Authorization": API_KEY},
                             cookies={"ngv_session": served.cookie})
        assert response.status_code < 500, (
            f"{response.status_code} for {case.as_curl_command()}: {response.text[:300]}")

    try:
        check()
    except Unsatisfiable:
        # Schemathesis can build no request of this kind here (say, an invalid path
        # parameter that still makes a URL): there is nothing to send.
        pytest.skip(f"no {mode.value} request can be generated for {label}")
