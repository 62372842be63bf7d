"""The node's CLI commands, one module each."""

import argparse
from pathlib import Path


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", type=Path, default=Path("node.toml"),
        help="configuration file (default: node.toml in the current folder)",
    )
