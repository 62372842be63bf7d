"""`check [--repair]`: does the index describe what is in storage?

Reports index rows whose file is missing, stored files the index does not know, and files whose
size differs from the index. Exit status 0 when consistent, 1 otherwise; with `--repair`, 0 when
everything found was repaired. Safe to run beside a serving node (see node/storage/consistency.py).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from node.commands import add_config_argument
from node.config import Config, load_config
from node.process.runtime import open_services
from node.storage.consistency import ConsistencyReport, RepairReport, compare, repair


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "check", help="compare the index with the stored files (and repair with --repair)",
        description=__doc__,
    )
    parser.add_argument("--repair", action="store_true",
                        help="index unindexed files, remove rows whose file is missing, "
                             "re-read files whose size differs")
    parser.add_argument("--examples", type=int, default=10,
                        help="how many examples of each difference to print (default: 10)")
    add_config_argument(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    report, repaired, seconds = asyncio.run(check(config, args.repair))
    print("\n".join(report_lines(report, args.examples, seconds)))
    if repaired is None:
        return 0 if report.consistent else 1
    print("\n".join(repair_lines(repaired, args.examples)))
    return 0 if not repaired.quarantined and not repaired.failed else 1


async def check(
    config: Config, fix: bool
) -> tuple[ConsistencyReport, RepairReport | None, float]:
    async with open_services(config) as services:
        started = time.perf_counter()
        report = await compare(services)
        seconds = time.perf_counter() - started
        repaired = await repair(services, report) if fix and not report.consistent else None
    return report, repaired, seconds


def report_lines(report: ConsistencyReport, examples: int, seconds: float) -> list[str]:
    lines = [
        f"index: {report.indexed} instances; storage: {report.stored} files "
        f"(compared in {seconds:.1f} s)"
    ]

    def section(title: str, items: list[str]) -> None:
        lines.append(f"{title}: {len(items)}")
        lines.extend(f"  {item}" for item in items[:examples])
        if len(items) > examples:
            lines.append(f"  ... and {len(items) - examples} more")

    section("index rows whose file is missing", [row.path for row in report.missing])
    section("files in storage not in the index", report.unindexed)
    section(
        "files whose size differs from the index",
        [f"{m.row.path} (index {m.row.size} bytes, file {m.actual_size} bytes)"
         for m in report.size_mismatches],
    )
    lines.append("consistent" if report.consistent
                 else f"inconsistent: {report.problems} difference(s)")
    return lines


def repair_lines(done: RepairReport, examples: int) -> list[str]:
    lines = [
        f"repair: files indexed {done.files_indexed}, rows removed {done.rows_removed}, "
        f"rows re-read from their file {done.rows_refreshed}, "
        f"stray copies removed {done.stray_copies_removed}",
    ]
    for title, items in (
        ("moved to quarantine (not indexable)", done.quarantined),
        ("could not be repaired", done.failed),
    ):
        if not items:
            continue
        lines.append(f"{title}: {len(items)}")
        lines.extend(f"  {path}: {reason}" for path, reason in items[:examples])
        if len(items) > examples:
            lines.append(f"  ... and {len(items) - examples} more")
    return lines
