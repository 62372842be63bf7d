"""GET /webdv/getIso: one or more studies as an ISO 9660 image (DICOM media, IHE PDI), streamed.

Parameters
- `studyUID` (1-n, required): Study Instance UIDs, repeated (`?studyUID=1.2&studyUID=1.3`).
  Studies not in the index are looked for on the source nodes and retrieved first.
- `profile` (optional): the DICOM media application profile (PS3.11) of the medium.
  `auto` (default) chooses by content: STD-GEN-CD when every instance is uncompressed,
  STD-GEN-DVD-JPEG / STD-GEN-DVD-J2K when JPEG / JPEG 2000 instances are present, a
  STD-GEN-BD-MPEG* profile for MPEG video. A named profile (STD-GEN-CD, STD-GEN-DVD-JPEG,
  STD-GEN-DVD-J2K, STD-GEN-BD-JPEG, STD-GEN-BD-J2K, STD-GEN-BD-MPEG2-MPML, ...) is met by
  rewriting what it does not allow in Explicit VR Little Endian (decompressing where needed);
  nothing is ever compressed. Implicit VR Little Endian instances are always rewritten in
  Explicit VR Little Endian, which every general-purpose profile requires.

Answers
- 200 `application/x-iso9660-image`, `Content-Disposition: attachment; filename=<File-set
  ID>.iso`, `X-Media-Profile` (the profile chosen), the exact `Content-Length` up front, then
  the image, streamed as it is produced: the node holds one chunk at a time and writes no
  temporary image. HEAD answers the same headers without the body.
- 400 when studyUID is missing or not a UID, or profile is unknown (the JSON names the field);
  401 without the API key; 404 naming the studies found neither in the index nor on a source
  node; 413 when the image would be larger than `media.max_iso_bytes` (the JSON gives `size`
  and `limit`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator, Sequence
from typing import Annotated

from aiohttp import web
from pydantic import Field, field_validator

from dicomdir.medium import Medium, build_medium, medium_options
from dicomdir.profiles import AUTO, profile_named
from dicomdir.selection import gather_studies, without_sop_classes
from node.errors import NotFound
from node.index.recycling import mark_used
from node.retention.export_hold import held_for_export
from rest.params import QueryModel, QueryText, Uids, parse_query
from rest.state import SERVICES

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

ISO_MEDIA_TYPE = "application/x-iso9660-image"


def _too_large(size: int, limit: int) -> web.Response:
    return web.json_response(
        {"error": f"the ISO image would be {size} bytes, more than the limit of {limit} "
                  "bytes (media.max_iso_bytes)", "size": size, "limit": limit},
        status=413,
    )


class IsoQuery(QueryModel):
    # Required: given at all, it holds at least one UID.
    study_uids: Uids = Field(alias="studyUID", description="Studies to put on the medium.")
    profile: Annotated[str, QueryText()] = Field(
        AUTO, description="Media application profile (default auto).")

    @field_validator("profile")
    @classmethod
    def _known_profile(cls, profile: str) -> str:
        if profile.lower() != AUTO:
            profile_named(profile)  # InvalidInput naming profile when it is unknown
        return profile


@routes.get("/webdv/getIso")
async def get_iso(request: web.Request) -> web.StreamResponse:
    query = parse_query(IsoQuery, request.query)
    study_uids, profile = query.study_uids, query.profile
    return await send_medium(request, study_uids, profile)


async def send_medium(request: web.Request, study_uids: Sequence[str], profile: str,
                      hidden_classes: tuple[str, ...] = ()) -> web.StreamResponse:
    """The studies' medium, streamed (or 413); the viewer's download button answers so too,
    without the SOP classes its session hides (`hidden_classes`: SOP Class UID prefixes).
    The studies are never recycled while they are read (storage quota), and are recycled
    last afterwards."""
    services = request.app[SERVICES]
    config = services.config
    limit = config.media.max_iso_bytes
    async with held_for_export(services, study_uids):
        selection = without_sop_classes(await gather_studies(services, study_uids),
                                        hidden_classes)
        if not selection.studies:
            raise NotFound("nothing of the studies may go on the medium")
        await mark_used(services.engine, study_uids)
        # The stored files are a lower bound of the image: refuse early, before reading
        # headers.
        if selection.stored_size > limit:
            return _too_large(selection.stored_size, limit)
        medium = await asyncio.to_thread(build_medium, selection,
                                         medium_options(config, profile))
        try:
            if medium.image.size > limit:
                return _too_large(medium.image.size, limit)
            return await _stream(request, medium)
        finally:
            await asyncio.to_thread(medium.close)


async def _stream(request: web.Request, medium: Medium) -> web.StreamResponse:
    response = web.StreamResponse(headers={
        "Content-Type": ISO_MEDIA_TYPE,
        "Content-Disposition": f'attachment; filename="{medium.file_set_id}.iso"',
        "X-Media-Profile": medium.profile.name,
    })
    response.content_length = medium.image.size
    await response.prepare(request)
    if request.method == "HEAD":
        return response
    chunks = medium.image.chunks()
    loop = asyncio.get_running_loop()
    # The next chunk is read in a worker thread while the current one is being sent.
    pending: asyncio.Future[bytes | None] = loop.run_in_executor(None, next, chunks, None)
    try:
        while (chunk := await pending) is not None:
            pending = loop.run_in_executor(None, next, chunks, None)
            await response.write(chunk)
        await response.write_eof()
    except (ConnectionError, asyncio.CancelledError):
        log.info("ISO %s: client went away", medium.file_set_id)
        raise
    except Exception:
        # The status is sent already: cut the connection so the client sees a short body.
        log.exception("ISO %s: streaming failed", medium.file_set_id)
        if request.transport is not None:
            request.transport.close()
    finally:
        await _settle(pending, chunks)
    return response


async def _settle(pending: asyncio.Future[bytes | None], chunks: Iterator[bytes]) -> None:
    """Let a read in flight finish before the medium's work folder goes away."""
    with contextlib.suppress(BaseException):
        await pending
    close = getattr(chunks, "close", None)
    if close is not None:
        close()
