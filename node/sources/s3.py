"""Objects of an S3 bucket (aws-bucket) or of a Wasabi bucket (wasabi-bucket, S3's API).

boto3 runs in worker threads (its client is thread-safe); its own retries are off because the
import pipeline retries with its own bound and backoff. botocore's loggers are held at WARNING:
at DEBUG they print request headers, and the request's keys must never reach a log.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from node.sources.base import BucketSource, SourceError, TransientSourceError
from node.sources.request import StorageSpec, StudyEntry

for _name in ("boto3", "botocore", "s3transfer", "urllib3"):
    logging.getLogger(_name).setLevel(logging.WARNING)

_TRANSIENT_CODES = {"SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable",
                    "Throttling", "ThrottlingException", "RequestTimeTooSkewed"}


def endpoint_for(storage: StorageSpec, aws_endpoint: str, wasabi_endpoint: str) -> str | None:
    """The configured override, else AWS's own (None: botocore picks it from the region) or
    Wasabi's regional endpoint."""
    if storage.type == "wasabi-bucket":
        return wasabi_endpoint or f"https://s3.{storage.region}.wasabisys.com"
    return aws_endpoint or None


class S3Bucket(BucketSource):
    def __init__(self, study: StudyEntry, storage: StorageSpec, endpoint_url: str | None,
                 timeout: float, concurrency: int) -> None:
        self.label = storage.type
        self.study = study
        self.storage = storage
        self.endpoint_url = endpoint_url
        self.timeout = timeout
        self.concurrency = concurrency
        self._client: Any = None

    async def open(self) -> None:
        self._client = await asyncio.to_thread(self._make_client)

    def _make_client(self) -> Any:
        config = BotoConfig(
            retries={"total_max_attempts": 1},
            connect_timeout=min(self.timeout, 10.0),
            read_timeout=self.timeout,
            max_pool_connections=max(self.concurrency, 1),
            signature_version="s3v4",
            # A local or private endpoint (an IP address, a test server) has no per-bucket DNS.
            s3={"addressing_style": "path" if self.endpoint_url else "auto"},
        )
        session = boto3.session.Session()
        return session.client(
            "s3", region_name=self.storage.region, endpoint_url=self.endpoint_url,
            aws_access_key_id=self.storage.access_key,
            aws_secret_access_key=self.storage.secret_key, config=config,
        )

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await asyncio.to_thread(client.close)

    async def download(self, key: str, out: BinaryIO) -> None:
        await asyncio.to_thread(self._download, key, out)

    async def keys_under(self, prefix: str) -> list[str]:
        return await asyncio.to_thread(self._keys_under, prefix)

    def _download(self, key: str, out: BinaryIO) -> None:
        with self._errors(key):
            response = self._client.get_object(Bucket=self.storage.name, Key=key)
            body = response["Body"]
            try:
                for chunk in body.iter_chunks(1 << 20):
                    out.write(chunk)
            finally:
                body.close()

    def _keys_under(self, prefix: str) -> list[str]:
        keys: list[str] = []
        with self._errors(prefix):
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.storage.name, Prefix=prefix)
            for page in pages:
                keys += [str(entry["Key"]) for entry in page.get("Contents", ())]
        return keys

    @contextmanager
    def _errors(self, key: str) -> Iterator[None]:
        """botocore's errors as the pipeline's: transient ones are tried again."""
        where = f"{self.storage.type} {self.storage.name}: {key}"
        try:
            yield
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", "")) or "error"
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
            message = f"{where}: {code} (HTTP {status})" if status else f"{where}: {code}"
            if status >= 500 or status == 429 or code in _TRANSIENT_CODES:
                raise TransientSourceError(message) from None
            raise SourceError(message) from None
        except BotoCoreError as exc:
            # Connection refused, timeouts, a stream cut short: worth another try.
            raise TransientSourceError(f"{where}: {type(exc).__name__}") from None
