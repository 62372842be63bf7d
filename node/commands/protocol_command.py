"""`protocol add|list|remove`: hanging protocols for a user, a role, or everyone."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from node.commands import add_config_argument, with_services
from node.errors import InvalidInput
from node.viewing.hanging_protocols import add_protocol, list_protocols, parse_rule, remove_protocol

if TYPE_CHECKING:
    from node.services import NodeServices


def _owner_arguments(parser: argparse.ArgumentParser) -> None:
    owner = parser.add_mutually_exclusive_group()
    owner.add_argument("--user", help="the user the protocol belongs to")
    owner.add_argument("--role", help="the role the protocol belongs to")


def register(sub: Any) -> None:
    parser = sub.add_parser("protocol", help="manage hanging protocols")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser(
        "add", help="add a protocol (global unless --user or --role)",
        description="Rules are CELL:key=value[,key=value...] with keys modality, body_part, "
                    "description (wildcards * and ?); cells count from 1, row by row.")
    add.add_argument("name")
    _owner_arguments(add)
    add.add_argument("--rows", type=int, default=1)
    add.add_argument("--columns", type=int, default=1)
    add.add_argument("--rule", action="append", default=[], metavar="CELL:KEY=VALUE,...")
    add_config_argument(add)
    listing = actions.add_parser("list", help="list protocols (JSON lines)")
    add_config_argument(listing)
    remove = actions.add_parser("remove", help="remove a protocol")
    remove.add_argument("name")
    _owner_arguments(remove)
    add_config_argument(remove)
    parser.set_defaults(func=with_services(_run))


def _scope(args: argparse.Namespace) -> tuple[str, str]:
    if args.user is not None:
        return "user", args.user
    if args.role is not None:
        return "role", args.role
    return "global", ""


async def _run(args: argparse.Namespace, services: NodeServices) -> int:
    if args.action == "add":
        scope, owner = _scope(args)
        if not owner and scope != "global":
            raise InvalidInput(f"--{scope} needs a name", scope)
        rules = [parse_rule(text) for text in args.rule]
        protocol = await add_protocol(services.sessions, args.name, scope, owner,
                                      args.rows, args.columns, rules)
        print(f"{scope} protocol {protocol.name} added ({protocol.rows}x{protocol.columns},"
              f" {len(protocol.rules)} rule(s))")
    elif args.action == "remove":
        scope, owner = _scope(args)
        await remove_protocol(services.sessions, args.name, scope, owner)
        print(f"{scope} protocol {args.name} removed")
    else:
        for protocol in await list_protocols(services.sessions):
            print(json.dumps(protocol.as_json()))
    return 0
