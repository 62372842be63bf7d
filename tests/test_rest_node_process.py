"""The token API through `python -m node serve`: the session's node, with Orthanc as its source
node, retrieving by C-MOVE into its own SCP."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.factory import StudySpec, uid, write_study
from tests.peers import NodeProcess, OrthancProcess

REMOTE = StudySpec(study_uid=uid(9601), patient_id="PID-NODE", accession="ACC-NODE")


@pytest.fixture(scope="module")
def node_with_role(node: NodeProcess) -> Iterator[NodeProcess]:
    result = node.cli("role", "add", "viewer-e2e", "--allow", "search")
    assert result.returncode == 0, result.stderr
    yield node
    node.cli("role", "remove", "viewer-e2e")


async def test_remote_study_is_moved_into_the_serving_node(
    node_with_role: NodeProcess, orthanc: OrthancProcess, tmp_path: Path
) -> None:
    node = node_with_role
    for path in write_study(tmp_path, REMOTE):
        orthanc.upload(path)
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(node.http_url, cookie_jar=jar) as http:
        async with http.get("/ngv/obscurl", headers={"Authorization": node.api_key}, params={
                "username": "e2e", "role": "viewer-e2e", "studyUID": REMOTE.study_uid}) as r:
            token = await r.text()
            assert r.status == 200 and re.fullmatch("[0-9a-f]{64}", token), token
            assert r.headers["X-Node-Instance"]
        async with http.get(f"/ngv?q={token}", allow_redirects=False) as r:
            assert r.status == 302
        state = ""
        for _ in range(100):
            async with http.get("/ngv/api/context") as r:
                assert r.status == 200
                study = (await r.json())["studies"][0]
            state = study["state"]
            if state not in ("pending", "retrieving"):
                break
            await asyncio.sleep(0.1)
        assert study["source"] == orthanc.ae_title
        assert state == "available", study["message"]
    # The node's log says what happened without naming the patient.
    assert "PID-NODE" not in node.log_text()


async def test_serving_node_refuses_a_missing_key(node: NodeProcess) -> None:
    async with aiohttp.ClientSession(node.http_url) as http, \
            http.get("/ngv/obscurl", params={"username": "x"}) as r:
        assert r.status == 401
        assert "error" in await r.json()


async def test_serving_node_logs_no_query_string(node_with_role: NodeProcess) -> None:
    """The access log keeps patient identifiers out: only the audit table holds them."""
    marker = "token refused (unknown)"
    marked = node_with_role.log_text().count(marker)
    async with aiohttp.ClientSession(node_with_role.http_url) as http:
        async with http.get(
                "/ngv/obscurl", headers={"Authorization": node_with_role.api_key},
                params={"username": "e2e", "role": "viewer-e2e", "patientID": "PID-LOGGED-NOT",
                        "accNum": "ACC-LOGGED-NOT", "sourceNodes": ""}) as r:
            assert r.status == 200, await r.text()
        # The request's access line is written after its answer; the connection's next request
        # is served after that, so once its log line is in, so is all the first one logged.
        async with http.get(f"/ngv?q={'0' * 64}") as r:
            assert r.status == 404
    deadline = time.monotonic() + 10
    while (log := node_with_role.log_text()).count(marker) == marked:
        assert time.monotonic() < deadline, "the second request left no log line"
        await asyncio.sleep(0.02)
    assert "PID-LOGGED-NOT" not in log and "ACC-LOGGED-NOT" not in log
