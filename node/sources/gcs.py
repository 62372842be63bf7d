"""Objects of a Google Cloud Storage bucket (google-bucket), with the request's service-account
key (base64 JSON in `token`).

google-cloud-storage runs in worker threads; its retries are off (the pipeline retries). With
`[cloud] gcs_endpoint_url` set, the endpoint is an emulator or a private gateway: requests to it
carry no credentials (an emulator takes none, and a Google OAuth exchange would be sent off the
machine). The key is still parsed, so a malformed one is refused either way.

The key names the endpoint its signed assertion is posted to (`token_uri`): the caller writes
the key, so only Google's token endpoints (or the configured emulator) are accepted, and the node
never posts anywhere else a request told it to.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from google.api_core import exceptions as api_exceptions
from google.auth import exceptions as auth_exceptions
from google.auth.credentials import AnonymousCredentials, Credentials
from google.cloud import storage
from google.oauth2 import service_account
from requests import exceptions as http_exceptions

from node.errors import InvalidInput
from node.sources.base import BucketSource, SourceError, TransientSourceError
from node.sources.request import StorageSpec, StudyEntry

for _name in ("google", "google.auth", "google.cloud", "urllib3", "requests"):
    logging.getLogger(_name).setLevel(logging.WARNING)

READ_ONLY = ["https://www.googleapis.com/auth/devstorage.read_only"]
# Where Google's service-account keys send their assertion (the older one in older keys).
GOOGLE_TOKEN_URIS = ("https://oauth2.googleapis.com/token",
                     "https://accounts.google.com/o/oauth2/token")


def check_token_uri(storage_spec: StorageSpec, endpoint_url: str, where: str) -> None:
    """InvalidInput naming `where` (the key's field) unless the key's `token_uri` is Google's,
    or on the configured emulator `endpoint_url`."""
    uri = storage_spec.service_account.get("token_uri")
    if uri in GOOGLE_TOKEN_URIS:
        return
    if endpoint_url and isinstance(uri, str) and _origin(uri) == _origin(endpoint_url):
        return
    raise InvalidInput(f"{where}: the service-account key's token_uri must be "
                       f"{GOOGLE_TOKEN_URIS[0]}" + (" or on [cloud] gcs_endpoint_url"
                                                    if endpoint_url else ""), field=where)


def _origin(url: str) -> tuple[str, str, int | None]:
    try:
        parts = urlsplit(url)
        return parts.scheme, (parts.hostname or ""), parts.port
    except ValueError:
        return "", "", None


def credentials_for(storage_spec: StorageSpec) -> Credentials:
    try:
        return service_account.Credentials.from_service_account_info(
            storage_spec.service_account, scopes=READ_ONLY)
    except (ValueError, KeyError) as exc:
        # The library's message may quote the key: say only what is wrong in general.
        raise SourceError(f"google-bucket {storage_spec.name}: the service-account key is "
                          "not usable") from exc


class GoogleBucket(BucketSource):
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

    async def download(self, key: str, out: BinaryIO) -> None:
        await asyncio.to_thread(self._download, key, out)

    async def keys_under(self, prefix: str) -> list[str]:
        return await asyncio.to_thread(self._keys_under, prefix)

    def _download(self, key: str, out: BinaryIO) -> None:
        with self._errors(key):
            self._bucket.blob(key).download_to_file(
                out, retry=None, timeout=(min(self.timeout, 10.0), self.timeout))

    def _keys_under(self, prefix: str) -> list[str]:
        with self._errors(prefix):
            blobs = self._bucket.client.list_blobs(
                self._bucket, prefix=prefix, retry=None,
                timeout=(min(self.timeout, 10.0), self.timeout))
            return [str(blob.name) for blob in blobs]

    @contextmanager
    def _errors(self, key: str) -> Iterator[None]:
        """The client's errors as the pipeline's: transient ones are tried again."""
        where = f"google-bucket {self.storage.name}: {key}"
        try:
            yield
        except (api_exceptions.TooManyRequests, api_exceptions.ServerError) as exc:
            raise TransientSourceError(f"{where}: HTTP {exc.code}") from None
        except api_exceptions.GoogleAPICallError as exc:
            raise SourceError(f"{where}: {type(exc).__name__} (HTTP {exc.code})") from None
        except auth_exceptions.RefreshError:
            raise SourceError(f"{where}: the service-account key was refused") from None
        except (auth_exceptions.TransportError, http_exceptions.ConnectionError,
                http_exceptions.Timeout, http_exceptions.ChunkedEncodingError) as exc:
            raise TransientSourceError(f"{where}: {type(exc).__name__}") from None
