"""`protect --study UID` / `unprotect --study UID`: keep a study from being recycled to make
room (or let it be again). A study may be protected before it is stored."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from node.commands import add_config_argument
from node.commands.delete_command import checked_uids, cli_user
from node.config import load_config
from node.process.runtime import open_services
from node.retention import protect, unprotect


def register(sub: Any) -> None:
    for name, what in (("protect", "never recycle these studies"),
                       ("unprotect", "let these studies be recycled again")):
        parser = sub.add_parser(name, help=what)
        parser.add_argument("--study", action="append", required=True, metavar="UID",
                            help="Study Instance UID (repeat for several)")
        add_config_argument(parser)
        parser.set_defaults(func=run, protecting=name == "protect")


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args, checked_uids(args.study)))


async def _run(args: argparse.Namespace, study_uids: list[str]) -> int:
    action = protect if args.protecting else unprotect
    async with open_services(load_config(args.config), ingests=False) as services:
        for uid in study_uids:
            changed = await action(services, uid, cli_user())
            state = "protected" if args.protecting else "not protected"
            print(f"{uid}: {state}{'' if changed else ' (already)'}")
    return 0
