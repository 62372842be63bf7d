"""`import PATH...`: put DICOM files and folders (recursively) into the node by the ingest path.

Files are checked for completeness first (pydicom reads a truncated file without complaint), then
handed to `Ingestor.ingest_copy` a few at a time, so that the index writer's group commit has
company to batch. A journal per argument list makes an interrupted import resumable.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from node import metrics
from node.commands import add_config_argument
from node.config import Config, load_config
from node.errors import InvalidInput
from node.index.index_writer import AddOutcome
from node.ingest.file_completeness import check_complete
from node.ingest.import_journal import ImportJournal
from node.process.runtime import open_services
from node.services import NodeServices

log = logging.getLogger(__name__)

MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "import", help="import DICOM files and folders (recursively) into the node",
        description=__doc__,
    )
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                        help="a DICOM file, or a folder to import recursively")
    parser.add_argument("--jobs", type=int, default=6,
                        help="files ingested at once (default: 6)")
    add_config_argument(parser)
    parser.set_defaults(func=run)


@dataclass
class ImportSummary:
    imported: int = 0
    duplicates: int = 0
    skipped: int = 0
    dicomdirs: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)
    journal: Path | None = None

    def lines(self) -> list[str]:
        lines = [
            f"imported {self.imported}, duplicates {self.duplicates}, "
            f"rejected {len(self.rejected)}, skipped {self.skipped} already imported"
        ]
        if self.dicomdirs:
            lines.append(f"ignored {self.dicomdirs} DICOMDIR file(s) (a media index, no images)")
        if self.rejected:
            lines.append("rejected files:")
            lines += [f"  {path}: {reason}" for path, reason in sorted(self.rejected)]
        return lines


def run(args: argparse.Namespace) -> int:
    if args.jobs < 1:
        raise InvalidInput("--jobs must be at least 1")
    config = load_config(args.config)
    # Counted with the node's own (GET /metrics, door "import") while it serves.
    metrics.enable_multiprocess(config.data_dir / "metrics", fresh=False)
    if not args.verbose:
        # Every duplicate is a warning for a C-STORE peer's log; here the summary counts them.
        logging.getLogger("node.ingest.ingestor").setLevel(logging.ERROR)
    summary = asyncio.run(import_paths(config, args.paths, args.jobs))
    print("\n".join(summary.lines()))
    return 1 if summary.rejected else 0


def iter_files(arguments: Iterable[Path]) -> Iterator[Path]:
    """Every file named or under a named folder, in a stable order; a missing path is yielded
    as is, so that it is reported like any other file that cannot be read."""
    for argument in arguments:
        if not argument.is_dir():
            yield argument
            continue
        for dirpath, dirs, files in os.walk(argument):
            dirs.sort()
            for name in sorted(files):
                yield Path(dirpath, name)


async def import_paths(config: Config, arguments: list[Path], jobs: int = 6) -> ImportSummary:
    # Counting first costs a second directory walk but keeps no list of a million paths.
    total = await asyncio.to_thread(lambda: sum(1 for _ in iter_files(arguments)))
    journal = ImportJournal.for_arguments(config.data_dir, arguments)
    summary = ImportSummary(journal=journal.path)
    files = iter_files(arguments)
    progress = tqdm(total=total, unit="file", desc="import", file=sys.stderr, disable=None)
    try:
        with logging_redirect_tqdm():
            async with open_services(config) as services:

                async def worker() -> None:
                    # Workers share one iterator: next() never awaits, so each file goes to one.
                    for path in files:
                        await _import_one(services, path, journal, summary)
                        progress.update(1)

                await asyncio.gather(*(worker() for _ in range(jobs)))
    finally:
        progress.close()
        journal.close()
    return summary


async def _import_one(
    services: NodeServices, path: Path, journal: ImportJournal, summary: ImportSummary
) -> None:
    name = os.path.abspath(path)
    try:
        stat = await asyncio.to_thread(os.stat, path)
        if journal.is_done(name, stat):
            summary.skipped += 1
            return
        header = await asyncio.to_thread(check_complete, path)
        if header.media_storage_sop_class == MEDIA_STORAGE_DIRECTORY:
            summary.dicomdirs += 1
            return
        result = await services.ingestor.ingest_copy(path, origin="import")
    except InvalidInput as exc:
        summary.rejected.append((str(path), str(exc)))
        return
    except FileNotFoundError:
        summary.rejected.append((str(path), "no such file or folder"))
        return
    except OSError as exc:
        summary.rejected.append((str(path), f"cannot be read: {exc.strerror or exc}"))
        return
    except Exception as exc:
        # The message may quote the dataset's values (patient data): keep it out of the log.
        summary.rejected.append((str(path), f"could not be stored ({type(exc).__name__})"))
        return
    if result.outcome is AddOutcome.ADDED:
        summary.imported += 1
    else:
        summary.duplicates += 1
    journal.record(name, stat)
