"""No patient data in the node's log from the DICOM libraries (node/process/logging_setup.py).

Run as the command line sets logging up, in a process of its own: pydicom reading a header
with an invalid birth date, and pynetdicom's debug dump of a data set (`--verbose`).
"""

from __future__ import annotations

import subprocess
import sys

from tests.peers import REPO

SCRIPT = r"""
import io, logging, warnings
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian
from node.process.logging_setup import configure_logging

configure_logging(verbose=True)
ds = Dataset()
ds.add_new(0x00100030, "DA", "19AB0101")
ds.add_new(0x00100020, "LO", "SECRET-ID")
ds.file_meta = FileMetaDataset()
ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
ds.file_meta.MediaStorageSOPClassUID = "1.2.3"
ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4"
buffer = io.BytesIO()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    ds.save_as(buffer, enforce_file_format=True)
read = dcmread(io.BytesIO(buffer.getvalue()))
print(read.PatientBirthDate)
logging.getLogger("pynetdicom.dsutils").debug("(0010,0010) PN [SECRET^NAME]  # 1 PatientName")
logging.getLogger("node.ingest.ingestor").info("a node message keeps its %s", "'quoted' text")
"""


def test_the_dicom_libraries_log_no_values() -> None:
    result = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "19AB0101"  # the value was read, and warned about
    log = result.stderr
    assert "Invalid value for VR DA" in log and "PatientName" in log
    for value in ("19AB0101", "SECRET^NAME", "SECRET-ID"):
        assert value not in log
    assert "a node message keeps its 'quoted' text" in log
