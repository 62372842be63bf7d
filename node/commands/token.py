"""`token revoke TOKEN` and `token revoke-sessions --user NAME`: end viewer access at once."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from node.commands import add_config_argument
from node.config import load_config
from node.runtime import open_services
from node.viewing import revoke_sessions, revoke_token


def register(sub: Any) -> None:
    parser = sub.add_parser("token", help="revoke viewer tokens and sessions")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    revoke = actions.add_parser("revoke", help="revoke a token and the sessions opened with it")
    revoke.add_argument("token")
    add_config_argument(revoke)
    sessions = actions.add_parser("revoke-sessions", help="end every session of a user")
    sessions.add_argument("--user", required=True)
    add_config_argument(sessions)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))


async def _run(args: argparse.Namespace) -> int:
    async with open_services(load_config(args.config)) as services:
        if args.action == "revoke":
            ended = await revoke_token(services, args.token)
            print(f"token revoked; {ended} session(s) ended")
        else:
            ended = await revoke_sessions(services, args.user)
            print(f"{ended} session(s) of {args.user} ended")
    return 0
