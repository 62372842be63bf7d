"""deploy/: the compose file's structure (Docker cannot run here), the instance configurations it
mounts, and the systemd unit."""

from __future__ import annotations

import configparser
import subprocess
from pathlib import Path
from typing import Any

import yaml

from node.config import load_config
from tests.peers import REPO

DEPLOY = REPO / "deploy"


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return loaded


def test_compose_runs_postgresql_two_instances_and_nginx() -> None:
    services = compose()["services"]
    assert set(services) == {"postgres", "node-a", "node-b", "nginx"}
    assert services["postgres"]["image"].startswith("postgres:")
    assert "healthcheck" in services["postgres"]
    assert services["nginx"]["image"].startswith("nginx:")
    for name in ("node-a", "node-b"):
        node = services[name]
        assert node["depends_on"]["postgres"] == {"condition": "service_healthy"}
        assert node["command"][:4] == ["python", "-m", "node", "serve"]
        # The instance's name comes from its configuration, not the environment.
        assert "NODE_INSTANCE" not in node.get("environment", {})
        mounted = next(v.split(":")[0] for v in node["volumes"] if v.endswith("node.toml:ro"))
        assert load_config(DEPLOY / mounted).instance_name == name


def test_every_file_compose_mounts_or_builds_exists() -> None:
    data = compose()
    named = set(data["volumes"])
    for service in data["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).is_file(), source
            else:
                assert source in named, source
        build = service.get("build")
        if build:
            context = (DEPLOY / build["context"]).resolve()
            assert (context / build["dockerfile"]).is_file()
            for line in (context / build["dockerfile"]).read_text().splitlines():
                # COPY --from=STAGE copies from an earlier stage, not from the context.
                if line.startswith("COPY ") and "--from=" not in line:
                    assert (context / line.split()[1]).exists(), line


def test_the_instances_share_database_storage_and_key_and_differ_in_the_rest() -> None:
    configs = [load_config(DEPLOY / f"instance-{x}.toml") for x in "ab"]
    a, b = configs
    assert a.database_url == b.database_url and a.database_url.startswith("postgresql+asyncpg")
    assert a.storage_root == b.storage_root
    assert a.api.servlet_authorization_header == b.api.servlet_authorization_header
    # Either instance resumes the other's POST imports with the sealed credentials.
    assert a.credentials_key_path == b.credentials_key_path
    assert a.credentials_key_path.parent == a.storage_root.parent
    assert a.node.ae_title != b.node.ae_title
    assert a.dicom.port != b.dicom.port and a.http.port != b.http.port
    assert a.data_dir != b.data_dir
    # incoming/ is renamed into the storage: one volume holds both.
    assert a.data_dir.parent == a.storage_root.parent
    # nginx.conf's upstreams are these HTTP ports.
    nginx = (DEPLOY / "nginx.conf").read_text()
    for config in configs:
        assert f"server 127.0.0.1:{config.http.port}" in nginx


def test_the_systemd_unit_runs_serve_and_stops_with_sigterm() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(DEPLOY / "viewnode.service")
    service = unit["Service"]
    assert service["ExecStart"].split()[1:4] == ["-m", "node", "serve"]
    assert service["KillSignal"] == "SIGTERM"
    assert service["User"] != "root"
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_systemd_finds_nothing_wrong_with_the_unit(tmp_path: Path) -> None:
    unit = tmp_path / "viewnode.service"
    unit.write_text((DEPLOY / "viewnode.service").read_text())
    checked = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                             text=True, timeout=60)
    # The project is not installed in /opt/viewnode here: only that complaint is allowed.
    problems = [line for line in (checked.stdout + checked.stderr).splitlines()
                if line.strip() and "is not executable" not in line]
    assert problems == []
