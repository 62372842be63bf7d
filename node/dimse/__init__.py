"""DICOM networking: the SCP the node serves and the SCU it uses toward source nodes."""
