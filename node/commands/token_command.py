"""`token revoke TOKEN`, `token revoke-sessions --user NAME`: end viewer access at once;
`token purge`: delete contexts nobody can use any more (the audit trail stays)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from node.commands import add_config_argument, with_services
from node.viewing import purge, revoke_sessions, revoke_token

if TYPE_CHECKING:
    from node.services import NodeServices


def register(sub: Any) -> None:
    parser = sub.add_parser("token", help="revoke viewer tokens and sessions")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    revoke = actions.add_parser("revoke", help="revoke a token and the sessions opened with it")
    revoke.add_argument("token")
    add_config_argument(revoke)
    sessions = actions.add_parser("revoke-sessions", help="end every session of a user")
    sessions.add_argument("--user", required=True)
    add_config_argument(sessions)
    purging = actions.add_parser("purge", help="delete expired tokens and ended sessions")
    purging.add_argument("--older-than-hours", type=float, default=24.0,
                         help="keep what ended less than this long ago (default 24)")
    add_config_argument(purging)
    parser.set_defaults(func=with_services(_run))


async def _run(args: argparse.Namespace, services: NodeServices) -> int:
    if args.action == "revoke":
        ended = await revoke_token(services, args.token)
        print(f"token revoked; {ended} session(s) ended")
    elif args.action == "revoke-sessions":
        ended = await revoke_sessions(services, args.user)
        print(f"{ended} session(s) of {args.user} ended")
    else:
        deleted = await purge(services, args.older_than_hours * 3600)
        print(f"{deleted} viewing context(s) purged")
    return 0
