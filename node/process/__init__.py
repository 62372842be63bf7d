"""The serving processes: the supervisor and its workers sharing the DICOM and HTTP ports, their
start-up and shutdown, limits across workers, background jobs claimed through the database,
readiness."""
