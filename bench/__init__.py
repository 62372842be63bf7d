"""Benchmarks against real peers (DCMTK, Orthanc, a bare pynetdicom SCP). Not tests: run by hand."""
