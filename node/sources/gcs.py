"""Objects of a Google Cloud Storage bucket (google-bucket), with the request's service-account
key (base64 JSON in `token`).

google-cloud-storage runs in worker threads; its retries are off (the pipeline retries). With
`[cloud] gcs_endpoint_url` set, the endpoint is an emulator or a private gateway: requests to it
carry no credentials (an emulator takes none, and a Google OAuth exchange would be sent off the
machine). The key is still parsed, so a malformed one is refused either way.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, BinaryIO

from google.api_core import exceptions as api_exceptions
from google.auth import exceptions as auth_exceptions
from google.auth.credentials import AnonymousCredentials, Credentials
from google.cloud import storage
from google.oauth2 import service_account
from requests import exceptions as http_exceptions

from node.sources.base import Source, SourceError, SourceObject, TransientSourceError
from node.sources.request import StorageSpec, StudyEntry

for _name in ("google", "google.auth", "google.cloud", "urllib3", "requests"):
    logging.getLogger(_name).setLevel(logging.WARNING)

READ_ONLY = ["https://www.googleapis.com/auth/devstorage.read_only"]


def credentials_for(storage_spec: StorageSpec) -> Credentials:
    try:
        return service_account.Credentials.from_service_account_info(
            storage_spec.service_account, scopes=READ_ONLY)
    except (ValueError, KeyError) as exc:
        # The library's message may quote the key: say only what is wrong in general.
        raise SourceError(f"google-bucket {storage_spec.name}: the service-account key is "
                          "not usable") from exc


class GoogleBucket(Source):
    label = "google-bucket"

    def __init__(self, study: StudyEntry, storage_spec: StorageSpec, endpoint_url: str,
                 timeout: float) -> None:
        self.study = study
        self.storage = storage_spec
        self.endpoint_url = endpoint_url
        self.timeout = timeout
        self._bucket: Any = None

    async def open(self) -> None:
        self._bucket = await asyncio.to_thread(self._make_bucket)

    def _make_bucket(self) -> Any:
        credentials = credentials_for(self.storage)
        project = str(self.storage.service_account.get("project_id") or "") or None
        if self.endpoint_url:
            client = storage.Client(project=project or "local",
                                    credentials=AnonymousCredentials(),
                                    client_options={"api_endpoint": self.endpoint_url})
        else:
            client = storage.Client(project=project, credentials=credentials)
        return client.bucket(self.storage.name)

    async def close(self) -> None:
        bucket, self._bucket = self._bucket, None
        if bucket is not None:
            await asyncio.to_thread(bucket.client.close)

    async def list_objects(self) -> list[SourceObject]:
        return [
            SourceObject(instance.file, f"{instance.where}.file", instance.kind, self.study,
                         series, instance)
            for series in self.study.series for instance in series.instances
        ]

    async def fetch(self, item: SourceObject, out: BinaryIO) -> None:
        await asyncio.to_thread(self._download, item.key, out)

    def _download(self, key: str, out: BinaryIO) -> None:
        where = f"google-bucket {self.storage.name}: {key}"
        try:
            self._bucket.blob(key).download_to_file(
                out, retry=None, timeout=(min(self.timeout, 10.0), self.timeout))
        except (api_exceptions.TooManyRequests, api_exceptions.ServerError) as exc:
            raise TransientSourceError(f"{where}: HTTP {exc.code}") from None
        except api_exceptions.GoogleAPICallError as exc:
            raise SourceError(f"{where}: {type(exc).__name__} (HTTP {exc.code})") from None
        except auth_exceptions.RefreshError:
            raise SourceError(f"{where}: the service-account key was refused") from None
        except (auth_exceptions.TransportError, http_exceptions.ConnectionError,
                http_exceptions.Timeout, http_exceptions.ChunkedEncodingError) as exc:
            raise TransientSourceError(f"{where}: {type(exc).__name__}") from None
