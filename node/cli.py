"""`python -m node COMMAND`: one module per command under node/commands/."""

from __future__ import annotations

import argparse
import importlib
import sys

from node.errors import ConfigError, NodeError
from node.process.logging_setup import configure_logging

# Command name -> its module; each module defines register(subparsers), which adds its parser
# and sets `func`.
COMMANDS = {
    "serve": "serve", "echo": "echo", "find": "find", "retrieve": "retrieve", "role": "role",
    "token": "token", "protocol": "protocol", "import": "import_files", "check": "check",
    "mapping": "mapping", "iso": "iso", "delete": "delete", "protect": "protect",
    "unprotect": "protect",
}


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser, with only the named command's module imported when `argv` names one.

    The command modules import what their command needs (`serve` the whole DICOM and HTTP
    stack, pathology readers included): several seconds of imports on a busy machine that
    `role list` or `mapping add` has no use for. Help and mistakes get every command."""
    parser = argparse.ArgumentParser(prog="python -m node", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    named = next((arg for arg in argv or () if not arg.startswith("-")), None)
    modules = [COMMANDS[named]] if named in COMMANDS else list(dict.fromkeys(COMMANDS.values()))
    for module in modules:
        importlib.import_module(f"node.commands.{module}_command").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    args = build_parser(argv).parse_args(argv)
    configure_logging(args.verbose)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    except NodeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
