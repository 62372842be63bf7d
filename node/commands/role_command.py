"""`role add|list|remove`: the roles callers may name in `role=`, and what each may use."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from node.commands import add_config_argument, with_services
from node.viewing.roles import PERMISSIONS, add_role, list_roles, remove_role

if TYPE_CHECKING:
    from node.services import NodeServices


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
    parser.set_defaults(func=with_services(_run))


async def _run(args: argparse.Namespace, services: NodeServices) -> int:
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
