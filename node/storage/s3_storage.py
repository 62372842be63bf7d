"""Instances as objects of an S3-compatible bucket ([storage] backend = "s3").

Ingest keeps its one path: the file is complete in `incoming/`, then uploaded by a single PUT
(atomic: the object is there whole or not at all) BEFORE its index row is committed, so a row
never names an object that is not in the bucket. Without overwrite the PUT is conditional
(If-None-Match: *): an instance already stored is never replaced by a resend. After the commit
the uploaded file becomes a cache entry (FileCache): the instance is usually read again soon
(C-MOVE onward, the viewer) and need not come back from the bucket.

Readers get a local path through `local_path`, which downloads into the cache when needed.
Credentials come from the environment (botocore's chain: AWS_ACCESS_KEY_ID/..., instance
roles) or from a JSON file in the data folder readable by its owner only; they are handed to
botocore and never logged (botocore's loggers are held at WARNING: at DEBUG they print headers).
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import stat
from collections.abc import Collection, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from node.config import StorageSection
from node.errors import ConfigError
from node.storage.folder_storage import Storage, probe_folder
from node.storage.read_cache import FileCache

log = logging.getLogger(__name__)

for _name in ("boto3", "botocore", "s3transfer", "urllib3"):
    logging.getLogger(_name).setLevel(logging.WARNING)

_CHUNK = 1 << 20
_FETCH_THREADS = 8
_MISSING = {"404", "NoSuchKey", "NotFound"}
_EXISTS = {"412", "PreconditionFailed", "409", "ConditionalRequestConflict"}


class _NoSuchObject(Exception):
    """The bucket has no object under the key (not an OSError: a local file system's own
    FileNotFoundError must not read as a missing object)."""


class StorageError(OSError):
    """The bucket could not be reached or refused a request. An OSError: the DICOM edge maps
    it to Out of Resources (0xA700) like a full disk."""


def read_credentials(path: Path) -> dict[str, str]:
    """botocore keyword arguments from a JSON file {"access_key_id": ..., "secret_access_key":
    ..., "session_token": optional}; refused when others may read it. Messages never quote it."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError as exc:
        raise ConfigError(f"storage.credentials_file: {path} does not exist") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"storage.credentials_file: {path} must be readable by its owner only "
                          "(chmod 600)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"storage.credentials_file: {path} is not a readable JSON "
                          "object") from exc
    if not isinstance(data, dict) or not all(
            isinstance(data.get(k), str) and data[k] for k in ("access_key_id",
                                                               "secret_access_key")):
        raise ConfigError(f"storage.credentials_file: {path} needs access_key_id and "
                          "secret_access_key (strings)")
    keys = {"aws_access_key_id": data["access_key_id"],
            "aws_secret_access_key": data["secret_access_key"]}
    if isinstance(data.get("session_token"), str) and data["session_token"]:
        keys["aws_session_token"] = data["session_token"]
    return keys


def make_client(section: StorageSection, data_dir: Path) -> Any:
    credentials = (read_credentials(data_dir / section.credentials_file)
                   if section.credentials_file else {})
    config = BotoConfig(
        retries={"mode": "standard", "max_attempts": 4},
        connect_timeout=10.0,
        read_timeout=60.0,
        max_pool_connections=32,
        signature_version="s3v4",
        # A private endpoint (MinIO, Ceph, a test server) rarely has per-bucket DNS names.
        s3={"addressing_style": "path" if section.endpoint_url else "auto"},
        # Plain PUTs with a Content-Length: S3-compatible stores need not know the newer
        # streamed checksum trailers.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    return boto3.session.Session().client(
        "s3", region_name=section.region or None, endpoint_url=section.endpoint_url or None,
        config=config, **credentials)


def _code(exc: ClientError) -> str:
    error = exc.response.get("Error", {})
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    code = str(error.get("Code", ""))
    return code if code and code not in ("None",) else str(status)


class S3Storage(Storage):

    def __init__(self, client: Any, bucket: str, prefix: str, incoming: Path,
                 cache: FileCache, fsync: bool = True, caches: Path | None = None) -> None:
        """`caches`: the folder holding this cache and the other worker processes' (their
        copies of deleted studies go too: `forget_studies`)."""
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.incoming = incoming
        self.fsync = fsync
        self.cache = cache
        self.caches = caches or cache.root
        incoming.mkdir(parents=True, exist_ok=True)
        self._pool: ThreadPoolExecutor | None = None

    @classmethod
    def from_config(cls, section: StorageSection, data_dir: Path, incoming: Path, cache: Path,
                    cache_share: int = 1) -> S3Storage:
        """`cache_share`: how many processes' caches split `cache_max_bytes`."""
        client = make_client(section, data_dir)
        storage = cls(client, section.bucket, section.prefix, incoming,
                      FileCache(cache, section.cache_max_bytes // cache_share, section.fsync),
                      section.fsync, data_dir / "cache")
        storage.check_bucket()
        log.info("storage: bucket %s, prefix %r, endpoint %s, credentials from %s",
                 section.bucket, storage.prefix, section.endpoint_url or "AWS",
                 "the credentials file" if section.credentials_file else "the environment")
        return storage

    def key(self, relative: str) -> str:
        return self.prefix + relative

    def check_bucket(self) -> None:
        """Stop at start-up, naming the bucket, when it cannot be reached."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            raise ConfigError(f"storage.bucket: {self.bucket} cannot be used "
                              f"({_code(exc)})") from None
        except BotoCoreError as exc:
            raise ConfigError(f"storage.bucket: {self.bucket} cannot be reached "
                              f"({type(exc).__name__})") from None

    def check_writable(self) -> None:
        """Raise OSError unless incoming/ takes a file and the bucket answers."""
        probe_folder(self.incoming)
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"bucket {self.bucket}: not reachable ({type(exc).__name__})"
                               ) from None

    # -- reading -----------------------------------------------------------------------------

    def local_path(self, relative: str) -> Path:
        """The cached copy of the object, downloaded first when not cached (blocking). When the
        bucket has no such object, the cache path, which does not exist (as with a folder)."""
        cached = self.cache.get(relative)
        if cached is not None:
            return cached
        with self.cache.filling(relative):
            cached = self.cache.get(relative)
            if cached is not None:
                return cached
            try:
                return self.cache.fill(relative, lambda out: self._download(relative, out))
            except _NoSuchObject:
                return self.cache.root / relative

    def local_paths(self, relatives: Sequence[str]) -> list[Path]:
        if len(relatives) < 2:
            return [self.local_path(r) for r in relatives]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(_FETCH_THREADS, thread_name_prefix="s3-fetch")
        return list(self._pool.map(self.local_path, relatives))

    async def local_path_async(self, relative: str) -> Path:
        cached = self.cache.get(relative)
        if cached is not None:
            return cached
        return await asyncio.to_thread(self.local_path, relative)

    async def local_paths_async(self, relatives: Sequence[str]) -> list[Path]:
        return await asyncio.to_thread(self.local_paths, relatives)

    def _download(self, relative: str, out: BinaryIO) -> None:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self.key(relative))
            body = response["Body"]
            try:
                while chunk := body.read(_CHUNK):
                    out.write(chunk)
            finally:
                body.close()
        except ClientError as exc:
            if _code(exc) in _MISSING:
                raise _NoSuchObject(relative) from None
            raise StorageError(f"bucket {self.bucket}: reading {relative} failed "
                               f"({_code(exc)})") from None
        except BotoCoreError as exc:
            raise StorageError(f"bucket {self.bucket}: reading {relative} failed "
                               f"({type(exc).__name__})") from None

    def size_of(self, relative: str) -> int | None:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self.key(relative))
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return None
            raise StorageError(f"bucket {self.bucket}: {relative} ({_code(exc)})") from None
        return int(head["ContentLength"])

    def exists(self, relative: str) -> bool:
        return self.size_of(relative) is not None

    def listing(self, exclude: tuple[Path, ...] = ()) -> Iterator[tuple[str, int]]:
        """Every object under the prefix, in key order (S3 lists in UTF-8 byte order, which is
        the order of Python's string comparison)."""
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
            for item in page.get("Contents", []):
                yield item["Key"][len(self.prefix):], int(item["Size"])

    # -- writing -----------------------------------------------------------------------------

    def publish(self, incoming_file: Path, relative: str, replace: bool) -> bool:
        return self._upload(incoming_file, relative, only_new=not replace)

    def _upload(self, file: Path, relative: str, only_new: bool) -> bool:
        extra = {"IfNoneMatch": "*"} if only_new else {}
        try:
            with file.open("rb") as body:
                self.client.put_object(Bucket=self.bucket, Key=self.key(relative), Body=body,
                                       ContentType="application/dicom", **extra)
        except ClientError as exc:
            if only_new and _code(exc) in _EXISTS:
                return False
            raise StorageError(f"bucket {self.bucket}: storing {relative} failed "
                               f"({_code(exc)})") from None
        except BotoCoreError as exc:
            raise StorageError(f"bucket {self.bucket}: storing {relative} failed "
                               f"({type(exc).__name__})") from None
        return True

    def flush_published(self, relative: str) -> None:
        """An uploaded object is durable once put_object returned."""

    def withdraw(self, incoming_file: Path, relative: str) -> None:
        """An uploaded object stays: `check` lists it, `check --repair` indexes it."""

    def place(self, incoming_file: Path, relative: str, published: str | None = None) -> None:
        if published != relative:
            # Not uploaded yet: an object of the same instance was there already (left by an
            # ingest that failed after its upload), or the index keeps the instance at another
            # path (a replaced duplicate that changed study). The row is committed; the object
            # follows, and `check` would report the moment a crash fell in between.
            self._upload(incoming_file, relative, only_new=False)
            if published is not None:
                self._delete(published)
        try:
            self.cache.adopt(relative, incoming_file)
        except OSError:
            incoming_file.unlink(missing_ok=True)
            self.cache.forget(relative)

    def discard(self, incoming_file: Path, published: str | None, kept: str | None) -> None:
        incoming_file.unlink(missing_ok=True)
        if published is not None and published != kept:
            self._delete(published)

    def remove(self, relative: str) -> None:
        self._delete(relative)

    def move_out(self, relative: str, target: Path) -> None:
        """Quarantine: a local copy of the object at `target`, then the object deleted."""
        source = self.local_path(relative)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        self._delete(relative)

    def set_aside(self, relatives: Sequence[str]) -> list[str]:
        """A bucket renames nothing: `retire` looks at each object instead."""
        return list(relatives)

    def retire(self, relatives: Sequence[str], keep: Collection[str],
               deleted_at: float) -> tuple[int, int]:
        """Delete the objects, except those an index row names again or uploaded since the
        deletion (received anew)."""
        removed = kept = 0
        for relative in relatives:
            if relative in keep:
                kept += 1
                continue
            try:
                head = self.client.head_object(Bucket=self.bucket, Key=self.key(relative))
            except ClientError as exc:
                if _code(exc) in ("404", "NoSuchKey", "NotFound"):
                    self.cache.forget(relative)
                    continue
                raise StorageError(f"bucket {self.bucket}: looking at {relative} failed "
                                   f"({_code(exc)})") from None
            except BotoCoreError as exc:
                raise StorageError(f"bucket {self.bucket}: looking at {relative} failed "
                                   f"({type(exc).__name__})") from None
            if head["LastModified"].timestamp() >= deleted_at:
                kept += 1
                continue
            self._delete(relative)
            removed += 1
        return removed, kept

    def remove_empty_folders(self, relatives: Collection[str]) -> None:
        """A bucket has no folders."""

    def forget_studies(self, study_uids: Collection[str]) -> None:
        """Every process's cached copies of the studies' objects: another worker's cache would
        serve the deleted bytes for an instance received anew under the same name (its reads
        find the file gone and download again)."""
        folders = [self.relative_path(uid, "x").rpartition("/")[0] for uid in study_uids]
        for folder in folders:
            self.cache.forget_folder(folder)
        others = [p for p in self.caches.iterdir() if p.is_dir() and p != self.cache.root] \
            if self.caches.is_dir() else []
        if self.caches != self.cache.root:
            others.append(self.caches)  # a process that is no worker caches right there
        for other in others:
            for folder in folders:
                shutil.rmtree(other / folder, ignore_errors=True)

    def _delete(self, relative: str) -> None:
        self.cache.forget(relative)
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.key(relative))
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"bucket {self.bucket}: deleting {relative} failed "
                               f"({type(exc).__name__})") from None
