"""The node's logging: one format, and no patient data from the DICOM libraries.

pydicom names the values it finds wrong ("Invalid value for VR DA: '19AB0101'": a birth date,
a Patient ID) through both its logger and the warnings module, and pynetdicom's debug output
(`--verbose`) dumps whole data sets ("(0010,0010) PN [DOE^JOHN]"). The node's own messages
never carry such values; these libraries' records have every quoted or bracketed value
withheld before any handler writes them, and warnings go through logging so that the same
rule applies to them.
"""

from __future__ import annotations

import logging
import re

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Loggers whose messages may quote a data set's values ("py.warnings": captured warnings).
LIBRARIES = ("pydicom", "pynetdicom", "py.warnings")
_VALUES = re.compile(r"'[^'\n]*'|\"[^\"\n]*\"|\[[^\]\n]*\]")
WITHHELD = "<value withheld>"


class WithholdValues(logging.Filter):
    """Replaces quoted and bracketed text in the DICOM libraries' records."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith(LIBRARIES):
            record.msg = _VALUES.sub(WITHHELD, record.getMessage())
            record.args = None
        return True


def configure_logging(verbose: bool) -> None:
    """Log to stderr (the service's journal) at INFO, or DEBUG with `verbose`."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=FORMAT)
    for handler in logging.getLogger().handlers:
        handler.addFilter(WithholdValues())
    logging.captureWarnings(True)
    # pynetdicom logs every PDU at INFO; that is noise for an operator.
    logging.getLogger("pynetdicom").setLevel(logging.DEBUG if verbose else logging.WARNING)
