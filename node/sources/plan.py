"""From a checked request to the sources that will fetch it, with every local path resolved.

This runs before the token is issued: a path outside the storage mappings, one that leads out
of its mapped folder, or a missing file is refused here (InvalidInput, 400), and nothing has
been read yet. What can only fail later (a bucket, a WADO server) is reported per instance by
the import.
"""

from __future__ import annotations

from dataclasses import dataclass

from node.config import Config
from node.sources.base import Source
from node.sources.folder import FolderSource
from node.sources.gcs import GoogleBucket, check_token_uri
from node.sources.local import LocalFiles
from node.sources.outbound import OutboundPolicy
from node.sources.request import S3_TYPES, OpenRequest
from node.sources.s3 import S3Bucket, endpoint_for
from node.sources.storage_mapping import MappingTable, ResolvedPath
from node.sources.wado_rs import WadoRs
from node.sources.wado_uri import WadoUri


@dataclass(frozen=True)
class ImportPlan:
    request: OpenRequest
    sources: tuple[Source, ...]
    # The studies the request names, in its order (none for a folder: they are in the files).
    study_uids: tuple[str, ...]


def plan_import(request: OpenRequest, mappings: MappingTable, config: Config) -> ImportPlan:
    """The sources of a request; InvalidInput naming the field of any refused path, WADO URL
    (node/sources/outbound.py) or service-account key. Resolves the URLs' host names: run it in
    a thread."""
    if request.folder:
        folder = mappings.resolve(request.folder, "folder.path", kind="folder")
        return ImportPlan(request, (FolderSource(folder),), ())
    cloud = config.cloud
    timeout = config.sources.fetch_timeout
    concurrency = config.sources.fetch_concurrency
    outbound = OutboundPolicy.from_config(config)
    sources: list[Source] = []
    for study in request.studies:
        storage = study.storage
        if storage is None:
            locations: dict[str, ResolvedPath] = {}
            for series in study.series:
                for instance in series.instances:
                    where = f"{instance.where}.file"
                    locations[where] = mappings.resolve(instance.file, where)
            sources.append(LocalFiles(study, locations))
        elif storage.type in S3_TYPES:
            endpoint = endpoint_for(storage, cloud.aws_endpoint_url, cloud.wasabi_endpoint_url)
            sources.append(S3Bucket(study, storage, endpoint, timeout, concurrency))
        elif storage.type == "google-bucket":
            check_token_uri(storage, cloud.gcs_endpoint_url, f"{study.where}.storage.token")
            sources.append(GoogleBucket(study, storage, cloud.gcs_endpoint_url, timeout))
        else:
            outbound.check_url(storage.url, f"{study.where}.storage.url")
            wado = WadoRs if storage.type == "wado-rs" else WadoUri
            sources.append(wado(study, storage, outbound, timeout, concurrency))
    uids = tuple(dict.fromkeys(study.study_uid for study in request.studies))
    return ImportPlan(request, tuple(sources), uids)
