"""Multiprocess mode and the text the scraper reads.

A node is several worker processes (node/process/workers.py). Each counts in files of its own under
`<data_dir>/metrics` (prometheus-client's multiprocess mode, PROMETHEUS_MULTIPROC_DIR), and
whichever worker answers GET /metrics sums them all: counters and histograms of every process
that ever ran (a replaced worker's counts stay), gauges of the live ones only (the supervisor
removes a dead worker's gauge file). The folder is emptied when the node starts.

Figures that the index knows (stored bytes, studies, sessions, jobs) are read from it at
scrape time by the worker that answers, and added as gauges of that one scrape.
"""

from __future__ import annotations

import importlib
import os
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from node.metrics.instruments import Instruments

ENVIRONMENT = "PROMETHEUS_MULTIPROC_DIR"
# (name, help, label names, [(label values, value)]) of a gauge read at scrape time.
Figure = tuple[str, str, tuple[str, ...], list[tuple[tuple[str, ...], float]]]


def enable_multiprocess(folder: Path, fresh: bool = True) -> None:
    """Count in files under `folder` from now on, in this process and every process it forks.
    Must run before anything counts. `fresh`: empty the folder first (a node starting);
    without it a CLI command adds its counts to those of the running node (`import`)."""
    if "prometheus_client" in sys.modules:
        raise RuntimeError("metrics: multiprocess mode must be set before prometheus_client "
                           "is imported")
    if fresh:
        shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    os.environ[ENVIRONMENT] = str(folder)
    # Loaded here, once, rather than by each forked worker at its first count (tens of
    # milliseconds of a worker's start).
    importlib.import_module("node.metrics.instruments")


def _multiprocess_folder() -> str | None:
    return os.environ.get(ENVIRONMENT) or None


def new_instruments() -> Instruments:
    from prometheus_client import CollectorRegistry, disable_created_metrics

    from node.metrics.instruments import Instruments

    # The *_created samples: a second series per counter that no dashboard here reads.
    disable_created_metrics()
    return Instruments(None if _multiprocess_folder() else CollectorRegistry())


def worker_gone(pid: int) -> None:
    """A worker process ended: its gauges (associations open) no longer count."""
    folder = _multiprocess_folder()
    if folder is not None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, folder)


def render(figures: Iterable[Figure]) -> tuple[bytes, str]:
    """The exposition text of every worker's metrics and the index's `figures`; and its
    content type."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    from prometheus_client.core import GaugeMetricFamily
    from prometheus_client.registry import Collector

    from node.metrics.record import instruments

    counted = instruments()
    folder = _multiprocess_folder()
    registry = CollectorRegistry()
    if folder is not None:
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry, folder)
    families = []
    for name, documentation, labels, values in figures:
        family = GaugeMetricFamily(name, documentation, labels=list(labels))
        for label_values, value in values:
            family.add_metric(list(label_values), value)
        families.append(family)

    class _Scrape(Collector):
        def collect(self) -> Iterable[GaugeMetricFamily]:
            return families

    registry.register(_Scrape())
    text = generate_latest(registry)
    if counted.registry is not None:
        text += generate_latest(counted.registry)
    return text, CONTENT_TYPE_LATEST
