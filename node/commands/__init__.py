"""The node's CLI commands, one module each."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from node.config import Config


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", type=Path, default=Path("node.toml"),
        help="configuration file (default: node.toml in the current folder)",
    )


def load_dicom_config(path: Path) -> Config:
    """The configuration at `path`, with pynetdicom set up for it once, before any association
    (node/dimse/pynetdicom_setup.py): the start of every command that may talk DICOM."""
    from node.config import load_config
    from node.dimse.pynetdicom_setup import setup_pynetdicom

    config = load_config(path)
    setup_pynetdicom(config)
    return config
