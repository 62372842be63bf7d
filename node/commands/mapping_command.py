"""`mapping add|list|remove`: the storage mappings (host path -> container path) through which
the POST API reads files and folders; a path outside every mapping is never read."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from node.commands import add_config_argument, with_services
from node.sources.storage_mapping import add_mapping, list_mappings, remove_mapping

if TYPE_CHECKING:
    from node.services import NodeServices


def register(sub: Any) -> None:
    parser = sub.add_parser("mapping", help="manage the storage mappings of the POST API")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="map a host folder to the folder the node reads")
    add.add_argument("host_path", metavar="HOST_PATH")
    add.add_argument("container_path", metavar="CONTAINER_PATH")
    add_config_argument(add)
    listing = actions.add_parser("list", help="list the mappings")
    add_config_argument(listing)
    remove = actions.add_parser("remove", help="remove the mapping of a host folder")
    remove.add_argument("host_path", metavar="HOST_PATH")
    add_config_argument(remove)
    parser.set_defaults(func=with_services(_run))


async def _run(args: argparse.Namespace, services: NodeServices) -> int:
    if args.action == "add":
        mapping = await add_mapping(services.sessions, args.host_path, args.container_path)
        print(f"mapping added: {mapping.host_path} -> {mapping.container_path}")
        if not Path(mapping.container_path).is_dir():
            # Allowed (the volume may be mounted later), but worth saying.
            print(f"warning: {mapping.container_path} is not a folder on this machine",
                  file=sys.stderr)
    elif args.action == "remove":
        await remove_mapping(services.sessions, args.host_path)
        print(f"mapping removed: {args.host_path}")
    else:
        for mapping in await list_mappings(services.sessions):
            print(f"{mapping.host_path}\t{mapping.container_path}")
    return 0
