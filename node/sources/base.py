"""What every source is: something that lists objects and writes one object's bytes to a file.

Sources know nothing of DICOM or of the index: the import pipeline turns what they fetch into
instances and hands them to the one ingest path. Errors are values the pipeline can act on: a
`TransientSourceError` is tried again with backoff, a `SourceError` fails that object (or, from
`list_objects`, the whole source) with its message shown to the viewer. Messages never carry
credentials.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from node.sources.request import InstanceEntry, SeriesEntry, StorageSpec, StudyEntry


class SourceError(Exception):
    """Fetching failed in a way that another try would not fix (missing object, refused)."""


class TransientSourceError(SourceError):
    """Fetching failed in a way worth another try (5xx, connection lost, timeout)."""


@dataclass(frozen=True)
class SourceObject:
    """One object to fetch, with the request's metadata for the instance it becomes."""

    key: str
    # Where it was named: a field path of the request body, or a file's host path in a folder.
    where: str
    # "dicom", "jpeg", "png", "bmp", "mp4", "pdf" or "slide".
    kind: str = "dicom"
    study: StudyEntry | None = None
    series: SeriesEntry | None = None
    instance: InstanceEntry | None = None
    # UIDs as the source knows them (WADO) when the request did not list the instance.
    study_uid: str = ""
    series_uid: str = ""
    sop_uid: str = ""
    # Another instance of a listed one's series (a whole-slide level): the request's patient,
    # study and series data apply, its SOP Instance UID does not.
    sibling: bool = False

    @property
    def identity(self) -> str:
        """Names the object among its import's (a WADO study's instances share one `where`):
        what a resumed import recognises it by."""
        return self.where if self.key == self.where else f"{self.where}\n{self.key}"


class Source(ABC):
    """A place instances come from. Used as `async with source:` around list and fetch."""

    #: The storage type ("folder", "files", "aws-bucket", ...), for origins and messages.
    label: str = ""

    async def __aenter__(self) -> Source:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # Optional hooks: most sources need no client.
    async def open(self) -> None:  # noqa: B027
        """Make clients and sessions (once per request)."""

    async def close(self) -> None:  # noqa: B027
        """Release them."""

    @abstractmethod
    async def list_objects(self) -> list[SourceObject]:
        """What this source holds for the request; SourceError when it cannot be listed."""

    @abstractmethod
    async def fetch(self, item: SourceObject, out: BinaryIO) -> None:
        """Write the object's bytes to `out` (a fresh file; rewound by the caller on retry)."""

    def local_path(self, item: SourceObject) -> Path | None:
        """Where the object already is on this machine (checked), if it is: a slide file is
        then served from there instead of being copied."""
        return None

    async def companions(self, item: SourceObject) -> list[tuple[str, str]]:
        """The other objects a fetched slide file needs beside it, as (key, path relative to
        the slide's folder): an MRXS slide's data folder. None for most sources."""
        return []


class BucketSource(Source):
    """A cloud bucket (S3, Wasabi, Google) whose objects the request names one by one: the
    object key is each instance's `file`. Subclasses say how to download an object and how
    to list the keys under a prefix (an MRXS slide's data folder is not named in the request)."""

    study: StudyEntry
    storage: StorageSpec

    async def list_objects(self) -> list[SourceObject]:
        return [
            SourceObject(instance.file, f"{instance.where}.file", instance.kind, self.study,
                         series, instance)
            for series in self.study.series for instance in series.instances
        ]

    async def fetch(self, item: SourceObject, out: BinaryIO) -> None:
        await self.download(item.key, out)

    @abstractmethod
    async def download(self, key: str, out: BinaryIO) -> None:
        """Write the object `key` to `out`; SourceError/TransientSourceError on failure."""

    @abstractmethod
    async def keys_under(self, prefix: str) -> list[str]:
        """Every object key that starts with `prefix` (which ends with "/")."""

    async def companions(self, item: SourceObject) -> list[tuple[str, str]]:
        """An MRXS slide (`x.mrxs`) is read with the folder of the same stem beside it (`x/`:
        Slidedat.ini, Index.dat, Data*.dat), which the request does not name: every object
        under that prefix, at its place in the folder."""
        if item.kind != "slide" or not item.key.lower().endswith(".mrxs"):
            return []
        stem = item.key[:-len(".mrxs")]
        prefix = f"{stem}/"
        found = []
        for key in await self.keys_under(prefix):
            relative = key[len(prefix):]
            parts = PurePosixPath(relative).parts
            if not relative or relative.endswith("/"):
                continue  # a "folder" marker object
            if relative.startswith("/") or any(part in ("", ".", "..") for part in parts):
                raise SourceError(f"{self.label} {self.storage.name}: {key}: not a file name "
                                  "an MRXS data folder can hold")
            found.append((key, "/".join(parts)))
        if not found:
            raise SourceError(f"{self.label} {self.storage.name}: {item.key}: its data folder "
                              f"{prefix} holds no objects (an MRXS slide needs Slidedat.ini, "
                              "Index.dat and its Data*.dat files)")
        return found
