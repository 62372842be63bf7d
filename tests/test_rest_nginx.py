"""deploy/nginx.conf in front of two instances: one sticky value, one instance."""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from node.config import config_from_dict
from tests.factory import uid
from tests.peers import REPO, free_port, wait_for_port
from tests.rest_support import API_KEY, ROLE, Api, config_dict, running_app

PARAMS = {"username": "janedoe", "role": ROLE, "studyUID": uid(9501)}


def nginx_config(folder: Path, listen: int, upstreams: list[int]) -> Path:
    """The shipped file with only the addresses, the log and the temporary folders changed."""
    text = (REPO / "deploy" / "nginx.conf").read_text()
    servers = "\n".join(f"        server 127.0.0.1:{port};" for port in upstreams)
    text, count = re.subn(r"(?m)^\s*server 127\.0\.0\.1:\d+[^;]*;\n", "", text)
    assert count >= 2
    text = text.replace("keepalive 32;", f"keepalive 32;\n{servers}")
    text = text.replace("listen 80;", f"listen 127.0.0.1:{listen};")
    text = re.sub(r"access_log \S+", f"access_log {folder / 'access.log'}", text)
    temp = "\n".join(f"    {name}_temp_path {folder / name};"
                     for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    text = text.replace("http {", f"http {{\n{temp}", 1)
    path = folder / "nginx.conf"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
async def instances(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[list[Api]]:
    """Two instances over one database and storage, as the deployment runs them."""
    folder = tmp_path_factory.mktemp("instances")
    # Trusting nginx on loopback, as deploy/instance-*.toml do.
    configs = [config_from_dict(config_dict(http={"port": port,
                                                  "trusted_proxies": ["127.0.0.1"]}),
                                base_dir=folder)
               for port in (18181, 18182)]
    async with running_app(folder, config=configs[0]) as first, \
            running_app(folder, config=configs[1]) as second:
        yield [first, second]


@pytest.fixture(scope="module")
def nginx_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("nginx")


@pytest.fixture(scope="module")
def proxy(instances: list[Api], nginx_folder: Path) -> Iterator[str]:
    folder = nginx_folder
    port = free_port()
    upstreams = [api.client.port for api in instances]
    assert all(upstreams)
    conf = nginx_config(folder, port, [p for p in upstreams if p is not None])
    proc = subprocess.Popen(
        ["nginx", "-c", str(conf), "-p", str(folder),
         "-g", f"daemon off; pid {folder / 'nginx.pid'}; error_log {folder / 'error.log'};"],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, proc=proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


async def instance_for(session: aiohttp.ClientSession, proxy: str, sticky: str | None) -> str:
    params = dict(PARAMS, **({"sticky": sticky} if sticky else {}))
    async with session.get(f"{proxy}/ngv/obscurl", params=params,
                           headers={"Authorization": API_KEY}) as response:
        assert response.status == 200, await response.text()
        if sticky:
            assert response.headers["X-Sticky"] == sticky
        return response.headers["X-Node-Instance"]


async def test_each_sticky_value_always_reaches_the_same_instance(proxy: str) -> None:
    async with aiohttp.ClientSession() as session:
        seen: dict[str, str] = {}
        for round_ in range(3):
            for i in range(20):
                name = await instance_for(session, proxy, f"sticky-{i}")
                assert seen.setdefault(f"sticky-{i}", name) == name, f"round {round_}"
    # Consistent hashing spreads the values over both instances.
    assert len(set(seen.values())) == 2


async def test_requests_without_sticky_are_spread(proxy: str) -> None:
    async with aiohttp.ClientSession() as session:
        names = Counter([await instance_for(session, proxy, None) for _ in range(30)])
    assert len(names) == 2


async def test_access_log_carries_no_query_string(proxy: str, nginx_folder: Path) -> None:
    async with aiohttp.ClientSession() as session:
        await instance_for(session, proxy, "logged-sticky")
    text = (nginx_folder / "access.log").read_text()
    assert "GET /ngv/obscurl" in text
    assert "janedoe" not in text and "logged-sticky" not in text and API_KEY not in text


async def test_the_multimonitor_urls_are_redeemed_where_their_sticky_value_goes(
    proxy: str
) -> None:
    """The first hop is sticky too: the URLs carry the value, so that nginx sends the token's
    redemption to the instance that the viewer's later requests reach."""
    params = {"username": "janedoe", "role": ROLE, "patientID": "PID-NGINX",
              "numberOfMonitors": "2", "idIssuer": "NONE"}
    async with aiohttp.ClientSession() as session:
        for i in range(8):
            sticky = f"first-hop-{i}"
            async with session.get(f"{proxy}/ngv/multimonitor-api",
                                   params={**params, "sticky": sticky},
                                   headers={"Authorization": API_KEY}) as response:
                assert response.status == 200, await response.text()
                issued_on = response.headers["X-Node-Instance"]
                urls = await response.json()
            for url in urls.values():
                async with session.get(f"{proxy}{url}", allow_redirects=False) as redeemed:
                    assert redeemed.status == 302, await redeemed.text()
                    assert redeemed.headers["X-Node-Instance"] == issued_on, (sticky, url)


async def test_a_state_change_from_the_proxys_own_origin_passes_the_origin_check(
        proxy: str) -> None:
    """The browser's origin has nginx's port; the node compares it with the host nginx
    forwards (X-Forwarded-Host), so only another origin is refused."""
    async with aiohttp.ClientSession() as session:
        for origin, status in ((proxy, 401), ("http://attacker.example", 403)):
            async with session.put(f"{proxy}/ngv/slides/S-1/layers/Margins", json={},
                                   headers={"Origin": origin}) as response:
                # 401: past the origin check, refused for want of a session.
                assert response.status == status, (origin, await response.text())
