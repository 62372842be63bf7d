"""The DICOM node: configuration, index, storage, ingest, and the DICOM SCP/SCU."""
