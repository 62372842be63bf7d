"""Cloud storage peers on loopback for the POST API's tests: moto's S3 server (also standing in
for Wasabi through the endpoint override) and a Google Cloud Storage emulator.

Each is one process per test session, started on first use and stopped by PID at the end.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.peers import PEER_ENV, free_port, wait_for_port

BIN = Path(sys.executable).parent


@dataclass
class ServerProcess:
    command: list[str]
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, log: Path) -> ServerProcess:
        log.parent.mkdir(parents=True, exist_ok=True)
        command = [str(self.port) if part == "PORT" else part for part in self.command]
        self.proc = subprocess.Popen(command, stdout=log.open("ab"), stderr=subprocess.STDOUT,
                                     env=PEER_ENV)
        wait_for_port(self.port, proc=self.proc, timeout=30)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


_RUNNING: dict[str, ServerProcess] = {}


def _shared(name: str, command: list[str], log: Path) -> ServerProcess:
    server = _RUNNING.get(name)
    if server is None or server.proc is None or server.proc.poll() is not None:
        server = ServerProcess(command).start(log)
        _RUNNING[name] = server
    return server


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """moto's S3 API (any access key is accepted)."""
    server = _shared("moto", [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", "PORT"],
                     tmp_path_factory.getbasetemp() / "moto.log")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def gcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """gcp-storage-emulator, in memory."""
    server = _shared("gcs", [str(BIN / "gcp-storage-emulator"), "start", "-H", "127.0.0.1",
                             "--in-memory", "-q", "--port", "PORT"],
                     tmp_path_factory.getbasetemp() / "gcs.log")
    yield server
    server.stop()


def s3_client(endpoint: str, region: str = "eu-central-1") -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client("s3", region_name=region, endpoint_url=endpoint,
                        aws_access_key_id="test", aws_secret_access_key="test",
                        config=Config(s3={"addressing_style": "path"}))


def s3_put(endpoint: str, bucket: str, objects: dict[str, bytes],
           region: str = "eu-central-1") -> None:
    client = s3_client(endpoint, region)
    existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
    if bucket not in existing:
        client.create_bucket(Bucket=bucket,
                             CreateBucketConfiguration={"LocationConstraint": region})
    for key, data in objects.items():
        client.put_object(Bucket=bucket, Key=key, Body=data)


def gcs_put(endpoint: str, bucket: str, objects: dict[str, bytes]) -> None:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(project="test", credentials=AnonymousCredentials(),
                            client_options={"api_endpoint": endpoint})
    target = client.bucket(bucket)
    if not target.exists():
        target = client.create_bucket(bucket)
    for key, data in objects.items():
        target.blob(key).upload_from_string(data)


def service_account_token(project: str = "test-project") -> tuple[str, str]:
    """A base64 service-account key as the spec's `token`, and its private key (a secret that
    must never show up anywhere)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    info = {
        "type": "service_account", "project_id": project,
        "private_key_id": "0123456789abcdef0123456789abcdef01234567",
        "private_key": pem, "client_email": f"viewer@{project}.iam.gserviceaccount.com",
        "client_id": "1234567890", "token_uri": "https://oauth2.googleapis.com/token",
    }
    return base64.b64encode(json.dumps(info).encode()).decode(), pem
