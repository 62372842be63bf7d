"""`iso --study UID [UID ...] -o OUT.iso [--profile NAME]`: write studies to an ISO image.

The same medium as GET /webdv/getIso (DICOMDIR, IHE PDI pages, viewer from node.toml), written
to a file with a progress bar. Studies the index lacks are retrieved from the source nodes
first. Like `serve`, this command reaches outside node/ (into dicomdir/) from inside its
function only, so that node/ itself never depends on the media package.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path
from typing import Any

from tqdm import tqdm

from node.commands import add_config_argument, load_dicom_config
from node.config import Config
from node.process.runtime import open_services


def register(sub: Any) -> None:
    parser = sub.add_parser("iso", help="write studies to an ISO 9660 image (DICOM media)")
    parser.add_argument("--study", metavar="UID", nargs="+", action="extend", required=True,
                        help="Study Instance UID (repeatable)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="the ISO file to write")
    parser.add_argument("--profile", default="auto",
                        help="media profile: auto (by content) or e.g. STD-GEN-CD, "
                             "STD-GEN-DVD-JPEG, STD-GEN-DVD-J2K")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_config_argument(parser)
    parser.set_defaults(func=run)


async def _write(config: Config, args: argparse.Namespace) -> tuple[str, int, str]:
    from dicomdir.medium import build_medium, medium_options
    from dicomdir.profiles import AUTO, profile_named
    from dicomdir.selection import gather_studies

    if args.profile.lower() != AUTO:
        profile_named(args.profile)
    async with open_services(config, ingests=False) as services:
        selection = await gather_studies(services, args.study)
    medium = await asyncio.to_thread(build_medium, selection, medium_options(config,
                                                                             args.profile))
    with medium:
        await asyncio.to_thread(_copy, medium.image.chunks(), medium.image.size, args.output,
                                not args.no_progress)
        return medium.file_set_id, medium.image.size, medium.profile.name


def _copy(chunks: Any, size: int, output: Path, progress: bool) -> None:
    partial = output.with_name(output.name + ".part")
    try:
        with partial.open("wb") as out, tqdm(total=size, unit="B", unit_scale=True,
                                             unit_divisor=1024, disable=not progress,
                                             desc=output.name) as bar:
            for chunk in chunks:
                out.write(chunk)
                bar.update(len(chunk))
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, output)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def run(args: argparse.Namespace) -> int:
    config = load_dicom_config(args.config)
    file_set_id, size, profile = asyncio.run(_write(config, args))
    print(f"{args.output}: {size} bytes, File-set ID {file_set_id}, profile {profile}")
    return 0
