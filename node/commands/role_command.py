"""`role add|list|remove`: the roles callers may name in `role=`, and what each may use."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from node.commands import add_config_argument
from node.config import load_config
from node.process.runtime import open_services
from node.viewing.roles import PERMISSIONS, add_role, list_roles, remove_role


def register(sub: Any) -> None:
    parser = sub.add_parser("role", help="manage the roles the viewer APIs accept")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="add a role")
    add.add_argument("name")
    add.add_argument("--allow", default="", metavar="PERMISSIONS",
                     help=f"comma-separated permissions: {', '.join(PERMISSIONS)}")
    add_config_argument(add)
    listing = actions.add_parser("list", help="list the roles and their permissions")
    add_config_argument(listing)
    remove = actions.add_parser("remove", help="remove a role")
    remove.add_argument("name")
    add_config_argument(remove)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))


async def _run(args: argparse.Namespace) -> int:
    async with open_services(load_config(args.config)) as services:
        if args.action == "add":
            role = await add_role(services.sessions, args.name, args.allow.split(","))
            print(f"role {role.name} added: {', '.join(role.permissions) or '(no permissions)'}")
        elif args.action == "remove":
            await remove_role(services.sessions, args.name)
            print(f"role {args.name} removed")
        else:
            for role in await list_roles(services.sessions):
                print(f"{role.name}\t{','.join(role.permissions)}")
    return 0
