"""pynetdicom set up for the node, once per process before any association: its documented
settings (`pynetdicom._config`) and, where enabled, the fast path (node/dimse/fastpath/).

Every command that talks DICOM calls `setup_pynetdicom` at its start (`serve` before it forks its
workers, which inherit it). Nothing else changes pynetdicom's settings.
"""

from __future__ import annotations

import logging

from pynetdicom import _config

from node.config import Config
from node.dimse import fastpath


def verbose_logging() -> bool:
    """Whether pynetdicom's own logging is on (`--verbose`, node/cli.py)."""
    return logging.getLogger("pynetdicom").isEnabledFor(logging.DEBUG)


def setup_pynetdicom(config: Config) -> bool:
    """Configure pynetdicom and install the fast path when `dicom.fast_path` is on and
    pynetdicom logs nothing of its own; whether the fast path is in."""
    verbose = verbose_logging()
    # pynetdicom's standard handlers format every PDU and DIMSE message, and every C-FIND
    # identifier, into log lines even when nothing logs them: measured here, ~6% of a C-FIND
    # answering 1,000 matches and a share of every C-STORE. Kept for `--verbose` only, which
    # then runs on plain pynetdicom: those handlers read pynetdicom's own decoded objects,
    # which the fast path does without.
    _config.LOG_HANDLER_LEVEL = "standard" if verbose else "none"
    _config.LOG_REQUEST_IDENTIFIERS = verbose
    _config.LOG_RESPONSE_IDENTIFIERS = verbose
    # Stored files are sent without decoding when pynetdicom is given their path.
    _config.STORE_SEND_CHUNKED_DATASET = True
    why_not = ("--verbose: pynetdicom logs its own messages" if verbose
               else "dicom.fast_path = false")
    if fastpath.install(config.dicom.fast_path and not verbose, why_not):
        return True
    # Plain pynetdicom keeps each received data set in memory and hands its bytes to the store
    # handler, which writes the file itself and answers 0xA700 when it cannot; its chunked
    # receive would abort the association on a full disk (node/dimse/store_scp.py).
    _config.STORE_RECV_CHUNKED_DATASET = False
    return False
