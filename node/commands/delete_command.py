"""`delete --study UID [--study UID...]`: take studies out of the index at once (one
transaction); the serving node removes their files in the background."""

from __future__ import annotations

import argparse
import asyncio
import getpass
from typing import Any

from node.commands import add_config_argument
from node.config import load_config
from node.errors import InvalidInput
from node.index.deletion_queries import Requester
from node.ingest.instance_record import is_valid_uid
from node.process.runtime import open_services
from node.retention import delete_now


def register(sub: Any) -> None:
    parser = sub.add_parser("delete", help="delete studies (index at once, files in the "
                                           "background)")
    parser.add_argument("--study", action="append", required=True, metavar="UID",
                        help="Study Instance UID (repeat for several)")
    add_config_argument(parser)
    parser.set_defaults(func=run)


def cli_user() -> str:
    """Who ran a command, for the audit."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def checked_uids(values: list[str]) -> list[str]:
    for value in values:
        if not is_valid_uid(value):
            raise InvalidInput(f"--study: not a valid DICOM UID: {value[:80]!r}", "study")
    return values


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args, checked_uids(args.study)))


async def _run(args: argparse.Namespace, study_uids: list[str]) -> int:
    async with open_services(load_config(args.config), ingests=False) as services:
        deleted, missing = await delete_now(services, study_uids, Requester(cli_user()))
    for study in deleted:
        print(f"deleted {study.study_uid}: {study.instances} instance(s), {study.bytes} bytes; "
              "the serving node removes the files")
    for uid in missing:
        print(f"not stored: {uid}")
    return 1 if missing else 0
